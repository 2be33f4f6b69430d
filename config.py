"""Deployment settings, read from the environment through helpers that fail loudly.

Only deployment facts live here (PRODUCT §7); the clinic's own rules (business hours,
targets, cadence) live in the database and are edited by the admin.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit

import phonenumbers

DEFAULT_SECRET_KEY = "dev-only-insecure-key-change-me"  # noqa: S105 - refused in production


class ConfigError(RuntimeError):
    """A deployment variable is missing or malformed."""


def env_str(name: str, default: str = "") -> str:
    """Return a variable's text, stripped."""
    return os.environ.get(name, default).strip()


def env_bool(name: str, default: bool) -> bool:
    """Return a yes/no variable, refusing anything but the usual spellings."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name} must be true or false, not {raw!r}")


def env_int(name: str, default: int, *, minimum: int = 0) -> int:
    """Return a whole-number variable no smaller than ``minimum``."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, not {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, not {value}")
    return value


def env_list(name: str, default: str = "") -> list[str]:
    """Return a comma-separated variable as a list of non-empty items."""
    return [item.strip() for item in env_str(name, default).split(",") if item.strip()]


def parse_clinic_lines(name: str, raw: str) -> dict[str, str]:
    """Parse ``+19724995457=main,+12145550100=google-ads`` into {E.164: campaign}."""
    lines: dict[str, str] = {}
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        number, _, campaign = item.partition("=")
        try:
            parsed = phonenumbers.parse(number.strip(), "US")
        except phonenumbers.NumberParseException:
            parsed = None
        if parsed is None or not phonenumbers.is_valid_number(parsed):
            raise ConfigError(f"{name}: {number.strip()!r} is not a valid phone number")
        e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
        lines[e164] = campaign.strip() or "main"
    if not lines:
        raise ConfigError(f"{name} must name at least one clinic line")
    return lines


def parse_origins(name: str, items: list[str]) -> list[str]:
    """Check that each item is a bare origin such as ``https://www.example.com``."""
    for origin in items:
        parts = urlsplit(origin)
        if parts.scheme not in {"http", "https"} or not parts.netloc or parts.path not in {"", "/"}:
            raise ConfigError(f"{name}: {origin!r} is not an origin like https://www.example.com")
    return [o.rstrip("/") for o in items]


def parse_smtp_url(name: str, raw: str) -> str:
    """Check ``smtp://user:pass@host:port`` (``smtps://`` for TLS); empty means no mail."""
    if not raw:
        return ""
    parts = urlsplit(raw)
    if parts.scheme not in {"smtp", "smtps"} or not parts.hostname:
        raise ConfigError(f"{name} must look like smtp://user:pass@host:port")
    try:
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        raise ConfigError(f"{name} has a malformed port") from None
    return raw


# The staff roles of crm.models.ROLES (tests/test_config.py holds the two equal): config.py is
# imported by the crm package itself, so it cannot import crm.models.
STAFF_ROLES = ("front_desk", "surgeon", "manager", "admin")


def parse_roles(name: str, items: list[str]) -> list[str]:
    """Check that each item is a staff role (``admin``, ``manager``, ``surgeon``, ``front_desk``)."""
    for role in items:
        if role not in STAFF_ROLES:
            raise ConfigError(f"{name}: {role!r} is not a role; use any of {', '.join(STAFF_ROLES)}")
    return list(dict.fromkeys(items))


def parse_rate(name: str, raw: str) -> str:
    """Check a limit written ``10 per hour`` (second, minute, hour, day)."""
    words = raw.split()
    units = {"second", "minute", "hour", "day"}
    if len(words) != 3 or not words[0].isdigit() or words[1] != "per" or words[2].rstrip("s") not in units:
        raise ConfigError(f"{name} must look like '10 per hour', not {raw!r}")
    return raw


