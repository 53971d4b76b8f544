"""The peer's read paths in-process, with its own ORM calls and views (run by bench/peer_hq.py).

Runs in .venv-bench-hq (django-notifications-hq on Herald's Django), from bench/peer_hq/, on the
filled scratch database that DATABASE_URL names. Prints one JSON object on stdout.

What is timed, for `heavy` (200,000 rows) and `typical` (o1, 100 rows), round-robin after
warm-up, each answer checked:
- list: the newest 20 of `user.notifications.all()` (its ordering, -timestamp), as its
  AllNotificationsList page and live lists take them; unread: the same of `.unread()`;
- unread_count: `user.notifications.unread().count()`, as its live_unread_notification_count does;
- its live JSON views called with a request (RequestFactory, the user set as the session would):
  live_unread_notification_count, live_unread_notification_list?max=20 and
  live_all_notification_list?max=20 (which also count, and resolve actor/target/action object of
  each row through its generic foreign keys, one query each);
- mark-all-read: `user.notifications.mark_all_as_read()` for 20,000 and 100,000 unread; the rows
  are set unread again and VACUUM ANALYZE runs before each call (as read_paths does for Herald's
  previous schema), so every call meets the same table.
Also EXPLAIN (ANALYZE, BUFFERS) of the list, unread list and unread count queries, and session
keys for the HTTP side (bench/peer_hq.py times the same views under gunicorn).
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings")

import django  # noqa: E402

django.setup()

from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY  # noqa: E402
from django.contrib.auth.models import User  # noqa: E402
from django.contrib.sessions.backends.db import SessionStore  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import RequestFactory  # noqa: E402
from notifications import views  # noqa: E402


def percentile(values, p):
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def stats_ms(values):
    r = lambda s: round(s * 1000, 2)  # noqa: E731
    return {"n": len(values), "p50": r(percentile(values, 50)), "p95": r(percentile(values, 95)),
            "p99": r(percentile(values, 99)), "max": r(max(values))}


def view_json(view, user, query=""):
    request = RequestFactory().get("/inbox/notifications/api/" + query)
    request.user = user
    response = view(request)
    assert response.status_code == 200, response.status_code
    return json.loads(response.content)


def reads(users: dict, expected: dict, requests: int) -> dict:
    cases = []
    for who, user in users.items():
        rows, unread = expected[who]["rows"], expected[who]["unread"]
        cases += [
            (f"{who}:list", lambda u=user: list(u.notifications.all()[:20]),
             lambda r, n=rows: len(r) == min(20, n)),
            (f"{who}:unread", lambda u=user: list(u.notifications.unread()[:20]),
             lambda r, n=unread: len(r) == min(20, n) and all(x.unread for x in r)),
            (f"{who}:unread_count", lambda u=user: u.notifications.unread().count(),
             lambda r, n=unread: r == n),
            (f"{who}:live_unread_count", lambda u=user: view_json(views.live_unread_notification_count, u),
             lambda r, n=unread: r == {"unread_count": n}),
            (f"{who}:live_unread_list", lambda u=user: view_json(views.live_unread_notification_list, u, "?max=20"),
             lambda r, n=unread: r["unread_count"] == n and len(r["unread_list"]) == min(20, n)
             and all(x["unread"] and x["actor"] for x in r["unread_list"])),
            (f"{who}:live_all_list", lambda u=user: view_json(views.live_all_notification_list, u, "?max=20"),
             lambda r, n=rows: r["all_count"] == n and len(r["all_list"]) == min(20, n)),
        ]
    samples = {label: [] for label, *_ in cases}
    for i in range(20 + requests):  # 20 warm-up rounds
        for label, call, ok in cases:
            t0 = time.perf_counter()
            answer = call()
            elapsed = time.perf_counter() - t0
            assert ok(answer), (label, answer if not isinstance(answer, list) else len(answer))
            if i >= 20:
                samples[label].append(elapsed)
    return {label: stats_ms(values) for label, values in samples.items()}


def reset_unread(user) -> None:
    with connection.cursor() as cursor:
        cursor.execute("UPDATE notifications_notification SET unread = true WHERE recipient_id = %s", [user.pk])
        cursor.execute("VACUUM ANALYZE notifications_notification")


def mark_all_read(users: dict, expected: dict, reps: int) -> dict:
    out = {}
    for who in ("mark20k", "mark100k"):
        user, n = users[who], expected[who]["unread"]
        times = []
        for _ in range(reps):
            reset_unread(user)
            t0 = time.perf_counter()
            marked = user.notifications.mark_all_as_read()
            times.append(time.perf_counter() - t0)
            assert marked == n, (who, marked, n)
        assert not user.notifications.unread().exists()
        reset_unread(user)
        out[who] = {"unread": n, "in_process_ms": stats_ms(times), "runs_ms": [round(t * 1000, 2) for t in times]}
    return out


def plans(users: dict) -> dict:
    out = {}
    for who in ("heavy", "typical"):
        qs = users[who].notifications
        for name, query in (("list", qs.all()[:20]), ("unread", qs.unread()[:20])):
            out[f"{who}:{name}"] = query.explain(analyze=True, buffers=True)
        out[f"{who}:unread_count"] = _explain_count(users[who].pk)
    return out


def _explain_count(uid: int) -> str:
    """EXPLAIN of the exact COUNT(*) that `.unread().count()` sends (a QuerySet cannot explain a count)."""
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS) SELECT COUNT(*) AS __count FROM notifications_notification"
                       " WHERE notifications_notification.recipient_id = %s AND notifications_notification.unread",
                       [uid])
        return "\n".join(row[0] for row in cursor.fetchall())


def sessions(users: dict) -> dict:
    """A logged-in session per user, as django.contrib.auth.login stores it, for the HTTP side."""
    keys = {}
    for who, user in users.items():
        store = SessionStore()
        store[SESSION_KEY] = str(user.pk)
        store[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
        store[HASH_SESSION_KEY] = user.get_session_auth_hash()
        store.create()
        keys[who] = store.session_key
    return keys


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--mark-reps", type=int, default=5)
    parser.add_argument("--expected", required=True, help="JSON: {who: {rows, unread}}")
    args = parser.parse_args()
    expected = json.loads(args.expected)
    names = {"heavy": "heavy", "typical": "o1", "mark20k": "mark20k", "mark100k": "mark100k"}
    users = {who: User.objects.get(username=name) for who, name in names.items()}
    result = {
        "reads_in_process_ms": reads({w: users[w] for w in ("heavy", "typical")}, expected, args.requests),
        "plans": plans(users),
        "mark_all_read": mark_all_read(users, expected, args.mark_reps),
        "sessions": sessions(users),
    }
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
