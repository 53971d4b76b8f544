"""Fan-out store time: an author with N followers posts; how long until every follower's
notification row and state row (seq, unread count) are committed.

On PostgreSQL (a scratch database, see benchlib). Pushes are not measured: every process publishes
through bench.noop.NoopPublisher, which does nothing (the outbox rows are still written, the
push loop still builds every message, delivered rows are still deleted).

Data, built with SQL (generate_series): users u1…uN; author `fan<N>` followed by u1…uN, the follow
rows inserted in a hashed order so follow ids (the fan-out's chunk keys) are not in user-id order;
every account has its state row (as notifier.apps creates it); three of every four followers have
some history (last_seq 3–7, read_seq 2, the rest unread) and the notifications that history
numbers (seq 1..last_seq: 375,000 rows at 100k), the fourth has never been notified (0/0/0). Before every measured run
the new notifications, the outbox, posts and task queue are deleted and the state rows restored,
then VACUUM ANALYZE: every run starts from the same database state.

Measured, for each N:
- immediate: TASK_BACKEND=immediate, in-process: wall time of feed.services.create_post(), which
  commits the post and then runs the plan and every chunk (FANOUT_CHUNK_SIZE followers) inline (and their no-op
  pushes) before it returns.
- database: TASK_BACKEND=database with W `manage.py db_worker` processes (--interval 0.05):
  from the post's commit until the last notification row is committed: the script polls the
  task table every 20 ms until the queue is empty, then checks the row count (a chunk's task is
  marked done just after its commit and pushes, so this errs late by one chunk's push at most).
- naive (at the --loop-followers N only): the honest baseline, what a plain Django app does: one
  transaction that, per follower, bumps the counter (`UPDATE … SET last_seq = last_seq + 1,
  unread_count = unread_count + 1 … RETURNING last_seq`) and inserts that follower's row
  (`Notification.objects.create`, a narrow row pointing at the post's one event, made first: the
  naive part is the loop, so this baseline is the faster of the two a plain app could write on
  Herald's schema). Run interleaved with `immediate` (naive, immediate, naive, …,
  one child process each), --repeat rounds; medians compared, with the load average at each run.
- loop (at the --loop-followers N only, a second line): `for f in followers:
  notifier.notify("new_post", [f], …)`, Herald's own write path called once per recipient, one
  transaction each (what the README used to compare against).

Every run is verified: exactly N new_post rows, one per follower, each with seq = previous
last_seq + 1, and every follower's state at last_seq + 1 / unread + 1 / read_seq unchanged.

    python bench/fanout.py [--followers 10000 100000] [--repeat 3] [--workers 1 2]

Writes bench/results/fanout.json. Targets: 10k <= 0.5 s (at a load average under 1) and >= 10x faster than the naive loop;
100k <= 5 s in every task mode.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.benchlib import (  # noqa: E402
    NOOP_PUBLISHER, PYTHON, ROOT, bench_env, connect, create_users_sql, machine, migrate,
    recreate_database, scratch_url, start_db_worker, stop, write_result,
)

TARGET_10K_S = 0.5
TARGET_SPEEDUP = 10.0
TARGET_100K_S = 5.0
WARM_FOLLOWERS = 200
WORKER_INTERVAL = 0.05


# --- data (parent, psycopg) -------------------------------------------------------------------

def build(url: str, follower_counts: list[int], history: bool = True) -> dict:
    """Users, authors, follows and the starting state rows; returns {N: author username}."""
    most = max(follower_counts + [WARM_FOLLOWERS])
    authors = {n: f"fan{n}" for n in follower_counts}
    with connect(url) as conn:
        conn.execute(*create_users_sql("u", most))
        for name in ["warm", *authors.values()]:
            conn.execute(*create_users_sql(name, 1))
            conn.execute("UPDATE feed_user SET username = %s, display_name = %s WHERE username = %s",
                         [name, f"Author {name}", name + "1"])
        for n, name in [(WARM_FOLLOWERS, "warm"), *authors.items()]:
            conn.execute(
                "INSERT INTO feed_follow (follower_id, followee_id, created_at)"
                " SELECT u.id, a.id, now() FROM feed_user u, feed_user a"
                " WHERE a.username = %s AND u.username ~ '^u[0-9]+$' AND substr(u.username, 2)::int <= %s"
                " ORDER BY md5(u.id::text)",
                [name, n],
            )
        # The state every run starts from (every account has its row, as notifier.apps makes it):
        # 3 of 4 followers have history, the 4th has never been notified (a fresh 0/0/0 row).
        conn.execute(
            "CREATE TABLE bench_state0 AS SELECT id AS user_id,"
            " CASE WHEN id % 4 = 0 OR username !~ '^u[0-9]+$' THEN 0 ELSE 3 + id % 5 END AS last_seq,"
            " CASE WHEN id % 4 = 0 OR username !~ '^u[0-9]+$' THEN 0 ELSE 1 + id % 5 END AS unread_count,"
            " CASE WHEN id % 4 = 0 OR username !~ '^u[0-9]+$' THEN 0 ELSE 2 END AS read_seq FROM feed_user"
        )
        conn.execute("ALTER TABLE bench_state0 ADD PRIMARY KEY (user_id)")
        # ... and the notifications that history numbers: seq 1..last_seq each (read up to read_seq).
        # (One event per seq number: the history's notifications are alike, as a follow's are.)
        conn.execute(
            "INSERT INTO notifier_notificationevent (id, actor_id, kind, text, url, created_at)"
            " SELECT g, NULL, 'follow', 'Someone started following you.', '/', now() - interval '1 day'"
            " FROM generate_series(1, 7) g")
        conn.execute("SELECT setval(pg_get_serial_sequence('notifier_notificationevent', 'id'), 7)")
        conn.execute(
            "INSERT INTO notifier_notification (recipient_id, event_id, kind, seq)"
            " SELECT s.user_id, g, 'follow', g"
            " FROM bench_state0 s, generate_series(1, s.last_seq) g WHERE %s AND s.last_seq > 0"
            " ORDER BY g, s.user_id", [history]
        )
        conn.execute("INSERT INTO notifier_notificationstate (user_id, last_seq, unread_count, read_seq)"
                     " SELECT user_id, last_seq, unread_count, read_seq FROM bench_state0")
        conn.execute("CREATE TABLE bench_meta AS SELECT coalesce(max(id), 0) AS history_max_id,"
                     " count(*) AS history_rows FROM notifier_notification")
        conn.execute("VACUUM ANALYZE")
    return authors


# --- one mode, in a child process with its own settings (Django) --------------------------------

def _sql(query: str, params=None):
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(query, params)
        return cursor.fetchall() if cursor.description else None


def reset() -> None:
    """Back to the starting state: the history's notifications only, no outbox, posts or tasks,
    every state row as history left it; VACUUM ANALYZE."""
    _sql("TRUNCATE notifier_pendingpush, django_tasks_database_dbtaskresult")
    _sql("DELETE FROM notifier_notification WHERE id > (SELECT history_max_id FROM bench_meta)")
    _sql("DELETE FROM notifier_notificationevent WHERE id > 7")
    _sql("TRUNCATE feed_post CASCADE")
    _sql("DELETE FROM notifier_notificationstate")
    _sql("INSERT INTO notifier_notificationstate (user_id, last_seq, unread_count, read_seq)"
         " SELECT user_id, last_seq, unread_count, read_seq FROM bench_state0")
    _sql("VACUUM ANALYZE notifier_notificationstate, notifier_notification, notifier_notificationevent,"
         " notifier_pendingpush, feed_post,"
         " feed_follow, django_tasks_database_dbtaskresult")


def verify(author_id: int, post_id: int, expected: int) -> dict:
    """Exact count, one row per follower with the right seq (the follower's item for the author's
    new posts, a group of one), every follower's state right."""
    (rows, distinct, rows_ok, states_ok, author_rows), = _sql(
        """
        WITH f AS (
            SELECT fo.follower_id AS uid, coalesce(s0.last_seq, 0) AS seq0, coalesce(s0.unread_count, 0) AS unread0,
                   coalesce(s0.read_seq, 0) AS read0
            FROM feed_follow fo LEFT JOIN bench_state0 s0 ON s0.user_id = fo.follower_id
            WHERE fo.followee_id = %(author)s
        )
        SELECT
            (SELECT count(*) FROM notifier_notification WHERE event_id IN (SELECT id FROM notifier_notificationevent WHERE post_ref = %(post)s)),
            (SELECT count(DISTINCT recipient_id) FROM notifier_notification WHERE event_id IN (SELECT id FROM notifier_notificationevent WHERE post_ref = %(post)s)),
            (SELECT count(*) FROM notifier_notification n JOIN f ON f.uid = n.recipient_id
             WHERE n.event_id IN (SELECT id FROM notifier_notificationevent WHERE post_ref = %(post)s) AND n.kind = 'new_post' AND n.seq = f.seq0 + 1 AND n.read_at IS NULL
               AND n.dedupe_key LIKE 'new_post:' || %(author)s || ':%%' AND (SELECT e.actor_id FROM notifier_notificationevent e WHERE e.id = n.event_id) = %(author)s
               AND n.actor_count = 1),
            (SELECT count(*) FROM notifier_notificationstate s JOIN f ON f.uid = s.user_id
             WHERE s.last_seq = f.seq0 + 1 AND s.unread_count = f.unread0 + 1 AND s.read_seq = f.read0),
            (SELECT count(*) FROM notifier_notification WHERE recipient_id = %(author)s)
               + (SELECT count(*) FROM notifier_notification n WHERE n.event_id IN (SELECT id FROM notifier_notificationevent WHERE post_ref = %(post)s)
                  AND n.recipient_id NOT IN (SELECT uid FROM f))
        """,
        {"author": author_id, "post": post_id},
    )
    ok = rows == distinct == rows_ok == states_ok == expected and author_rows == 0
    return {"ok": ok, "rows": rows, "distinct_recipients": distinct, "rows_with_right_seq": rows_ok,
            "states_right": states_ok, "expected": expected}