class Config:
    """Settings for running the app; every value can come from the environment."""

    TESTING = False
    CRM_ENV = "development"

    def __init__(self) -> None:
        self.SECRET_KEY = env_str("SECRET_KEY", DEFAULT_SECRET_KEY)
        self.SQLALCHEMY_DATABASE_URI = env_str("DATABASE_URL")  # empty: SQLite in instance/
        self.TWILIO_AUTH_TOKEN = env_str("TWILIO_AUTH_TOKEN", "dev-twilio-token")
        self.CLINIC_PHONE = env_str("CLINIC_PHONE", "+19724995457")
        self.CLINIC_LINES = parse_clinic_lines("CLINIC_LINES", env_str("CLINIC_LINES", "+19724995457=main"))
        self.PUBLIC_BASE_URL = env_str("PUBLIC_BASE_URL").rstrip("/")
        if self.PUBLIC_BASE_URL:
            parse_origins("PUBLIC_BASE_URL", [self.PUBLIC_BASE_URL])
        self.EMBED_ORIGINS = parse_origins("EMBED_ORIGINS", env_list("EMBED_ORIGINS"))
        self.SESSION_IDLE_MINUTES = env_int("SESSION_IDLE_MINUTES", 15, minimum=1)
        self.SESSION_ABSOLUTE_HOURS = env_int("SESSION_ABSOLUTE_HOURS", 12, minimum=1)
        self.SMTP_URL = parse_smtp_url("SMTP_URL", env_str("SMTP_URL"))
        self.ONCALL_EMAIL = env_str("ONCALL_EMAIL")
        self.MAIL_FROM = env_str("MAIL_FROM", "crm@localhost")
        self.REDIS_URL = env_str("REDIS_URL")
        self.PROXY_HOPS = env_int("PROXY_HOPS", 0)
        self.FORM_RATE_LIMIT = parse_rate("FORM_RATE_LIMIT", env_str("FORM_RATE_LIMIT", "10 per hour"))
        # Seconds a form token must be old before it is accepted (a person needs longer; a bot doesn't).
        self.PUBLIC_FORM_MIN_SECONDS = env_int("PUBLIC_FORM_MIN_SECONDS", 2)
        self.LOGIN_ACCOUNT_FAILURES = env_int("LOGIN_ACCOUNT_FAILURES", 5, minimum=1)
        self.LOGIN_ADDRESS_FAILURES = env_int("LOGIN_ADDRESS_FAILURES", 50, minimum=1)
        self.LOGIN_WINDOW_MINUTES = env_int("LOGIN_WINDOW_MINUTES", 15, minimum=1)
        # Argon2id cost: 19 MiB and 10 passes (``crm.passwords`` says why). Not read from the
        # environment, so a deployment cannot weaken it by mistake; only the test suite lowers it.
        self.PASSWORD_HASH_MEMORY_KIB = 19 * 1024
        self.PASSWORD_HASH_TIME_COST = 10
        # Minutes between the password step and the code (or forced enrolment) step.
        self.SECOND_FACTOR_MINUTES = env_int("SECOND_FACTOR_MINUTES", 10, minimum=1)
        self.REQUIRE_2FA_ROLES = parse_roles(
            "REQUIRE_2FA_ROLES", env_list("REQUIRE_2FA_ROLES", self.default_2fa_roles())
        )
        self.FORCE_HTTPS = env_bool("FORCE_HTTPS", False)
        self.SESSION_COOKIE_SECURE = env_bool("COOKIE_SECURE", False)
        self.SESSION_COOKIE_HTTPONLY = True
        self.SESSION_COOKIE_SAMESITE = "Lax"
        self.SESSION_COOKIE_NAME = "crm_session"
        self.REMEMBER_COOKIE_DURATION = 0
        self.WTF_CSRF_TIME_LIMIT = None  # the session's own limits bound the token's life
        # Every SQL statement to the log, for debugging; bound values (patient data) stay hidden.
        self.SQLALCHEMY_ECHO = env_bool("SQL_ECHO", False)
        self.SQLALCHEMY_RECORD_QUERIES = False
        self.MAX_CONTENT_LENGTH = env_int("MAX_CONTENT_LENGTH", 20 * 1024 * 1024, minimum=1024)
        # Benchmark only (bench/run_bench.py sets it): count each request's SQL statements and
        # answer them in an ``X-SQL-Statements`` header. Off otherwise: it costs an event hook.
        self.BENCH_SQL_COUNT = env_bool("BENCH_SQL_COUNT", False)

    def default_2fa_roles(self) -> str:
        """Return the roles that must use two-factor sign-in unless the variable says otherwise."""
        return ""

    def check(self) -> None:
        """Refuse settings that are unsafe for this mode."""


class ProductionConfig(Config):
    """Production: HTTPS, secure cookies, 2FA for admins, and no default secret."""

    CRM_ENV = "production"

    def __init__(self) -> None:
        super().__init__()
        self.FORCE_HTTPS = env_bool("FORCE_HTTPS", True)
        self.SESSION_COOKIE_SECURE = env_bool("COOKIE_SECURE", True)

    def default_2fa_roles(self) -> str:
        return "admin"

    def check(self) -> None:
        if not self.SECRET_KEY or self.SECRET_KEY == DEFAULT_SECRET_KEY or len(self.SECRET_KEY) < 32:
            raise ConfigError(
                "SECRET_KEY must be set to a long random value in production "
                "(python -c 'import secrets; print(secrets.token_hex(32))')"
            )
        if not self.PUBLIC_BASE_URL:
            raise ConfigError("PUBLIC_BASE_URL must be set in production (webhook signatures use it)")


class TestConfig(Config):
    """Tests: a throwaway database unless TEST_DATABASE_URL names one; CSRF stays on."""

    TESTING = True
    CRM_ENV = "test"

    def __init__(self) -> None:
        super().__init__()
        self.SECRET_KEY = "test-secret-key-0123456789abcdef0123456789"  # noqa: S105
        self.SQLALCHEMY_DATABASE_URI = env_str("TEST_DATABASE_URL")
        self.TWILIO_AUTH_TOKEN = "test-twilio-auth-token"  # noqa: S105
        # The same Argon2id code path at a cost that keeps thousands of sign-ins quick.
        self.PASSWORD_HASH_MEMORY_KIB = 1024
        self.PASSWORD_HASH_TIME_COST = 1
        self.CLINIC_LINES = {"+19724995457": "main", "+12145550100": "google-ads"}
        self.PUBLIC_BASE_URL = "http://crm.test"
        self.SMTP_URL = ""
        self.ONCALL_EMAIL = "oncall@clinic.test"


def load_config(override: Any = None) -> Config:
    """Pick the config class from ``CRM_ENV`` (or the one given) and validate it."""
    if override is None:
        env = env_str("CRM_ENV", "development")
        if env not in {"development", "production"}:
            raise ConfigError(f"CRM_ENV must be development or production, not {env!r}")
        cfg: Config = ProductionConfig() if env == "production" else Config()
    elif isinstance(override, type):
        cfg = override()
    else:
        cfg = override
    cfg.check()
    return cfg
