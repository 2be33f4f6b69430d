"""The public appointment form (no login)."""

from crm.public.routes import bp

__all__ = ["bp"]
