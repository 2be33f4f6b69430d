"""Twilio's voice status callback arrives with the intake work (issue 5)."""

from flask import Blueprint

bp = Blueprint("webhooks", __name__, url_prefix="/webhooks")
