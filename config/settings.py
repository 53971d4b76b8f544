"""Herald settings, read from the environment (see the README's Configuration table).

Defaults make `make run` work on a laptop with nothing configured: SQLite file, the local IoT
emulator as the push backend. Production (Lambda) sets the variables in zappa_settings.json.
"""
import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from .env import env_bool, env_float, env_int, env_list, env_str

if os.environ.get("AWS_LAMBDA_FUNCTION_NAME"):
    from .coldstart import collect_less_until_first_response

    collect_less_until_first_response()  # a Lambda cold start, until its first response (config/coldstart.py)

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = env_bool("DEBUG", False)
# The development key is public (it is in this file). Whoever knows the key can sign Django
# sessions, forge the local emulator's tokens (read every user's topic) and sign its publishes, so
# it is only ever used with DEBUG on, which `make run` sets.
DEVELOPMENT_SECRET_KEY = "django-insecure-herald-local-development-key-not-for-production"
SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY or SECRET_KEY == DEVELOPMENT_SECRET_KEY:
    if os.environ.get("AWS_LAMBDA_FUNCTION_NAME") or not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY must be set to a secret value when DEBUG is off (in production: the stage's "
            "remote_env). The development key is public: with it anyone could sign sessions and "
            "forge live-push credentials. For local development set DEBUG=1 (make run does)."
        )
    SECRET_KEY = DEVELOPMENT_SECRET_KEY

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "csp",
    "django_tasks",
    "django_tasks_db",
    "notifier",
    "feed",
    "limits",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "config.static_serving.WhiteNoiseMiddleware",  # WhiteNoise's, serving gzip-only files too
    "config.csp.CSPMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "config.errors.RejectNulMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "notifier.context_processors.notifications",
            ],
        },
    },
]

# --- Database: SQLite file by default, anything dj-database-url understands via DATABASE_URL.
DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
        conn_max_age=env_int("DB_CONN_MAX_AGE", 60, minimum=0),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # IMMEDIATE takes the write lock when a transaction starts, so two writers queue on the
    # busy timeout instead of one failing with "database is locked" when it upgrades a read.
    # WAL lets pages read while a write is under way; synchronous=NORMAL is WAL's usual pairing
    # (durable against a process crash, one fsync per checkpoint rather than per commit).
    # Connections persist like PostgreSQL's (CONN_MAX_AGE): a new SQLite connection costs the
    # pragmas and Django's function registrations, about 1.5 ms of every request.
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }

# --- Cache and limit counters. CACHE_URL=redis://HOST:PORT/DB (or rediss://): Django's Redis
# cache, shared by every process. Unset: per-process memory (LocMemCache), fine for caching but no
# place for a limit, since every gunicorn worker and warm Lambda container would count alone.
# LIMIT_COUNTERS is where the limits (failed log-ins, API throttles) count, atomically and shared
# by every process (limits/counters.py): Redis when there is one, else the database above.
CACHE_URL = env_str("CACHE_URL")
if CACHE_URL:
    if CACHE_URL.split("://", 1)[0] not in ("redis", "rediss", "unix"):
        raise ImproperlyConfigured(f"CACHE_URL must be a redis://, rediss:// or unix:// URL, not {CACHE_URL!r}")
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": CACHE_URL,
            "OPTIONS": {"socket_connect_timeout": 5, "socket_timeout": 5},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
