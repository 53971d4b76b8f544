#!/usr/bin/env bash
# The bench-only environment of the read-path peer, django-notifications-hq: .venv-bench-hq.
#
# Why a venv of its own: the peer is measured against Herald, it is never part of Herald, so
# nothing of it goes into Herald's requirements files. It runs on the same Django (and the same
# PostgreSQL driver) as Herald's requirements.txt pins, so the two sides differ only in their
# schema and their queries.
#
# Why a patch: the newest release still declares `Meta.index_together = ('recipient', 'unread')`,
# an option Django 5.1 removed (the model class fails to load). In the installed copy only, the
# option becomes the equivalent `Meta.indexes = [models.Index(fields=['recipient', 'unread'])]`.
# Its migration 0008 still creates that index with AlterIndexTogether, which Django keeps for old
# migration files, so the database gets the same (recipient_id, unread) index the release does.
#
# Idempotent: a stamp file records what was installed; a second run with the same pins is a no-op.
#
#   bench/peer_env.sh            # build (or confirm) .venv-bench-hq, print its python
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${PEER_HQ_VENV:-$ROOT/.venv-bench-hq}"
# The base interpreter of Herald's venv (the same Python as Herald's side), else python3.
PYTHON="${PEER_PYTHON:-$("$ROOT/.venv/bin/python" -c 'import sys; print(sys.base_prefix + "/bin/python3")' 2>/dev/null || echo python3)}"

HQ_VERSION="1.8.3"
# Its dependencies, pinned too, so two builds measure the same code.
HQ_DEPS=("django-model-utils==5.0.0" "jsonfield==3.2.0" "swapper==1.5.0" "pytz==2026.6")

pin() {  # the exact "name==version" line of a Herald requirements file
    local line
    line="$(grep -i -m1 -E "^$1(\[[^]]*\])?==" "$ROOT/$2")" || { echo "peer_env: no pin for $1 in $2" >&2; exit 1; }
    echo "$line"
}
DJANGO="$(pin Django requirements.txt)"
PSYCOPG="$(pin psycopg requirements.txt)"
DJ_DATABASE_URL="$(pin dj-database-url requirements.txt)"
GUNICORN="$(pin gunicorn requirements-dev.txt)"
PINS=("$DJANGO" "django-notifications-hq==$HQ_VERSION" "${HQ_DEPS[@]}" "$PSYCOPG" "$DJ_DATABASE_URL" "$GUNICORN")

STAMP="$VENV/.peer-hq-pins"
if [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "${PINS[*]}" ]; then
    echo "$VENV/bin/python"
    exit 0
fi

rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check "${PINS[@]}" >&2

# The patch: index_together -> Meta.indexes, in the installed copy.
MODELS="$("$VENV/bin/python" -c 'import importlib.util as u, os; print(os.path.join(os.path.dirname(u.find_spec("notifications").origin), "base", "models.py"))')"
if grep -q "index_together = ('recipient', 'unread')" "$MODELS"; then
    sed -i "s/index_together = ('recipient', 'unread')/indexes = [models.Index(fields=['recipient', 'unread'])]/" "$MODELS"
fi
if grep -q "index_together" "$MODELS" || ! grep -q "indexes = \[models.Index(fields=\['recipient', 'unread'\])\]" "$MODELS"; then
    echo "peer_env: could not patch index_together in $MODELS" >&2
    exit 1
fi

# The model must load on this Django, or the environment is no use.
(cd "$ROOT/bench/peer_hq" && DJANGO_SETTINGS_MODULE=settings "$VENV/bin/python" -W ignore -c \
    'import django; django.setup(); from notifications.models import Notification; Notification._meta.indexes[0]') >&2

echo "${PINS[*]}" > "$STAMP"
echo "$VENV/bin/python"
