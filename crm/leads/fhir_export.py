"""The lead page's "Download referral (FHIR)": the API's Bundle, for a signed-in surgeon or manager."""

from __future__ import annotations

import json

from flask import Response
from flask_login import current_user

from crm import audit
from crm.api.fhir import referral_bundle
from crm.authz import load_lead_for, roles
from crm.extensions import db
from crm.leads.routes import bp
from crm.security import client_ip

# Those who send or receive referrals (PRODUCT §6 item 6: "for surgeons"), and the admin.
FHIR_ROLES = ("surgeon", "manager", "admin")


@bp.route("/leads/<int:lead_id>/fhir.json")
@roles(*FHIR_ROLES)
def fhir_export(lead_id: int) -> Response:
    """Download the lead's referral as the FHIR R4B Bundle the API answers, and audit the export."""
    lead = load_lead_for(current_user, lead_id)
    bundle = referral_bundle(lead, lead.owner or current_user)  # the requester, as the API names it
    audit.record("fhir_export", user_id=current_user.id, lead_id=lead.id, ip=client_ip())
    db.session.commit()
    response = Response(json.dumps(bundle), status=200, mimetype="application/fhir+json")
    response.headers["Content-Disposition"] = f'attachment; filename="referral-lead-{lead.id}.fhir.json"'
    return response