def _count(post_id: int) -> int:
    return _sql("SELECT count(*) FROM notifier_notification WHERE event_id IN"
                " (SELECT id FROM notifier_notificationevent WHERE post_ref = %s)", [post_id])[0][0]


def _queue_busy() -> int:
    return _sql("SELECT count(*) FROM django_tasks_database_dbtaskresult WHERE status IN ('READY', 'RUNNING')")[0][0]


def _wait_rows(post_id: int, expected: int, t0: float, timeout: float = 300) -> tuple[float, float]:
    """Wait until all `expected` rows are stored; returns (elapsed since t0, poll period).

    Polling must not slow down what it measures (2 cores here), so it polls the small task table
    every 20 ms until no task is READY or RUNNING (the plan enqueues its chunks in its own
    transaction, so the queue is never empty before the last chunk is done), then counts the rows.
    A chunk's task is marked done just after its commit and its (no-op) pushes, so this errs late
    by at most one chunk's push, never early."""
    while True:
        if not _queue_busy() and _count(post_id) >= expected:
            return time.perf_counter() - t0, 0.02
        if time.perf_counter() - t0 > timeout:
            raise RuntimeError(f"fan-out incomplete after {timeout}s: {_count(post_id)}/{expected}")
        time.sleep(0.02)


def _wait_idle(timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while _queue_busy() or _sql("SELECT count(*) FROM notifier_pendingpush")[0][0]:
        if time.monotonic() > deadline:
            raise RuntimeError("task queue / outbox not drained")
        time.sleep(0.02)


def child(mode: str, author_name: str, expected: int, repeat: int) -> dict:
    import django

    django.setup()
    from django.conf import settings

    import notifier.services
    from feed import fanout, services
    from feed.models import Follow, Post, User
    from feed.text import excerpt
    from notifier.push.publisher import get_publisher

    assert settings.NOTIFIER_PUBLISHER == NOOP_PUBLISHER
    assert type(get_publisher()).__name__ == "NoopPublisher"
    author = User.objects.get(username=author_name)
    warm = User.objects.get(username="warm")

    # Warm-up: imports, connections, plans; then back to the starting state.
    reset()
    services.create_post(warm, "warm-up post")
    if mode == "database":
        _wait_idle()
    reset()

    runs = []
    for i in range(repeat if mode not in ("loop", "naive") else 1):
        reset()
        if mode == "immediate":
            t0 = time.perf_counter()
            post = services.create_post(author, f"Benchmark post {i}")
            elapsed = time.perf_counter() - t0
            run = {"seconds": round(elapsed, 4)}
        elif mode == "database":
            t_req = time.perf_counter()
            post = services.create_post(author, f"Benchmark post {i}")
            t0 = time.perf_counter()  # committed: the plan task is in the queue
            elapsed, period = _wait_rows(post.pk, expected, t0)
            _wait_idle()
            drained = time.perf_counter() - t0
            run = {"seconds": round(elapsed, 4), "create_post_s": round(t0 - t_req, 4),
                   "poll_period_s": round(period, 4), "outbox_drained_s": round(drained, 4)}
        elif mode == "naive":
            from django.db import connection, transaction

            from notifier.models import Notification, NotificationEvent

            post = Post.objects.create(author=author, text="Benchmark post (naive)")
            followers = list(Follow.objects.filter(followee=author).order_by("pk").values_list("follower_id", flat=True))
            url, text = post.get_absolute_url(), f"{author.name} posted: “{excerpt(post.text)}”"
            t0 = time.perf_counter()
            with transaction.atomic(), connection.cursor() as cursor:
                # What is the same for everyone is stored once, as Herald does: the naive part is
                # the per-recipient loop (so this baseline is the faster one of the two schemas).
                event = NotificationEvent.objects.create(kind="new_post", actor=author, text=text, url=url,
                                                         post_ref=post.pk)
                for f in followers:
                    cursor.execute(
                        "UPDATE notifier_notificationstate SET last_seq = last_seq + 1, unread_count = unread_count + 1,"
                        " unseen_count = unseen_count + 1 WHERE user_id = %s RETURNING last_seq", [f])
                    (seq,), = cursor.fetchall()
                    Notification.objects.create(recipient_id=f, seq=seq, kind="new_post", event=event,
                                                dedupe_key=f"new_post:{author.pk}:{post.pk}")
            elapsed = time.perf_counter() - t0
            run = {"seconds": round(elapsed, 4), "per_recipient_ms": round(elapsed / len(followers) * 1000, 3)}
        elif mode == "loop":
            post = Post.objects.create(author=author, text="Benchmark post (loop)")
            followers = list(Follow.objects.filter(followee=author).order_by("pk").values_list("follower_id", flat=True))
            url, text = post.get_absolute_url(), f"{{actors}} posted: “{excerpt(post.text)}”"
            t0 = time.perf_counter()
            for f in followers:
                notifier.notify("new_post", [f], actor=author, text=text, url=url, post_ref=post.pk,
                                group=f"new_post:{author.pk}")
            elapsed = time.perf_counter() - t0
            run = {"seconds": round(elapsed, 4), "per_recipient_ms": round(elapsed / len(followers) * 1000, 3)}
        else:
            raise ValueError(mode)
        run["load_average_1m"] = round(os.getloadavg()[0], 2)
        # Followers per fan-out task (FANOUT_CHUNK_SIZE) and recipients per notify statement.
        run["chunk_sizes"] = {"task": fanout.CHUNK_SIZE, "statement": notifier.services.CHUNK_SIZE}
        run["verify"] = verify(author.pk, post.pk, expected)
        if not run["verify"]["ok"]:
            raise RuntimeError(f"{mode} run {i} stored the wrong rows: {run['verify']}")
        runs.append(run)
        print(f"  {mode:9} {expected:>7} followers: {run['seconds']:.3f} s (verified)", file=sys.stderr, flush=True)
    return {"runs": runs}


def run_child(env: dict, mode: str, author: str, n: int, repeat: int) -> dict:
    out = subprocess.run(
        [PYTHON, str(Path(__file__)), "--child", mode, "--author", author, "--expected", str(n), "--repeat", str(repeat)],
        cwd=ROOT, env=env, check=True, stdout=subprocess.PIPE, text=True,
    ).stdout
    line = [ln for ln in out.splitlines() if ln.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


def summarize(runs: list[dict]) -> dict:
    secs = [r["seconds"] for r in runs]
    return {"median_s": round(statistics.median(secs), 4), "min_s": min(secs), "max_s": max(secs), "runs": runs}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--followers", type=int, nargs="+", default=[10000, 100000])
    parser.add_argument("--repeat", type=int, default=3, help="measured runs per mode (the loop runs once)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="db_worker processes (database mode; 0: skip it)")
    parser.add_argument("--loop-followers", type=int, default=10000, help="run the per-recipient loop at this N")
    parser.add_argument("--history", action=argparse.BooleanOptionalAction, default=True,
                        help="give followers their past notifications (--no-history: an empty table)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--author", help=argparse.SUPPRESS)
    parser.add_argument("--expected", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        result = child(args.child, args.author, args.expected, args.repeat)
        print("RESULT " + json.dumps(result), flush=True)
        return

    started_on = machine()  # the commit at the start: others may commit while this runs
    url = scratch_url("fanout")
    recreate_database(url)
    env = bench_env(url, TASK_BACKEND="immediate")
    migrate(env)
    t0 = time.perf_counter()
    authors = build(url, args.followers, args.history)
    with connect(url) as conn:
        history_rows = conn.execute("SELECT history_rows FROM bench_meta").fetchone()[0]
    print(f"data built in {time.perf_counter() - t0:.1f} s ({max(args.followers)} followers)", file=sys.stderr)

    result = {"publisher": f"{NOOP_PUBLISHER} (no-op: pushes are not measured)", "database": "postgresql",
              "history_rows": history_rows, "worker_interval_s": WORKER_INTERVAL, "repeat": args.repeat, "by_followers": {}}
    for n in args.followers:
        entry = result["by_followers"][str(n)] = {}
        if n == args.loop_followers:
            # Interleaved: each round one naive run, then one Herald run, each in a fresh process.
            naive, herald = [], []
            for _ in range(args.repeat):
                naive += run_child(env, "naive", authors[n], n, 1)["runs"]
                herald += run_child(env, "immediate", authors[n], n, 1)["runs"]
            entry["immediate"] = summarize(herald)
            entry["naive"] = summarize(naive)
            entry["speedup_vs_naive"] = round(entry["naive"]["median_s"] / entry["immediate"]["median_s"], 1)
            loop = run_child(env, "loop", authors[n], n, 1)["runs"][0]
            entry["loop"] = loop
            entry["speedup_vs_loop"] = round(loop["seconds"] / entry["immediate"]["median_s"], 1)
        else:
            entry["immediate"] = summarize(run_child(env, "immediate", authors[n], n, args.repeat)["runs"])
        db_env = {**env, "TASK_BACKEND": "database"}
        for workers in [w for w in args.workers if w > 0]:  # --workers 0: no database mode
            procs = [start_db_worker(db_env, WORKER_INTERVAL) for _ in range(workers)]
            try:
                time.sleep(1.0)
                runs = run_child(db_env, "database", authors[n], n, args.repeat)["runs"]
            finally:
                stop(procs)
            entry[f"database_{workers}w"] = summarize(runs)

    # Verdicts against the targets.
    checks = []
    if "10000" in result["by_followers"]:
        e = result["by_followers"]["10000"]
        checks.append({"what": "10k followers, immediate (in-process)", "measured_s": e["immediate"]["median_s"],
                       "target_s": TARGET_10K_S, "ok": e["immediate"]["median_s"] <= TARGET_10K_S})
        if "speedup_vs_naive" in e:
            checks.append({"what": "10k: speed-up over the naive loop (one transaction, a row and a counter bump "
                           "per recipient; interleaved medians)", "measured_x": e["speedup_vs_naive"],
                           "target_x": TARGET_SPEEDUP, "ok": e["speedup_vs_naive"] >= TARGET_SPEEDUP})
    if "100000" in result["by_followers"]:
        e = result["by_followers"]["100000"]
        for key in [k for k in e if k == "immediate" or k.startswith("database_")]:
            checks.append({"what": f"100k followers, {key} (median; worst {e[key]['max_s']} s)",
                           "measured_s": e[key]["median_s"], "worst_s": e[key]["max_s"],
                           "target_s": TARGET_100K_S, "ok": e[key]["median_s"] <= TARGET_100K_S})
    result["checks"] = checks
    result["machine"] = started_on
    path = write_result("fanout" if args.history else "fanout_no_history", result)

    print(f"fan-out store time (PostgreSQL, pushes to {NOOP_PUBLISHER}: a no-op), median of {args.repeat}:")
    for n, e in result["by_followers"].items():
        parts = [f"immediate {e['immediate']['median_s']:.3f} s"]
        parts += [f"{k.replace('_', ' ')} {v['median_s']:.3f} s" for k, v in e.items() if k.startswith("database_")]
        if "naive" in e:
            parts.append(f"naive loop {e['naive']['median_s']:.2f} s ({e['speedup_vs_naive']}x slower)")
        if "loop" in e:
            parts.append(f"notify() per recipient {e['loop']['seconds']:.2f} s ({e['speedup_vs_loop']}x slower)")
        print(f"  {int(n):>7} followers: " + ", ".join(parts))
    for c in checks:
        measured = c.get("measured_s", c.get("measured_x"))
        target = c.get("target_s", c.get("target_x"))
        print(f"  [{'ok' if c['ok'] else 'FAIL'}] {c['what']}: {measured} (target {target})")
    print(f"wrote {path.relative_to(ROOT)}")
    if not all(c["ok"] for c in checks):
        sys.exit(1)


if __name__ == "__main__":
    main()
