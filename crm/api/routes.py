"""The JSON API arrives with the integration work (issue 8)."""

from flask import Blueprint

bp = Blueprint("api", __name__, url_prefix="/api/v1")