LIMIT_COUNTERS = "cache" if CACHE_URL else "database"

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "feed.User"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
# The npm files the browser needs (MQTT.js, htmx) are served from node_modules, never copied in:
# only these files, not their packages' other builds (config.static_finders).
NPM_STATIC_FILES = {
    "vendor/mqtt/mqtt.min.js": "mqtt/dist/mqtt.min.js",
    "vendor/htmx/htmx.min.js": "htmx.org/dist/htmx.min.js",
}
STATICFILES_FINDERS = [
    "django.contrib.staticfiles.finders.FileSystemFinder",
    "django.contrib.staticfiles.finders.AppDirectoriesFinder",
    "config.static_finders.NpmFileFinder",
]
# WhiteNoise serves static files from the app itself (Lambda has no other web server), in one of
# two modes chosen by STATIC_MANIFEST, never by guessing from what is on disk:
# - collected (on by default on Lambda; `make package` runs collectstatic with it): compressed
#   copies under content-hashed names from STATIC_ROOT, cached by browsers for a year; a missing
#   file fails collectstatic at build time instead of a page at run time.
# - not collected (make run, tests): Django's default storage; WhiteNoise serves straight from the
#   app and npm folders, so an edit shows up without a build step. (Django's docs advise against
#   the manifest storage in tests, which do not run collectstatic.)
STATIC_MANIFEST = env_bool("STATIC_MANIFEST", bool(os.environ.get("AWS_LAMBDA_FUNCTION_NAME")))
# The URL pages use for static files, when the app is mounted under a prefix that the server
# strips: API Gateway's default URL serves a stage under /{stage}/, and Django reads STATIC_URL
# once at start-up, before any request has set that prefix. WhiteNoise keeps matching STATIC_URL.
STATIC_BASE_URL = env_str("STATIC_BASE_URL")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if STATIC_MANIFEST
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        ),
        "OPTIONS": {"base_url": STATIC_BASE_URL} if STATIC_BASE_URL else {},
    },
}
WHITENOISE_USE_FINDERS = not STATIC_MANIFEST
# Only the hashed copies go into the package: half the files, and nothing references the others.
WHITENOISE_KEEP_ONLY_HASHED_FILES = True

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
# Behind HTTPS (SECURE_COOKIES, as on API Gateway, which says so in X-Forwarded-Proto): browsers
# are told to use HTTPS only, for a year by default (HSTS_SECONDS).
if SESSION_COOKIE_SECURE:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_HSTS_SECONDS = env_int("HSTS_SECONDS", 31_536_000 if SESSION_COOKIE_SECURE else 0, minimum=0)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"

from config.csp import POLICY as CONTENT_SECURITY_POLICY  # noqa: E402  (django-csp; see config/csp.py)

REST_FRAMEWORK = {
    # Token first: an unauthenticated API call then gets 401 with WWW-Authenticate, not 403.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # The API speaks JSON (a form-encoded body is a 415); /api/token/ also takes a form, for curl.
    "DEFAULT_PARSER_CLASSES": ["config.parsers.JSONParser"],
    "EXCEPTION_HANDLER": "config.api_errors.exception_handler",
    "DEFAULT_THROTTLE_RATES": {
        "signup": env_str("THROTTLE_SIGNUP", "20/hour"),
        "login": env_str("THROTTLE_LOGIN", "30/min"),
        "write": env_str("THROTTLE_WRITE", "120/min"),
        "credentials": env_str("THROTTLE_CREDENTIALS", "30/min"),
        "password_reset": env_str("THROTTLE_PASSWORD_RESET", "10/hour"),
    },
}

# Failed log-ins (config/login_guard.py), on the page and the API alike.
LOGIN_FAILURE_WINDOW = env_int("LOGIN_FAILURE_WINDOW", 900, minimum=1)
LOGIN_FAILURES_PER_USERNAME = env_int("LOGIN_FAILURES_PER_USERNAME", 10, minimum=1)
LOGIN_FAILURES_PER_ADDRESS = env_int("LOGIN_FAILURES_PER_ADDRESS", 50, minimum=1)

SPECTACULAR_SETTINGS = {
    "TITLE": "Herald API",
    "DESCRIPTION": "Social feed with instant notifications over AWS IoT Core.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI served from our own static files, not a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    # One name for the notification kinds wherever they appear (a notification, muted_kinds).
    "ENUM_NAME_OVERRIDES": {"NotificationKindEnum": "notifier.models.Kind"},
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "config.schema.add_error_responses",
    ],
}

# --- Notifications and push (contract: README "Configuration").
NOTIFIER_BACKEND = env_str("NOTIFIER_BACKEND", "local")
if NOTIFIER_BACKEND not in {"local", "aws"}:
    raise ImproperlyConfigured(f"NOTIFIER_BACKEND must be 'local' or 'aws', not {NOTIFIER_BACKEND!r}")
