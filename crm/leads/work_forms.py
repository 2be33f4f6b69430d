"""Forms of the work on a lead: tasks (add, done, undo) and closing after unanswered call-backs."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import DateTimeLocalField, HiddenField, SelectField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import AnyOf, DataRequired, Length, Optional

from crm.models import APPOINTMENT_KINDS, APPOINTMENT_OUTCOMES, TASK_KINDS
from crm.tasks import TASK_KIND_LABELS
from crm.triage import TAG_LABELS

APPOINTMENT_KIND_LABELS = {
    "consult": "Consult",
    "surgery": "Surgery",
    "follow_up": "Follow-up",
    "imaging": "Imaging",
}
APPOINTMENT_OUTCOME_LABELS = {
    "attended": "Attended",
    "no_show": "No-show",
    "canceled": "Canceled",
    "rescheduled": "Rescheduled",
}


def _int_or_none(value: object) -> int | None:
    """Read a select's value as an id; the empty choice means none."""
    return int(str(value)) if value not in (None, "", "None") else None


class TaskForm(FlaskForm):
    """Add a task by hand: what, by when (clinic time), and who does it."""

    title = StringField(
        "Task",
        validators=[DataRequired(message="Give the task a title."), Length(max=200)],
        filters=[lambda v: (v or "").strip()],
    )
    kind = SelectField(
        "Kind", choices=[SelectChoice(k, TASK_KIND_LABELS[k]) for k in TASK_KINDS], id="task-kind"
    )
    due_at = DateTimeLocalField(
        "Due (clinic time)",
        validators=[DataRequired(message="Give a due date and time.")],
        format="%Y-%m-%dT%H:%M",
    )
    assignee = SelectField("Assignee", choices=[], coerce=_int_or_none, validators=[Optional()])


class TaskDoneForm(FlaskForm):
    """Mark a task done; a call-back may end without an answer. ``back`` names the page to return to."""

    outcome = HiddenField(default="done", validators=[AnyOf(("done", "no_answer"))])
    back = HiddenField(default="lead", validators=[AnyOf(("lead", "tasks"))])


class TaskUndoForm(FlaskForm):
    """Undo "done" on a task."""


class CloseNoResponseForm(FlaskForm):
    """Close a lead as "no response" after the last call-back attempt."""


class TagForm(FlaskForm):
    """Add or remove one complaint tag as staff's own word."""

    code = SelectField("Tag to add", choices=[SelectChoice(c, TAG_LABELS[c]) for c in sorted(TAG_LABELS)])


class ClearUrgentForm(FlaskForm):
    """Clear the urgent flag: a person, with a reason."""

    reason = TextAreaField(
        "Why is this lead no longer urgent?",
        validators=[DataRequired(message="Say why the urgent flag is cleared."), Length(max=2000)],
        # The lead page also holds the stage form's "reason": one id each, so each label names its box.
        id="urgent-reason",
    )


class AppointmentForm(FlaskForm):
    """Book an appointment: kind, date and time in clinic time, surgeon, location."""

    # Own ids: the task form and the stage move have a "kind" and a "surgeon" on the same page.
    kind = SelectField(
        "Kind",
        choices=[SelectChoice(k, APPOINTMENT_KIND_LABELS[k]) for k in APPOINTMENT_KINDS],
        id="appointment-kind",
    )
    starts_at = DateTimeLocalField(
        "Date and time (clinic time)",
        validators=[DataRequired(message="Give the date and time.")],
        format="%Y-%m-%dT%H:%M",
    )
    surgeon = SelectField(
        "Surgeon", choices=[], coerce=_int_or_none, validators=[Optional()], id="appointment-surgeon"
    )
    location = StringField("Location", validators=[Length(max=200)])


class AppointmentOutcomeForm(FlaskForm):
    """Record what became of an appointment."""

    outcome = SelectField(
        "Outcome", choices=[SelectChoice(o, APPOINTMENT_OUTCOME_LABELS[o]) for o in APPOINTMENT_OUTCOMES]
    )
