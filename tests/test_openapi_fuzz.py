"""Schemathesis, a property-based API fuzzer, against the live API with every check it has.

It generates requests from the OpenAPI schema (valid and invalid ones), and fails when a response
breaks the schema, a documented status or content type, when valid input is refused or invalid
input accepted, or on any 5xx. schemathesis.toml lists the few refusals the schema cannot describe
(state: a taken username, a wrong password, following yourself). A fixed seed keeps runs repeatable.
"""
import subprocess
import sys
from pathlib import Path

import pytest
from rest_framework.authtoken.models import Token

from feed import services

ROOT = Path(__file__).resolve().parent.parent
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")


@pytest.mark.django_db(transaction=True)
def test_schemathesis_finds_nothing(live_server, live_push, make_user, settings, monkeypatch, tmp_path):
    from config import throttles

    # The fuzzer sends hundreds of requests a minute: throttles would answer most of them 429.
    for throttle in (throttles.WriteThrottle, throttles.SignupThrottle, throttles.LoginThrottle,
                     throttles.CredentialsThrottle):
        monkeypatch.setattr(throttle, "THROTTLE_RATES", {throttle.scope: "100000/min"})
    settings.LOGIN_FAILURES_PER_USERNAME = settings.LOGIN_FAILURES_PER_ADDRESS = 100_000
    user = make_user("fuzzer")
    post = services.create_post(user, "something to comment on")
    services.add_comment(user, post.pk, "and a comment")
    token = Token.objects.create(user=user).key

    result = subprocess.run(
        [str(SCHEMATHESIS), "--no-color", "--config-file", str(ROOT / "schemathesis.toml"), "run",
         f"{live_server.url}/api/schema/", "--checks", "all", "--max-examples", "20", "--seed", "1",
         "-H", f"Authorization: Token {token}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "Tested:" in result.stdout or "passed" in result.stdout
