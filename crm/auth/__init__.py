"""Sign-in, sign-out and the home page that sends each role to its own work."""

from crm.auth.routes import bp

__all__ = ["bp"]