IOT_TOPIC_PREFIX = env_str("IOT_TOPIC_PREFIX", "herald/dev").strip("/")
try:
    from notifier.aws.policies import validate_topic_prefix  # plain Python: no Django, no AWS SDK

    validate_topic_prefix(IOT_TOPIC_PREFIX)
except ValueError as exc:
    raise ImproperlyConfigured(str(exc)) from None
AWS_REGION = env_str("AWS_REGION", env_str("AWS_DEFAULT_REGION", "us-east-1"))
IOT_DATA_ENDPOINT = env_str("IOT_DATA_ENDPOINT")
# The role the credential view assumes. Locally the emulator knows the dev stage's role (the one
# zappa_settings.json names), with the policy iot_setup would give it.
from notifier.aws import local as _local_account  # noqa: E402  (constants; reads settings only when called)

IOT_ROLE_ARN = env_str("IOT_ROLE_ARN", _local_account.ROLE_ARN if NOTIFIER_BACKEND == "local" else "")
# Where the STS client goes (boto3 reads the same variable); locally: the emulator's HTTP API.
AWS_ENDPOINT_URL_STS = env_str("AWS_ENDPOINT_URL_STS")
IOT_CREDENTIALS_TTL = env_int("IOT_CREDENTIALS_TTL", 900, minimum=900, maximum=3600)
LOCALIOT_HOST = env_str("LOCALIOT_HOST", "127.0.0.1")
LOCALIOT_MQTT_PORT = env_int("LOCALIOT_MQTT_PORT", 8883, minimum=1, maximum=65535)
LOCALIOT_WS_PORT = env_int("LOCALIOT_WS_PORT", 8083, minimum=1, maximum=65535)
LOCALIOT_HTTP_PORT = env_int("LOCALIOT_HTTP_PORT", 8084, minimum=1, maximum=65535)
# The emulator closes a connection that sends no CONNECT within this many seconds, and holds at
# most this many MQTT connections (TCP and WebSocket together) open at once.
LOCALIOT_CONNECT_TIMEOUT = env_float("LOCALIOT_CONNECT_TIMEOUT", 10.0, minimum=0.1, maximum=300)
LOCALIOT_MAX_CONNECTIONS = env_int("LOCALIOT_MAX_CONNECTIONS", 1000, minimum=1, maximum=100_000)
# Publishes/s the emulator's HTTP API accepts before answering 429 as AWS does past the account's
# limit (0: no limit); for trying Herald's back-off locally.
LOCALIOT_PUBLISH_RATE = env_float("LOCALIOT_PUBLISH_RATE", 0.0, minimum=0, maximum=1_000_000)
for _name in ("LOCALIOT_MQTT_PORT", "LOCALIOT_WS_PORT", "LOCALIOT_HTTP_PORT"):
    if globals()[_name] == 1883:
        raise ImproperlyConfigured(f"{_name} must not be 1883: a system MQTT broker may own that port.")
# Background tasks (notifier/taskqueue.py): `database` (manage.py db_worker runs the queue),
# `immediate` (inline after commit: tests, benchmarks), `lambda` (the database queue, each task
# run by an asynchronous Lambda invocation; the default on Lambda).
TASK_BACKEND = env_str("TASK_BACKEND", "lambda" if os.environ.get("AWS_LAMBDA_FUNCTION_NAME") else "database")
_TASK_BACKENDS = {
    "database": "django_tasks_db.DatabaseBackend",
    "immediate": "django_tasks.backends.immediate.ImmediateBackend",
    "lambda": "notifier.taskqueue.LambdaBackend",
}
if TASK_BACKEND not in _TASK_BACKENDS:
    raise ImproperlyConfigured(f"TASK_BACKEND must be one of {', '.join(_TASK_BACKENDS)}, not {TASK_BACKEND!r}")
TASKS = {"default": {"BACKEND": _TASK_BACKENDS[TASK_BACKEND]}}
# A running task's worker renews its lease every quarter of TASK_LEASE_SECONDS; a task whose lease
# has expired lost its worker (killed) and the sweep runs it again (notifier/taskqueue.py).
TASK_LEASE_SECONDS = env_float("TASK_LEASE_SECONDS", 20.0, minimum=1, maximum=3600)
# On Lambda: the function's timeout (zappa_settings.json "timeout_seconds"); no run outlives it.
TASK_LAMBDA_TIMEOUT = env_float("TASK_LAMBDA_TIMEOUT", 30.0, minimum=1, maximum=900)
if TASK_BACKEND == "lambda" and TASK_LEASE_SECONDS >= TASK_LAMBDA_TIMEOUT:
    raise ImproperlyConfigured("TASK_LEASE_SECONDS must be shorter than TASK_LAMBDA_TIMEOUT (the function's timeout)")
