"""Fixtures for the API: a token of a role and scope, and its Authorization header."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from crm.apitokens import create_token
from crm.extensions import db
from crm.models import User


class Caller:
    """A token's user and the headers that present it."""

    def __init__(self, user: User, token: str) -> None:
        self.user = user
        self.token = token
        self.headers = {"Authorization": f"Bearer {token}"}


@pytest.fixture
def make_caller(make_user: Callable[..., User]) -> Callable[..., Caller]:
    """``make_caller("surgeon", scope="write")``: a user of a role and a live token of theirs."""

    def make(role: str = "front_desk", *, scope: str = "write", **user_fields: Any) -> Caller:
        user = make_user(role, **user_fields)
        new = create_token(user, "test", scope=scope)
        db.session.commit()
        return Caller(user, new.plaintext)

    return make
