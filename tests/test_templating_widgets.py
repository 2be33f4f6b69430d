"""The faster ``html_params`` gives WTForms' own output, and the widgets use it."""

from __future__ import annotations

from typing import Any

import pytest
import wtforms.widgets
from markupsafe import Markup
from wtforms import Form, SelectField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import InputRequired, Length
from wtforms.widgets import core

from crm.templating import WTFORMS_HTML_PARAMS, html_params, use_fast_html_params

CASES: list[dict[str, Any]] = [
    {},
    {"name": "text1", "id": "f", "class_": "text"},
    {"checked": True, "readonly": False, "name": "text1", "abc": "hello"},
    {"data_attr": "user.name", "aria_labeledby": "name", "data_x_y": 1},
    {"value": 'He said "stop" & <left>', "for_": "x"},
    {"value": Markup('<b title="x">kept</b>'), "maxlength": 2000, "min": 0, "step": 1.5},
    {"value": None, "placeholder": "Jane O'Neil"},
]


@pytest.mark.parametrize("kwargs", CASES)
def test_it_renders_what_wtforms_renders(kwargs: dict[str, Any]) -> None:
    ours = html_params(**kwargs)
    assert ours == WTFORMS_HTML_PARAMS(**kwargs)
    assert isinstance(ours, Markup)


class _Form(Form):
    name = StringField("Name", validators=[InputRequired(), Length(max=40)])
    story = TextAreaField("Story")
    side = SelectField("Side", choices=[SelectChoice("left", "Left <L>"), SelectChoice("right", 'Right "R"')])


def test_the_widgets_render_fields_the_same_with_it(monkeypatch: pytest.MonkeyPatch) -> None:
    use_fast_html_params()  # as the app does at start
    assert core.html_params is html_params and core.Input.html_params is html_params
    assert wtforms.widgets.html_params is html_params  # labels
    form = _Form(data={"name": 'Ana "Rey" <b>', "story": "a & b", "side": "right"})
    ours = [str(field(aria_describedby="h", class_="c")) + str(field.label(class_="l")) for field in form]
    monkeypatch.setattr(core, "html_params", WTFORMS_HTML_PARAMS)
    monkeypatch.setattr(wtforms.widgets, "html_params", WTFORMS_HTML_PARAMS)
    for widget in vars(core).values():
        if isinstance(widget, type) and "html_params" in vars(widget):
            monkeypatch.setattr(widget, "html_params", staticmethod(WTFORMS_HTML_PARAMS))
    theirs = [str(field(aria_describedby="h", class_="c")) + str(field.label(class_="l")) for field in form]
    assert ours == theirs
    assert 'value="Ana &#34;Rey&#34; &lt;b&gt;"' in ours[0]
