"""The development SECRET_KEY is public: it is only ever used with DEBUG on."""
import os
import subprocess
import sys

import pytest


def settings_load(**env) -> subprocess.CompletedProcess:
    from django.conf import settings

    clean = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "DEBUG", "DJANGO_SETTINGS_MODULE")}
    code = "import django, os; os.environ['DJANGO_SETTINGS_MODULE'] = 'config.settings'; django.setup(); print('started')"
    return subprocess.run([sys.executable, "-c", code], cwd=settings.BASE_DIR, env=clean | env,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("env", [{}, {"SECRET_KEY": ""}, {"SECRET_KEY": "django-insecure-herald-local-development-key-not-for-production"}])
def test_without_debug_a_missing_or_public_key_refuses_to_start(env):
    result = settings_load(**env)
    assert result.returncode != 0 and "started" not in result.stdout
    assert "SECRET_KEY must be set" in result.stderr


def test_with_debug_the_development_key_is_used_and_a_real_key_always_works():
    assert settings_load(DEBUG="1").stdout.strip() == "started"
    assert settings_load(SECRET_KEY="a-real-secret-value-from-the-environment").stdout.strip() == "started"
