"""Deployment settings: a malformed variable stops the app with a message naming it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import config
from config import DEFAULT_SECRET_KEY, Config, ConfigError, ProductionConfig, load_config

ROOT = Path(__file__).resolve().parent.parent
# Every variable a deployment may set, cleared so the developer's own shell cannot leak in.
VARIABLES = (
    "CRM_ENV",
    "SECRET_KEY",
    "DATABASE_URL",
    "CLINIC_LINES",
    "EMBED_ORIGINS",
    "SMTP_URL",
    "SESSION_IDLE_MINUTES",
    "FORM_RATE_LIMIT",
    "PUBLIC_FORM_MIN_SECONDS",
    "FORCE_HTTPS",
    "COOKIE_SECURE",
    "PROXY_HOPS",
    "PUBLIC_BASE_URL",
    "REQUIRE_2FA_ROLES",
    "SECOND_FACTOR_MINUTES",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CLINIC_LINES", "+19724995457=main,not-a-phone=ads"),
        ("CLINIC_LINES", "+1555=main"),
        ("CLINIC_LINES", " , "),
        ("EMBED_ORIGINS", "www.spinecenter.example"),
        ("EMBED_ORIGINS", "https://spinecenter.example/appointments"),
        ("EMBED_ORIGINS", "ftp://spinecenter.example"),
        ("SMTP_URL", "mail.example.com:25"),
        ("SMTP_URL", "smtp://user:pass@mail.example.com:port"),
        ("SMTP_URL", "https://mail.example.com"),
        ("SESSION_IDLE_MINUTES", "fifteen"),
        ("SESSION_IDLE_MINUTES", "0"),
        ("SESSION_IDLE_MINUTES", "1.5"),
        ("FORM_RATE_LIMIT", "10/hour"),
        ("FORM_RATE_LIMIT", "ten per hour"),
        ("FORM_RATE_LIMIT", "10 per fortnight"),
        ("PUBLIC_FORM_MIN_SECONDS", "two"),
        ("FORCE_HTTPS", "maybe"),
        ("COOKIE_SECURE", "2"),
        ("PROXY_HOPS", "-1"),
        ("CRM_ENV", "staging"),
        ("REQUIRE_2FA_ROLES", "admin,superuser"),
        ("REQUIRE_2FA_ROLES", "Admin"),
        ("SECOND_FACTOR_MINUTES", "ten"),
        ("SECOND_FACTOR_MINUTES", "0"),
    ],
)
def test_a_malformed_variable_stops_with_its_name(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as error:
        load_config()
    assert name in str(error.value)


def test_well_formed_variables_are_read_as_documented(monkeypatch):
    monkeypatch.setenv("CLINIC_LINES", "+19724995457=main, (214) 555-0100=google-ads,+12145550111")
    monkeypatch.setenv("EMBED_ORIGINS", "https://www.spinecenter.example, https://spinecenter.example/")
    monkeypatch.setenv("SMTP_URL", "smtps://alerts:secret@mail.example.com:465")
    monkeypatch.setenv("SESSION_IDLE_MINUTES", "20")
    monkeypatch.setenv("FORM_RATE_LIMIT", "5 per minute")
    monkeypatch.setenv("PUBLIC_FORM_MIN_SECONDS", "0")
    monkeypatch.setenv("COOKIE_SECURE", "yes")
    cfg = load_config()
    assert cfg.CLINIC_LINES == {
        "+19724995457": "main",
        "+12145550100": "google-ads",
        "+12145550111": "main",
    }
    assert cfg.EMBED_ORIGINS == ["https://www.spinecenter.example", "https://spinecenter.example"]
    assert cfg.SMTP_URL == "smtps://alerts:secret@mail.example.com:465"
    assert cfg.SESSION_IDLE_MINUTES == 20
    assert cfg.FORM_RATE_LIMIT == "5 per minute"
    assert cfg.PUBLIC_FORM_MIN_SECONDS == 0
    assert cfg.SESSION_COOKIE_SECURE is True


def test_defaults_are_the_documented_ones():
    cfg = load_config()
    assert isinstance(cfg, Config) and not isinstance(cfg, ProductionConfig)
    assert cfg.SESSION_IDLE_MINUTES == 15
    assert cfg.SESSION_ABSOLUTE_HOURS == 12
    assert cfg.FORM_RATE_LIMIT == "10 per hour"
    assert cfg.PUBLIC_FORM_MIN_SECONDS == 2
    assert (cfg.LOGIN_ACCOUNT_FAILURES, cfg.LOGIN_ADDRESS_FAILURES, cfg.LOGIN_WINDOW_MINUTES) == (5, 50, 15)
    assert cfg.PROXY_HOPS == 0
    assert cfg.SESSION_COOKIE_SECURE is False  # plain-HTTP development (STACK.md gotcha 4)
    assert cfg.REQUIRE_2FA_ROLES == []  # the demo logins of `make run` need no second factor


def test_require_2fa_roles_reads_a_comma_list_of_roles(monkeypatch):
    monkeypatch.setenv("REQUIRE_2FA_ROLES", " admin, manager ,admin")
    assert load_config().REQUIRE_2FA_ROLES == ["admin", "manager"]


def test_the_roles_config_knows_are_the_models_roles():
    from crm.models import ROLES

    assert config.STAFF_ROLES == ROLES


@pytest.mark.parametrize("secret", [None, "", DEFAULT_SECRET_KEY, "short-secret"])
def test_production_refuses_a_missing_or_default_secret_key(monkeypatch, secret):
    monkeypatch.setenv("CRM_ENV", "production")
    monkeypatch.setenv("PUBLIC_BASE_URL", "https://crm.spinecenter.example")
    if secret is not None:
        monkeypatch.setenv("SECRET_KEY", secret)
    with pytest.raises(ConfigError) as error:
        load_config()
    assert "SECRET_KEY" in str(error.value)


def test_production_starts_with_a_real_secret_and_secures_cookies(monkeypatch):
    monkeypatch.setenv("CRM_ENV", "production")
    monkeypatch.setenv("PUBLIC_BASE_URL", "https://crm.spinecenter.example")
    monkeypatch.setenv("SECRET_KEY", "9f" * 32)
    cfg = load_config()
    assert isinstance(cfg, ProductionConfig)
    assert cfg.SESSION_COOKIE_SECURE is True
    assert cfg.FORCE_HTTPS is True
    assert cfg.REQUIRE_2FA_ROLES == ["admin"]


def test_the_app_itself_does_not_start_on_a_malformed_variable(tmp_path):
    """Run as an operator would: ``flask --app wsgi`` exits non-zero, naming the variable."""
    env = {k: v for k, v in os.environ.items() if k not in VARIABLES}
    env.update(SESSION_IDLE_MINUTES="fifteen", CRM_INSTANCE_PATH=str(tmp_path))
    flask = Path(sys.executable).with_name("flask")
    result = subprocess.run(
        [str(flask), "--app", "wsgi", "routes"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "SESSION_IDLE_MINUTES must be a whole number" in result.stderr
    assert "/" not in result.stdout  # no route table: the app never started


def test_config_module_has_no_secret_of_its_own_in_production():
    # The default key exists only so development starts; production refuses it (above).
    assert config.DEFAULT_SECRET_KEY.startswith("dev-only")


def test_passwords_are_hashed_with_argon2id_at_19_mib_and_10_passes_outside_the_suite(monkeypatch):
    """19 MiB × 10 passes for every deployment (RFC 9106's 64 MiB × 3 in memory × passes);
    only the suite's own config lowers the cost."""
    from crm import passwords

    monkeypatch.setenv("SECRET_KEY", "a-production-secret-key-of-enough-length-0123456789")
    for cls in (Config, ProductionConfig):
        cfg = cls()
        assert (cfg.PASSWORD_HASH_MEMORY_KIB, cfg.PASSWORD_HASH_TIME_COST) == (19456, 10)
        assert cfg.PASSWORD_HASH_MEMORY_KIB * cfg.PASSWORD_HASH_TIME_COST >= 0.98 * 65536 * 3
    monkeypatch.setattr(passwords, "_hasher", passwords._hasher)  # restored after the test
    monkeypatch.setattr(passwords, "_DUMMY_HASH", passwords._DUMMY_HASH)
    passwords.configure(memory_kib=19456, time_cost=10)
    stored = passwords.hash_password("a long passphrase for the clinic")
    assert stored.startswith("$argon2id$v=19$m=19456,t=10,p=1$")
    assert passwords.verify_password(stored, "a long passphrase for the clinic")
    assert not passwords.verify_password(stored, "a long passphrase for the clinic!")
    assert passwords._DUMMY_HASH.startswith("$argon2id$v=19$m=19456,t=10,p=1$")


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="Linux's peak-memory reset")
def test_a_password_check_takes_little_memory_from_its_worker():
    """One Argon2id hash at the deployed cost raises the process's peak memory by < 25 MB.

    A worker that has served a day's pages holds about 205 MB; the old 64 MiB cost took it
    past the 250 MB budget at every sign-in. Measured in a fresh interpreter: the kernel's
    peak (``VmHWM``) is reset, then ``crm.passwords`` is imported, which hashes its timing
    dummy at the module's own cost (a sign-in checks a hash made at that cost, as much work).
    """
    script = """
import argon2, crm
def peak():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
open("/proc/self/clear_refs", "w").write("5")
before = peak()
from crm import passwords
print(peak() - before)
"""
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        cwd=Path(config.__file__).parent,
    )
    grew = float(done.stdout.strip())
    assert 15 < grew < 25, grew  # the 19 MiB it needs, and not the 64 MiB of before
