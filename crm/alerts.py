"""Urgent-lead alerts to the on-call address, with no patient data (PRODUCT §6 item 3).

An urgent lead that arrives outside business hours emails ``ONCALL_EMAIL`` through
``SMTP_URL``. The message says only that an urgent lead is waiting and links to it: no
name, phone, complaint or tag ever leaves the application this way.

Intake does not send during its transaction (the lead may still be rolled back, and the
link would point nowhere). It calls ``alert_after_commit(lead)``, which queues the alert on
the database session; a session hook sends it once the transaction has committed, and
drops it if the transaction rolls back. So every caller — the form, the API, an import —
gets the alert without knowing about it, and never for a lead that was not saved.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any
from urllib.parse import unquote, urlsplit

import sqlalchemy as sa
from flask import current_app, has_app_context
from sqlalchemy.orm import Session, SessionTransaction

from crm.extensions import db
from crm.models import Lead

log = logging.getLogger(__name__)

SUBJECT = "Urgent lead waiting"
SMTP_TIMEOUT_SECONDS = 10
_PENDING = "crm_pending_urgent_alerts"


@dataclass(frozen=True)
class MailSettings:
    """Where alerts go: read from the app's config when the alert is queued."""

    smtp_url: str
    oncall_email: str
    mail_from: str
    public_base_url: str

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> MailSettings:
        return cls(
            smtp_url=config.get("SMTP_URL", "") or "",
            oncall_email=config.get("ONCALL_EMAIL", "") or "",
            mail_from=config.get("MAIL_FROM", "") or "crm@localhost",
            public_base_url=(config.get("PUBLIC_BASE_URL", "") or "").rstrip("/"),
        )


def lead_link(lead_id: int, settings: MailSettings) -> str:
    """Return the address of the lead page on the public site."""
    return f"{settings.public_base_url}/leads/{int(lead_id)}"


def build_message(lead_id: int, link: str, settings: MailSettings) -> EmailMessage:
    """Compose the alert: a fixed sentence and the link, nothing about the patient."""
    message = EmailMessage()
    message["Subject"] = SUBJECT
    message["From"] = settings.mail_from
    message["To"] = settings.oncall_email
    message.set_content(
        "An urgent lead is waiting in the Spine Center CRM.\n\n"
        f"Open it here (sign-in required): {link}\n\n"
        "This message carries no patient details by design.\n"
    )
    return message


def send_urgent_alert(lead_id: int, link: str | None = None, *, settings: MailSettings | None = None) -> bool:
    """Email the on-call address that an urgent lead waits; return whether it was sent.

    A no-op without ``SMTP_URL`` or ``ONCALL_EMAIL``. Never raises: a failure is logged
    with the error's type only (an SMTP reply could echo an address).
    """
    mail = settings or MailSettings.from_config(current_app.config)
    if not mail.smtp_url or not mail.oncall_email:
        return False
    message = build_message(lead_id, link or lead_link(lead_id, mail), mail)
    try:
        _deliver(mail.smtp_url, message)
    except Exception as error:
        log.error("urgent alert for lead %s not sent: %s", int(lead_id), type(error).__name__)
        return False
    log.info("urgent alert sent for lead %s", int(lead_id))
    return True


def _deliver(smtp_url: str, message: EmailMessage) -> None:
    """Send one message through ``smtp://user:pass@host:port`` or ``smtps://``."""
    parts = urlsplit(smtp_url)
    host = parts.hostname or "localhost"
    if parts.scheme == "smtps":
        context = ssl.create_default_context()
        with smtplib.SMTP_SSL(host, parts.port or 465, timeout=SMTP_TIMEOUT_SECONDS, context=context) as smtp:
            _login(smtp, parts.username, parts.password)
            smtp.send_message(message)
        return
    with smtplib.SMTP(host, parts.port or 25, timeout=SMTP_TIMEOUT_SECONDS) as smtp:
        smtp.ehlo()
        if smtp.has_extn("starttls"):
            smtp.starttls(context=ssl.create_default_context())
            smtp.ehlo()
        _login(smtp, parts.username, parts.password)
        smtp.send_message(message)


def _login(smtp: smtplib.SMTP, user: str | None, password: str | None) -> None:
    if user:
        smtp.login(unquote(user), unquote(password or ""))


# --------------------------------------------------------------------------- after commit


def alert_after_commit(lead: Lead) -> None:
    """Queue an urgent alert for a lead, sent only once the current transaction commits."""
    if lead.id is None:
        db.session.flush()
    settings = MailSettings.from_config(current_app.config) if has_app_context() else None
    if settings is None or not settings.smtp_url:
        return
    pending: list[tuple[int, MailSettings]] = db.session.info.setdefault(_PENDING, [])
    if all(queued != lead.id for queued, _ in pending):
        pending.append((lead.id, settings))


@sa.event.listens_for(Session, "after_commit")
def _send_pending(session: Session) -> None:
    for lead_id, settings in session.info.pop(_PENDING, []):
        send_urgent_alert(lead_id, settings=settings)


@sa.event.listens_for(Session, "after_soft_rollback")
def _drop_pending(session: Session, previous_transaction: SessionTransaction) -> None:
    if previous_transaction.parent is None and not previous_transaction.nested:
        session.info.pop(_PENDING, None)