# A failed task is run again (backing off) until it has run this many times.
TASK_MAX_ATTEMPTS = env_int("TASK_MAX_ATTEMPTS", 5, minimum=1, maximum=50)
# Followers per fan-out task (feed/fanout.py). Larger chunks pay fewer commits and fixed per-task
# queries (10k followers: 0.32 s at 2,000 against 0.42 s at 1,000, bench/fanout.py); smaller ones
# hold each follower's state row for less time while the chunk writes.
FANOUT_CHUNK_SIZE = env_int("FANOUT_CHUNK_SIZE", 2000, minimum=1, maximum=20000)
# On Lambda, at most this many invocations drain the task queue for one burst of tasks (a
# 1M-follower post is 500 chunks, not 500 concurrent invocations); each keeps taking queued
# tasks for TASK_LAMBDA_DRAIN_SECONDS (keep it well under the function's timeout).
TASK_LAMBDA_PARALLEL = env_int("TASK_LAMBDA_PARALLEL", 10, minimum=1, maximum=1000)
TASK_LAMBDA_DRAIN_SECONDS = env_float("TASK_LAMBDA_DRAIN_SECONDS", 10.0, minimum=0, maximum=900)
# Seconds a request's own push may take (connect + read, one attempt); the rest is deliver_pending's.
PUSH_URGENT_TIMEOUT = env_float("PUSH_URGENT_TIMEOUT", 0.3, minimum=0.02, maximum=10)
# Likes of one post, follows and one author's new posts within this many seconds are one
# notification ("Ana and 3 others liked your post"); see notifier/groups.py.
NOTIFICATION_GROUP_WINDOW = env_int("NOTIFICATION_GROUP_WINDOW", 86400, minimum=60, maximum=30 * 86400)
# Publishing batches (notifier/push/batch.py, notifier/push/gate.py), per process: publishes in flight at once, and
# publishes per second. AWS IoT allows 20,000 publishes/s per account by default; 1,000 per process
# times TASK_LAMBDA_PARALLEL stays well inside it. A throttled (429) publisher halves its rate.
PUSH_CONCURRENCY = env_int("PUSH_CONCURRENCY", 8, minimum=1, maximum=256)
PUSH_RATE_LIMIT = env_float("PUSH_RATE_LIMIT", 1000.0, minimum=1, maximum=100_000)
# When publishes in a process fail at a rate (3 or more, and half of its outcomes, within 10 s),
# its batches stop trying for this long and then send one probe; what they skip goes to the quick
# retry queue instead of each batch waiting out its own timeouts (notifier/push/gate.py).
PUSH_BREAKER_SECONDS = env_float("PUSH_BREAKER_SECONDS", 1.0, minimum=0, maximum=600)
# Dotted path of the class that pushes messages; see notifier/push/publisher.py.
NOTIFIER_PUBLISHER = env_str("NOTIFIER_PUBLISHER", "notifier.push.publisher.IotDataPublisher")

# --- Web Push (RFC 8030 / 8291 / 8292; notifier/webpush). VAPID keys: the private key is the
# base64url raw 32-byte P-256 scalar, the public key the base64url uncompressed point (what
# `manage.py vapid_keys` prints; on Lambda from the stage's remote_env). With DEBUG on and no keys
# set, a pair is generated once and kept in WEB_PUSH_KEY_FILE (beside the SQLite database). No
# keys and DEBUG off: Web Push is off (GET /api/push/config/ says `vapid_public_key: null`).
WEB_PUSH_VAPID_PRIVATE_KEY = env_str("WEB_PUSH_VAPID_PRIVATE_KEY")
WEB_PUSH_VAPID_PUBLIC_KEY = env_str("WEB_PUSH_VAPID_PUBLIC_KEY")
# The VAPID `sub` claim: how a push service reaches the operator (mailto: or https:).
WEB_PUSH_SUBJECT = env_str("WEB_PUSH_SUBJECT", "mailto:webpush@herald.invalid")
if not WEB_PUSH_SUBJECT.startswith(("mailto:", "https://")):
    raise ImproperlyConfigured(f"WEB_PUSH_SUBJECT must be a mailto: or https:// contact, not {WEB_PUSH_SUBJECT!r}")
