"""Append-only audit events: who saw or changed which patient's record, when, from where.

The table refuses UPDATE and DELETE at the database level (migration triggers). Details
never hold patient words: ids, field names and counts only.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from crm import clock
from crm.extensions import db
from crm.models import AuditEvent


def record(
    action: str,
    *,
    user_id: int | None,
    lead_id: int | None = None,
    detail: dict[str, Any] | None = None,
    ip: str | None = None,
    via: str = "web",
) -> AuditEvent:
    """Add one audit event to the current transaction."""
    event = AuditEvent(
        at=clock.now(),
        user_id=user_id,
        action=action,
        lead_id=lead_id,
        detail=detail,
        ip_address=ip,
        via=via,
    )
    db.session.add(event)
    return event


def record_list(
    action: str,
    *,
    user_id: int | None,
    lead_ids: Iterable[int],
    ip: str | None,
    via: str = "web",
    **detail: Any,
) -> AuditEvent:
    """Record one event for a list page or export, with the ids of the leads it showed."""
    return record(action, user_id=user_id, detail={"lead_ids": list(lead_ids), **detail}, ip=ip, via=via)
