"""The surgeons' referral queue."""

from crm.referrals.routes import bp

__all__ = ["bp"]