WEB_PUSH_KEY_FILE = env_str("WEB_PUSH_KEY_FILE", str(
    Path(DATABASES["default"]["NAME"]).with_name("webpush-vapid.json")
    if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3" else BASE_DIR / "webpush-vapid.json"))
# Origins besides the known push services that a subscription's endpoint may name (the local
# push service in the IoT emulator: http allowed only here). make run's default is the emulator.
WEB_PUSH_EXTRA_ORIGINS = env_list(
    "WEB_PUSH_EXTRA_ORIGINS", [f"http://{LOCALIOT_HOST}:{LOCALIOT_HTTP_PORT}"] if DEBUG else [])
# Devices per user (the oldest subscription goes beyond it); pushes sent side by side per
# process; seconds a push may take (connect + read) in a request's own send and in background.
WEB_PUSH_MAX_SUBSCRIPTIONS = env_int("WEB_PUSH_MAX_SUBSCRIPTIONS", 20, minimum=1, maximum=1000)
WEB_PUSH_CONCURRENCY = env_int("WEB_PUSH_CONCURRENCY", 16, minimum=1, maximum=256)
WEB_PUSH_URGENT_TIMEOUT = env_float("WEB_PUSH_URGENT_TIMEOUT", 1.0, minimum=0.05, maximum=30)
WEB_PUSH_TIMEOUT = env_float("WEB_PUSH_TIMEOUT", 10.0, minimum=0.1, maximum=60)

# --- Uploaded pictures (feed/media.py). Locally: files under MEDIA_ROOT, served at MEDIA_URL by
# Herald itself (config/media.py). MEDIA_BUCKET (Lambda): an S3 bucket through django-storages,
# private, read through presigned GET URLs (MEDIA_URL_EXPIRES seconds), written by the function's
# role and by browsers' presigned POSTs (POST /api/uploads/).
MEDIA_URL = "/media/"
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(BASE_DIR / "media")))
MEDIA_BUCKET = env_str("MEDIA_BUCKET")
MEDIA_URL_EXPIRES = env_int("MEDIA_URL_EXPIRES", 6 * 3600, minimum=60, maximum=7 * 86400)
if MEDIA_BUCKET:
    STORAGES["default"] = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {"bucket_name": MEDIA_BUCKET, "region_name": AWS_REGION, "file_overwrite": False,
                    "querystring_auth": True, "querystring_expire": MEDIA_URL_EXPIRES, "signature_version": "s3v4",
                    "object_parameters": {"CacheControl": "private, max-age=31536000, immutable"}},
    }
    # Pages show the bucket's pictures (both of S3's virtual-host names for it).
    CONTENT_SECURITY_POLICY = {**CONTENT_SECURITY_POLICY, "DIRECTIVES": {
        **CONTENT_SECURITY_POLICY["DIRECTIVES"],
        "img-src": [*CONTENT_SECURITY_POLICY["DIRECTIVES"]["img-src"], f"https://{MEDIA_BUCKET}.s3.amazonaws.com",
                    f"https://{MEDIA_BUCKET}.s3.{AWS_REGION}.amazonaws.com"],
    }}
# Django's own request limits stay as they are; a picture is at most feed.images.MAX_BYTES.
FILE_UPLOAD_PERMISSIONS = 0o644

