"""The manager dashboard."""

from crm.dashboard.routes import bp

__all__ = ["bp"]
