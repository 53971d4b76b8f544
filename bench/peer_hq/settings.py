"""Settings of the read-path peer: django-notifications-hq on its own, on PostgreSQL.

Only what its models, views and live JSON API need (auth, contenttypes, sessions for
login_required, the notifications app, and `posts`: the post- and comment-like objects its
notifications point at). DATABASE_URL is the peer's scratch database; bench/peer_hq.py sets it.
Run from bench/peer_hq/ (this directory on sys.path), with .venv-bench-hq's python.
"""
import os

import dj_database_url

SECRET_KEY = os.environ.get("SECRET_KEY", "peer-hq-bench-only")
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
# Persistent connections, as Herald's settings have them (DB_CONN_MAX_AGE, default 60 s), so
# both sides pay the same per request.
DATABASES = {"default": dj_database_url.parse(
    os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/herald_bench_reads_peer_hq"),
    conn_max_age=60, conn_health_checks=True)}
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "notifications",
    "posts",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
ROOT_URLCONF = "urls"
WSGI_APPLICATION = "wsgi.application"
TEMPLATES = []
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# Its defaults (no soft delete, no JSON extras, 20 a page, 10 in the live lists unless ?max=).
DJANGO_NOTIFICATIONS_CONFIG = {"SOFT_DELETE": False, "USE_JSONFIELD": False}
LOGGING = {"version": 1, "disable_existing_loggers": False,
           "root": {"handlers": [], "level": "WARNING"}}