# --- Email (Django's email API only): the digest, address verification, password reset.
# EMAIL_BACKEND names a transport: console (print to the terminal), file (one file per message in
# EMAIL_FILE_PATH), smtp (EMAIL_HOST, EMAIL_PORT, EMAIL_HOST_USER, EMAIL_HOST_PASSWORD,
# EMAIL_USE_TLS), ses (Amazon SES through django-ses, on the function's own role), locmem, or a
# dotted backend path. Default: ses on Lambda, console elsewhere (nothing leaves a laptop).
_EMAIL_BACKENDS = {
    "console": "django.core.mail.backends.console.EmailBackend",
    "file": "django.core.mail.backends.filebased.EmailBackend",
    "smtp": "django.core.mail.backends.smtp.EmailBackend",
    "ses": "django_ses.SESBackend",
    "locmem": "django.core.mail.backends.locmem.EmailBackend",
}
_email_backend = env_str("EMAIL_BACKEND", "ses" if os.environ.get("AWS_LAMBDA_FUNCTION_NAME") else "console")
if _email_backend not in _EMAIL_BACKENDS and "." not in _email_backend:
    raise ImproperlyConfigured(f"EMAIL_BACKEND must be one of {', '.join(_EMAIL_BACKENDS)} or a dotted path, "
                               f"not {_email_backend!r}")
EMAIL_BACKEND = _EMAIL_BACKENDS.get(_email_backend, _email_backend)
EMAIL_FILE_PATH = env_str("EMAIL_FILE_PATH", str(BASE_DIR / "sent-mail"))
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25, minimum=1, maximum=65535)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_TIMEOUT = env_float("EMAIL_TIMEOUT", 10.0, minimum=1, maximum=60)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "Herald <herald@localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
# django-ses: the SES region (its client is botocore's "ses", API v1 SendRawEmail). Its automatic
# pacing asks SES for the account's quota (ses:GetSendQuota) and sleeps per process; it is off by
# default (AWS_SES_AUTO_THROTTLE=0): a throttled send is retried by the digest batch's task.
AWS_SES_REGION_NAME = env_str("AWS_SES_REGION_NAME", AWS_REGION)
AWS_SES_REGION_ENDPOINT = f"email.{AWS_SES_REGION_NAME}.amazonaws.com"
AWS_SES_AUTO_THROTTLE = env_float("AWS_SES_AUTO_THROTTLE", 0.0, minimum=0, maximum=1) or None
AWS_SES_CONFIGURATION_SET = env_str("AWS_SES_CONFIGURATION_SET") or None
# Bounces and complaints (notifier/mail/bounces.py): the SNS topics whose signed messages the
# endpoint accepts. Empty: the endpoint is off (404): any AWS account can sign SNS messages.
SES_EVENTS_TOPIC_ARNS = env_list("SES_EVENTS_TOPIC_ARNS", [])
# Absolute links in emails (no request to build them from): scheme, host and any mount prefix,
# e.g. https://abc123.execute-api.us-east-1.amazonaws.com/dev
SITE_URL = env_str("SITE_URL", "http://127.0.0.1:8000").rstrip("/")
SITE_NAME = env_str("SITE_NAME", "Herald")
# An address verification link lives this long (seconds).
EMAIL_VERIFY_MAX_AGE = env_int("EMAIL_VERIFY_MAX_AGE", 3 * 86400, minimum=600, maximum=30 * 86400)
# Mails a user may have sent to their own address per hour (verification links), and password
# reset mails per address per hour (on top of THROTTLE_PASSWORD_RESET per client address).
EMAIL_VERIFY_PER_HOUR = env_int("EMAIL_VERIFY_PER_HOUR", 5, minimum=1, maximum=1000)
PASSWORD_RESET_PER_ADDRESS_PER_HOUR = env_int("PASSWORD_RESET_PER_ADDRESS_PER_HOUR", 3, minimum=1, maximum=1000)
PASSWORD_RESET_TIMEOUT = env_int("PASSWORD_RESET_TIMEOUT", 3600, minimum=300, maximum=3 * 86400)
# Digests (notifier/mail/digests.py): recipients per background task, items listed per email, and
# how far back a digest may reach after a long pause.
DIGEST_BATCH_SIZE = env_int("DIGEST_BATCH_SIZE", 100, minimum=1, maximum=5000)
DIGEST_MAX_ITEMS = env_int("DIGEST_MAX_ITEMS", 30, minimum=1, maximum=500)
DIGEST_MAX_AGE = env_int("DIGEST_MAX_AGE", 7 * 86400, minimum=3600, maximum=90 * 86400)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}, "django_tasks": {"level": "WARNING"}},
}
