"""The lead queue, the lead page and tasks."""

from crm.leads.routes import bp

__all__ = ["bp"]
