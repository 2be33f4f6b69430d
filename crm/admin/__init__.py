"""Users, API tokens, settings and the audit log."""

from crm.admin import audit_routes  # noqa: F401  (its routes join bp)
from crm.admin.routes import bp

__all__ = ["bp"]
