"""The public appointment form arrives with the intake work (issue 5)."""

from flask import Blueprint

bp = Blueprint("public", __name__)
