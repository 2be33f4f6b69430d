"""Sign-in (with two-factor when due), sign-out, account security, and the home page."""

from crm.auth import account_routes  # noqa: F401  (its routes join bp)
from crm.auth.routes import bp

__all__ = ["bp"]
