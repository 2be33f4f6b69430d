"""POST /api/v1/triage: the complaint tagger on a text, changing nothing."""

from __future__ import annotations

from typing import Any

from crm import audit
from crm.api.common import errors
from crm.api.routes import bp
from crm.api.schemas import TriageIn, TriageOut
from crm.api.tokens import api_user, read_only
from crm.authz import roles
from crm.extensions import db
from crm.security import client_ip
from crm.triage import is_urgent, tag_complaint

STAFF = ("front_desk", "surgeon", "manager", "admin")


@bp.route("/triage", methods=["POST"])
@bp.arguments(TriageIn)
@bp.response(200, TriageOut)
@errors(400, 413, 401, 403)
@roles(*STAFF)
@read_only
def triage(body: dict[str, Any]) -> dict[str, Any]:
    """Tag a patient's words as the intake would: complaint tags and urgency."""
    tags = tag_complaint(body["text"])
    audit.record("api_triage", user_id=api_user().id, detail={"tags": len(tags)}, ip=client_ip(), via="api")
    db.session.commit()
    return {"tags": tags, "urgent": is_urgent(tags)}
