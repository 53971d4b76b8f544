"""config/coldstart.py: the collector's threshold is raised for a cold start and restored after
the first response; only a Lambda process (AWS_LAMBDA_FUNCTION_NAME) does it at all."""
import gc
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.signals import request_finished

from config.coldstart import STARTUP_THRESHOLD, collect_less_until_first_response

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def restored_gc():
    before = gc.get_threshold()
    yield
    gc.set_threshold(*before)
    gc.unfreeze()


@pytest.mark.django_db  # request_finished also closes old database connections
def test_threshold_is_raised_until_the_first_response(restored_gc):
    defaults = gc.get_threshold()
    collect_less_until_first_response()
    assert gc.get_threshold() == STARTUP_THRESHOLD
    request_finished.send(sender=None)
    assert gc.get_threshold() == defaults
    assert gc.get_freeze_count() > 0
    gc.set_threshold(1, 2, 3)
    request_finished.send(sender=None)  # once only: a later response changes nothing
    assert gc.get_threshold() == (1, 2, 3)


@pytest.mark.parametrize("on_lambda", [True, False])
def test_only_a_lambda_process_raises_it(on_lambda):
    env = {k: v for k, v in os.environ.items() if k != "AWS_LAMBDA_FUNCTION_NAME"}
    env.update({"DJANGO_SETTINGS_MODULE": "config.settings", "SECRET_KEY": "x" * 50, "DEBUG": "0",
                "TASK_BACKEND": "database", "STATIC_MANIFEST": "0"})
    if on_lambda:
        env["AWS_LAMBDA_FUNCTION_NAME"] = "herald-test"
    done = subprocess.run([sys.executable, "-c", "import gc, django; django.setup(); print(gc.get_threshold())"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(STARTUP_THRESHOLD if on_lambda else gc.get_threshold())
