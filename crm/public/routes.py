"""The public appointment form (PRODUCT §6, item 1): no login, no cookie, embeddable.

Staff forms are protected by the session-based CSRF token. This one is filled in inside an
iframe on the clinic's site, where third-party cookies are blocked, so it is exempt from it
and guarded instead by, in order:

1. a rate limit per client address, counted in the database (every worker sees it);
2. the ``Origin`` header: the app's own origin, ``PUBLIC_BASE_URL`` or one of
   ``EMBED_ORIGINS``. Browsers send ``Origin`` on every form POST; when it is missing (an old
   browser, a privacy proxy), the post is accepted only if ``Referer`` is missing too or
   names an allowed origin. ``Origin: null`` (a sandboxed frame, a data: page) is refused;
3. a signed, time-limited token in a hidden field (2 hours; at least a couple of seconds
   old, faster than a person can type);
4. a honeypot field: a bot that fills it is shown the confirmation, and nothing is stored.
"""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlsplit

from flask import Blueprint, current_app, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from werkzeug.wrappers import Response

from crm import clock, intake
from crm.authz import public
from crm.extensions import csrf, db
from crm.public.forms import (
    CONSENT_TEXT,
    AppointmentRequestForm,
    check_form_token,
    new_form_token,
    read_thanks_token,
    thanks_token,
)
from crm.security import CSP, client_ip, count_hits, record_hit, talisman

bp = Blueprint("public", __name__)

RATE_SCOPE = "public-form"
RATE_UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
# Talisman sets no CSP and no X-Frame-Options on these views; ``_embeddable_headers`` sets
# the CSP itself, with frame-ancestors read from this app's EMBED_ORIGINS.
EMBEDDABLE = {"frame_options": None, "content_security_policy": False}


@bp.route("/request-appointment", methods=["GET", "POST"])
@public
@csrf.exempt
@talisman(**EMBEDDABLE)
def request_appointment() -> ResponseReturnValue:
    """Show the appointment form, or take one submission of it."""
    if request.method == "GET":
        form = AppointmentRequestForm(formdata=None)
        form.fill_campaign({**request.args.to_dict(), "referrer": outside_referrer()})
        return render_form(form)
    limited = rate_limit_response()
    if limited is not None:
        return limited
    if not origin_allowed():
        return render_template("public/refused.html", reason="origin"), 403
    if not request.form and request.content_length:
        # werkzeug drops a urlencoded body that is not UTF-8 as a whole: say so plainly.
        return render_form(AppointmentRequestForm(formdata=None), problem="unreadable", status=400)
    form = AppointmentRequestForm()
    token = check_form_token(form.form_token.data)
    if not token.ok:
        return render_form(form, problem=token.problem, status=400)
    if form.honeypot_filled:
        return redirect(url_for("public.thanks", r=thanks_token(urgent=False)), 303)
    if not form.validate():
        return render_form(form, status=422)
    submission = form.to_request(ip_address=client_ip(), fallback_referrer=outside_referrer())
    result = intake.receive_web_request(submission, now=clock.now())
    db.session.commit()
    urgent = form.red_flag or bool(result.lead is not None and result.lead.urgent)
    return redirect(url_for("public.thanks", r=thanks_token(urgent=urgent)), 303)


@bp.route("/request-appointment/thanks")
@public
@talisman(**EMBEDDABLE)
def thanks() -> str:
    """Confirm the request; emergency advice first when a red flag was answered yes."""
    return render_template("public/thanks.html", urgent=read_thanks_token(request.args.get("r")))


@bp.after_request
def _embeddable_headers(response: Response) -> Response:
    """Let the clinic's own sites frame these pages; staff pages keep frame-ancestors 'none'."""
    policy = {**CSP, "frame-ancestors": ["'self'", *current_app.config["EMBED_ORIGINS"]]}
    response.headers["Content-Security-Policy"] = "; ".join(
        f"{name} {' '.join(value) if isinstance(value, list) else value}" for name, value in policy.items()
    )
    return response


def render_form(
    form: AppointmentRequestForm, *, problem: str | None = None, status: int = 200
) -> tuple[str, int]:
    """Render the form with a fresh token, keeping whatever the patient typed."""
    form.scrub_for_display()
    form.form_token.data = new_form_token()
    return render_template(
        "public/request_form.html", form=form, problem=problem, consent_text=CONSENT_TEXT
    ), status


# --------------------------------------------------------------------------- guards


def parse_rate(text: str) -> tuple[int, timedelta]:
    """Read ``10 per hour`` as (10, one hour)."""
    count, _, unit = text.split()
    return int(count), timedelta(seconds=RATE_UNITS[unit.rstrip("s")])


def rate_limit_response() -> tuple[str, int, dict[str, str]] | None:
    """Count this post against the address's limit; answer 429 once it is used up."""
    limit, window = parse_rate(current_app.config["FORM_RATE_LIMIT"])
    address = client_ip()
    if count_hits(RATE_SCOPE, address, window) >= limit:
        # Refused posts are not counted, so the window slides and the address gets back in.
        retry = {"Retry-After": str(int(window.total_seconds()))}
        return render_template("public/refused.html", reason="rate"), 429, retry
    record_hit(RATE_SCOPE, address)
    db.session.commit()  # counted even if the submission then fails
    return None


def origin_of(url: str | None) -> str | None:
    """Return ``scheme://host[:port]`` of a URL, lower-cased, or None."""
    if not url:
        return None
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return None
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}".lower()


def allowed_origins() -> set[str]:
    """The app's own origin (as reached, and its public address) and the embedding sites."""
    allowed = {origin_of(request.host_url), origin_of(current_app.config.get("PUBLIC_BASE_URL"))}
    allowed.update(origin_of(o) for o in current_app.config["EMBED_ORIGINS"])
    return {o for o in allowed if o}


def origin_allowed() -> bool:
    """Check ``Origin`` (or, when a client sends none, ``Referer``) against the allowed origins."""
    origin = request.headers.get("Origin")
    if origin is not None:
        return origin_of(origin) in allowed_origins()
    referer = request.headers.get("Referer")
    return referer is None or origin_of(referer) in allowed_origins()


def outside_referrer() -> str | None:
    """The page that sent the patient here, unless it is this app's own form."""
    referer = request.headers.get("Referer")
    own = {origin_of(request.host_url), origin_of(current_app.config.get("PUBLIC_BASE_URL"))}
    if not referer or origin_of(referer) in own:
        return None
    return referer
