"""Users, API tokens, settings and the audit log."""

from crm.admin import audit_routes, settings_routes  # noqa: F401  (their routes join bp)
from crm.admin.routes import bp

__all__ = ["bp"]
