"""Users, API tokens, settings and the audit log."""

from crm.admin.routes import bp

__all__ = ["bp"]
