"""Password hashing (Argon2id) and the password policy of NIST SP 800-63B."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

# Argon2id with 19 MiB, 10 passes, one lane: above OWASP's minimum (19 MiB × 2), and with about
# the memory × passes of RFC 9106's low-memory profile (64 MiB × 3 = 192), at about the same time
# per check (90 ms against 110 here). The trade: an attacker's GPU fits about three times more
# guesses at once in its memory than at 64 MiB. What it buys: a sign-in takes 19 MiB from its
# worker instead of 64, which kept a worker that had served a day's pages over its 250 MB
# budget (PRODUCT §9) at each sign-in.
MEMORY_KIB = 19 * 1024
TIME_COST = 10
PARALLELISM = 1
_hasher = PasswordHasher(memory_cost=MEMORY_KIB, time_cost=TIME_COST, parallelism=PARALLELISM)
MIN_LENGTH = 15
MAX_LENGTH = 256
_COMMON_FILE = Path(__file__).with_name("common_passwords.txt")
# A hash of a random password: verifying against it makes an unknown email cost as much
# time as a known one, so timing does not reveal which emails have accounts.
_DUMMY_HASH = _hasher.hash("not-a-real-password-just-for-timing")


def configure(*, memory_kib: int, time_cost: int) -> None:
    """Set the Argon2id cost (the app's config calls this once; see ``config.Config``).

    The timing dummy is hashed again with the same cost, so an unknown email still costs what a
    known one does.
    """
    global _hasher, _DUMMY_HASH
    if (memory_kib, time_cost) != (_hasher.memory_cost, _hasher.time_cost):
        _hasher = PasswordHasher(memory_cost=memory_kib, time_cost=time_cost, parallelism=PARALLELISM)
        _DUMMY_HASH = _hasher.hash("not-a-real-password-just-for-timing")


class WeakPassword(ValueError):
    """The password breaks the policy; the message says how."""


@lru_cache(maxsize=1)
def _common_passwords() -> frozenset[str]:
    return frozenset(line.strip().lower() for line in _COMMON_FILE.read_text().splitlines() if line.strip())


def check_policy(password: str, *, email: str = "", name: str = "") -> None:
    """Refuse a password that is too short, too long, common, or made of the user's own name.

    :raises WeakPassword: with a message for the person choosing it.
    """
    if len(password) < MIN_LENGTH:
        raise WeakPassword(f"Use at least {MIN_LENGTH} characters; a few plain words make a good one.")
    if len(password) > MAX_LENGTH:
        raise WeakPassword(f"Use at most {MAX_LENGTH} characters.")
    folded = password.lower()
    if folded in _common_passwords() or len(set(folded)) < 4:
        raise WeakPassword("That password is too common; choose another.")
    local = email.split("@")[0].lower()
    if (local and len(local) >= 4 and local in folded) or (name and name.lower().replace(" ", "") == folded):
        raise WeakPassword("Don't use your own name or email in your password.")


def hash_password(password: str) -> str:
    """Hash a password with Argon2id."""
    return _hasher.hash(password)


def verify_password(stored_hash: str | None, password: str) -> bool:
    """Check a password against its hash (or a dummy one, taking the same time)."""
    try:
        return _hasher.verify(stored_hash or _DUMMY_HASH, password) and stored_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(stored_hash: str) -> bool:
    """Tell whether a hash was made with weaker parameters than today's."""
    return _hasher.check_needs_rehash(stored_hash)
