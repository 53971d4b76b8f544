"""Settings for the test suite (pytest.ini): the real settings, with a key of its own.

DEBUG stays off, as in production, so tests see what users see; the key is set in the environment
so that processes the tests start (workers, the emulator, gunicorn) share it.
"""
import os

os.environ.setdefault("SECRET_KEY", "herald-test-suite-key-used-by-tests-only")

from .settings import *  # noqa: E402,F401,F403
