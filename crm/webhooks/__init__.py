"""The phone line's signed status callbacks (no login)."""

from crm.webhooks.routes import bp

__all__ = ["bp"]
