"""The lead queue, the lead page and tasks."""

from crm.leads import fhir_export as _fhir_export  # noqa: F401  (registers its route on bp)
from crm.leads import intake_routes as _intake_routes  # noqa: F401  (registers its routes on bp)
from crm.leads import record_export as _record_export  # noqa: F401  (registers its routes on bp)
from crm.leads import work_routes as _work_routes  # noqa: F401  (registers its routes on bp)
from crm.leads.routes import bp

__all__ = ["bp"]
