"""The JSON API under /api/v1 (bearer tokens)."""

from crm.api.routes import bp

__all__ = ["bp"]
