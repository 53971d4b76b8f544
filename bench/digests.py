"""Email digests at 100,000 recipients: planning the run, and sending batches over real SMTP.

Data (a PostgreSQL scratch database beside DATABASE_URL, rows from INSERT … SELECT
generate_series): N users (default 100,000) with a verified address and the daily digest, each
with 3 unseen, unread comment notifications; plus N/10 users with nothing unseen (not due).

Measured, in this process (Django set up on the scratch database, the database task queue):
- `plan`: notifier.mail.digests.plan("daily"), what `manage.py send_digests --window daily` does:
  one keyset query over the due users and one task row per DIGEST_BATCH_SIZE users (medians of
  --rounds, the task rows deleted between rounds).
- batches: `send_digest_batch` on the first --batches ranges, as a worker runs them: claim,
  compose (per user: the state, the notifications, grouped actors) and send through Django's SMTP
  backend to an aiosmtpd server on loopback (one connection per batch). Reported: ms per batch,
  digests per second on one worker, and what that makes for all N users.

    python bench/digests.py [--users 100000] [--batches 5] [--rounds 3]

Writes bench/results/digests.json.
"""
import argparse
import os
import socket
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.benchlib import (  # noqa: E402
    bench_env, connect, create_users_sql, machine, migrate, recreate_database, scratch_url, write_result,
)


def fill(url: str, users: int) -> None:
    with connect(url) as conn:
        conn.execute(*create_users_sql("r", users))
        conn.execute(*create_users_sql("q", max(1, users // 10)))
        conn.execute("UPDATE feed_user SET email = username || '@example.com', email_verified_at = now()")
        conn.execute(
            "INSERT INTO notifier_notificationstate (user_id, last_seq, unread_count, read_seq, seen_seq, unseen_count,"
            " muted_kinds, push_off, email_off, email_digest)"
            " SELECT id, CASE WHEN username LIKE 'r%%' THEN 3 ELSE 0 END, CASE WHEN username LIKE 'r%%' THEN 3 ELSE 0 END,"
            " 0, 0, CASE WHEN username LIKE 'r%%' THEN 3 ELSE 0 END, '', '', 'like,new_post', 'daily' FROM feed_user"
            " ON CONFLICT (user_id) DO UPDATE SET last_seq = excluded.last_seq, unread_count = excluded.unread_count,"
            " unseen_count = excluded.unseen_count")
        conn.execute(  # three comment events, each every r-user's notification seq 1, 2, 3
            "WITH e AS (INSERT INTO notifier_notificationevent (kind, actor_id, post_ref, comment_ref, dedupe_key,"
            " text, url, created_at)"
            " SELECT 'comment', NULL, s, s, NULL, 'Someone commented on your post: “hello number ' || s || '”',"
            " '/posts/' || s || '/#comment-' || s, now() - (4 - s) * interval '1 minute' FROM generate_series(1, 3) s"
            " RETURNING id, post_ref AS s)"
            " INSERT INTO notifier_notification (recipient_id, seq, event_id, kind, actor_count, dedupe_key, read_at)"
            " SELECT u.id, e.s, e.id, 'comment', 1, NULL, NULL FROM feed_user u CROSS JOIN e WHERE u.username LIKE 'r%%'")
        conn.execute("VACUUM ANALYZE")


def smtp_server():
    from aiosmtpd.controller import Controller

    received = [0]

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            received[0] += 1
            return "250 OK"

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    return controller, port, received


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--batches", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    url = scratch_url("digests")
    recreate_database(url)
    env = bench_env(url, TASK_BACKEND="database")
    migrate(env)
    started = time.perf_counter()
    fill(url, args.users)
    filled_s = time.perf_counter() - started

    controller, port, received = smtp_server()
    os.environ.update({k: v for k, v in env.items() if k in ("DATABASE_URL", "SECRET_KEY", "DJANGO_SETTINGS_MODULE")})
    os.environ.update({"TASK_BACKEND": "database", "EMAIL_BACKEND": "smtp", "EMAIL_HOST": "127.0.0.1",
                       "EMAIL_PORT": str(port), "LOG_LEVEL": "WARNING"})
    import django

    django.setup()
    from django.conf import settings
    from django.db import connection

    from notifier.mail import digests

    plans = []
    for _ in range(args.rounds):
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM django_tasks_database_dbtaskresult")
        t0 = time.perf_counter()
        start, batches = digests.plan("daily")
        plans.append(time.perf_counter() - t0)
    bounds = digests.batch_bounds(digests.due("daily", start), settings.DIGEST_BATCH_SIZE)[: args.batches]
    per_batch, sent = [], 0
    for after_id, upto_id in bounds:
        t0 = time.perf_counter()
        sent += digests.send_digest_batch.call("daily", start.isoformat(), after_id, upto_id)
        per_batch.append(time.perf_counter() - t0)
    controller.stop()
    assert received[0] == sent == len(bounds) * settings.DIGEST_BATCH_SIZE, (received, sent)
    batch_ms = statistics.median(per_batch) * 1000
    rate = settings.DIGEST_BATCH_SIZE / (batch_ms / 1000)
    result = {
        "users_due": args.users, "users_not_due": max(1, args.users // 10), "batch_size": settings.DIGEST_BATCH_SIZE,
        "fill_s": round(filled_s, 1),
        "plan_ms_median": round(statistics.median(plans) * 1000, 1), "plan_ms_all": [round(p * 1000, 1) for p in plans],
        "batches_planned": batches,
        "batch_ms_median": round(batch_ms, 1), "batch_ms_all": [round(b * 1000, 1) for b in per_batch],
        "digests_per_second_one_worker": round(rate, 1),
        "all_users_one_worker_s": round(args.users / rate, 1),
        "load_average": os.getloadavg(),
        "machine": machine(),
    }
    path = write_result("digests", result)
    print(f"plan {result['plan_ms_median']} ms for {batches} batches of {settings.DIGEST_BATCH_SIZE} "
          f"({args.users} due); a batch {result['batch_ms_median']} ms over SMTP = "
          f"{result['digests_per_second_one_worker']} digests/s per worker; load {os.getloadavg()[0]:.1f}; {path}")


if __name__ == "__main__":
    main()
