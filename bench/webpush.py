"""Web Push at fan-out scale: what owing a Web Push to every follower costs the fan-out's store, and
how fast background tasks send the owed pushes to a push service.

On PostgreSQL (a scratch database, see benchlib). Data, built with SQL: users u1…uN, an author
`fan` followed by all of them (follow rows in hashed order, as bench/fanout.py), every account's
state row, and one Web Push subscription per follower on the local push service of the IoT
emulator (`manage.py runlocaliot`, started for the run), each with a real P-256 key and auth
secret (one key pair shared by all: the sender still makes a fresh ephemeral key per message).

(a) Store time, Web Push on vs off. In one child process (TASK_BACKEND=database, no worker
    running, so nothing is sent while it is measured): the author's post is created, then every
    500-follower chunk of its fan-out runs inline (feed.fanout.fan_out_chunk, what a worker runs),
    timed from the first chunk's start to the last one's commit. "on": VAPID keys set, so each
    chunk also writes its followers' PendingWebPush rows (INSERT … SELECT joining subscriptions and
    state rows) and enqueues its send_owed task in the same transaction; "off": no keys, today's
    path. The two alternate (off, on, off, on, …; --rounds each) from the same reset state; medians
    are compared. Live pushes go to bench.noop.NoopPublisher. Target: on <= 1.5 x off.

(b) Send rate. The last "on" round leaves N owed rows and their send_owed tasks, parked on another
    queue. Two `manage.py db_worker` processes start (WEB_PUSH_CONCURRENCY threads each), the tasks
    are moved to the default queue (t0), and the script polls every 50 ms until no owed row and no
    queued or running task is left. Rate = N / that time. Verified: the push service accepted N
    messages, no row failed. Every message is encrypted (aes128gcm) and VAPID-signed (one JWT per
    process, cached) and checked by the service (signature verified once per token text, claims on
    every message). Target: >= 500 pushes/s.

    python bench/webpush.py [--followers 10000] [--rounds 5]

Writes bench/results/webpush.json.
"""
import argparse
import base64
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.benchlib import (  # noqa: E402
    PYTHON, ROOT, bench_env, connect, create_users_sql, free_port, machine, migrate, recreate_database,
    scratch_url, start_db_worker, start_localiot, stop, write_result,
)

TARGET_RATIO = 1.5
TARGET_RATE = 500.0
WORKERS = 2


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def build(url: str, n: int, push_origin: str) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    p256dh = b64url(key.public_key().public_bytes(serialization.Encoding.X962,
                                                  serialization.PublicFormat.UncompressedPoint))
    with connect(url) as conn:
        conn.execute(*create_users_sql("u", n))
        conn.execute(*create_users_sql("fan", 1))
        conn.execute("UPDATE feed_user SET username = 'fan', display_name = 'Fan Author' WHERE username = 'fan1'")
        conn.execute(
            "INSERT INTO feed_follow (follower_id, followee_id, created_at)"
            " SELECT u.id, a.id, now() FROM feed_user u, feed_user a"
            " WHERE a.username = 'fan' AND u.username ~ '^u[0-9]+$' ORDER BY md5(u.id::text)")
        conn.execute("INSERT INTO notifier_notificationstate (user_id, last_seq, unread_count, read_seq)"
                     " SELECT id, 0, 0, 0 FROM feed_user ON CONFLICT DO NOTHING")
        conn.execute("CREATE TABLE bench_state0 AS SELECT * FROM notifier_notificationstate")
        conn.execute(
            "INSERT INTO notifier_webpushsubscription (user_id, endpoint, endpoint_hash, p256dh, auth, user_agent,"
            " created_at) SELECT id, %s || '/push/u' || id, md5(id::text) || md5('x' || id::text), %s,"
            " %s, 'bench', now() FROM feed_user WHERE username ~ '^u[0-9]+$'",
            [push_origin, p256dh, b64url(os.urandom(16))])
        conn.execute("VACUUM ANALYZE")


# --- the child (Django) -------------------------------------------------------------------------

def _sql(query, params=None):
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(query, params)
        return cursor.fetchall() if cursor.description else None


def reset() -> None:
    _sql("TRUNCATE notifier_pendingpush, notifier_pendingwebpush, django_tasks_database_dbtaskresult,"
         " notifier_notification CASCADE")
    _sql("TRUNCATE feed_post CASCADE")
    _sql("DELETE FROM notifier_notificationstate")
    _sql("INSERT INTO notifier_notificationstate SELECT * FROM bench_state0")
    _sql("VACUUM ANALYZE notifier_notificationstate, notifier_notification, notifier_pendingpush,"
         " notifier_pendingwebpush, feed_post, django_tasks_database_dbtaskresult")


def child(rounds: int, private: str, public: str) -> dict:
    import django

    django.setup()
    from django.conf import settings

    from feed import fanout
    from feed.models import Post, User
    from notifier import services

    # Time spent in the statement that owes the Web Pushes (inside the measured store): a figure
    # that a loaded machine moves less than the wall-clock ratio.
    owing = {"seconds": 0.0}
    original = services._owe_web_pushes

    def timed_owe(*args, **kwargs):
        t = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            owing["seconds"] += time.perf_counter() - t

    services._owe_web_pushes = timed_owe

    assert settings.TASKS["default"]["BACKEND"].endswith("DatabaseBackend")
    author = User.objects.get(username="fan")
    n = User.objects.filter(username__regex=r"^u[0-9]+$").count()

    def store(on: bool) -> float:
        owing["seconds"] = 0.0
        settings.WEB_PUSH_VAPID_PRIVATE_KEY = private if on else ""
        settings.WEB_PUSH_VAPID_PUBLIC_KEY = public if on else ""
        reset()
        post = Post.objects.create(author=author, text="Benchmark post")
        bounds = fanout.chunk_bounds(author.pk)
        t0 = time.perf_counter()
        stored = sum(fanout.fan_out_chunk.call(post.pk, after, upto) for after, upto in bounds)
        elapsed = time.perf_counter() - t0
        owed = _sql("SELECT count(*) FROM notifier_pendingwebpush")[0][0]
        assert stored == n, (stored, n)
        assert owed == (n if on else 0), (owed, on)
        return elapsed

    store(True)  # warm-up
    store(False)
    runs = {"off": [], "on": [], "owe_statement_s": []}
    for r in range(rounds):
        for mode in ("off", "on"):
            runs[mode].append(round(store(mode == "on"), 4))
            if mode == "on":
                runs["owe_statement_s"].append(round(owing["seconds"], 4))
            print(f"  round {r + 1}: web push {mode:3}: {runs[mode][-1]:.3f} s", file=sys.stderr, flush=True)
    # The last round was "on": park its send tasks for (b).
    _sql("UPDATE django_tasks_database_dbtaskresult SET queue_name = 'parked'")
    tasks = _sql("SELECT count(*) FROM django_tasks_database_dbtaskresult WHERE queue_name = 'parked'")[0][0]
    return {"runs": runs, "owed": n, "send_tasks": tasks}


def push_stats(port: int) -> dict:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/push/") as response:
        return json.loads(response.read())


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--followers", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=16, help="WEB_PUSH_CONCURRENCY per worker")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        result = child(args.rounds, os.environ["BENCH_VAPID_PRIVATE"], os.environ["BENCH_VAPID_PUBLIC"])
        print("RESULT " + json.dumps(result), flush=True)
        return

    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    from notifier.webpush.keys import generate

    started_on = machine()
    url = scratch_url("webpush")
    recreate_database(url)
    ports = {name: str(free_port()) for name in ("LOCALIOT_MQTT_PORT", "LOCALIOT_WS_PORT", "LOCALIOT_HTTP_PORT")}
    pair = generate()
    env = bench_env(url, TASK_BACKEND="database", **ports, WEB_PUSH_CONCURRENCY=str(args.concurrency),
                    WEB_PUSH_SUBJECT="mailto:bench@herald.example", BENCH_VAPID_PRIVATE=pair.private,
                    BENCH_VAPID_PUBLIC=pair.public)
    migrate(env)
    origin = f"http://127.0.0.1:{ports['LOCALIOT_HTTP_PORT']}"
    t0 = time.perf_counter()
    build(url, args.followers, origin)
    print(f"data built in {time.perf_counter() - t0:.1f} s ({args.followers} followers, one subscription each)",
          file=sys.stderr)
    emulator = start_localiot(env, stderr=subprocess.DEVNULL)
    workers = []
    try:
        out = subprocess.run([PYTHON, str(Path(__file__)), "--child", "--rounds", str(args.rounds)],
                             cwd=ROOT, env=env, check=True, stdout=subprocess.PIPE, text=True).stdout
        stored = json.loads([ln for ln in out.splitlines() if ln.startswith("RESULT ")][-1][len("RESULT "):])
        off, on = statistics.median(stored["runs"]["off"]), statistics.median(stored["runs"]["on"])
        load_store = os.getloadavg()

        # (b) two workers send the parked tasks' pushes.
        worker_env = {**env, "WEB_PUSH_VAPID_PRIVATE_KEY": pair.private, "WEB_PUSH_VAPID_PUBLIC_KEY": pair.public}
        workers = [start_db_worker(worker_env, 0.05) for _ in range(WORKERS)]
        time.sleep(3.0)  # the workers are up and polling an empty default queue
        before = push_stats(int(ports["LOCALIOT_HTTP_PORT"]))["accepted"]
        with connect(url) as conn:
            t0 = time.perf_counter()
            conn.execute("UPDATE django_tasks_database_dbtaskresult SET queue_name = 'default'")
            while True:
                owed, busy = conn.execute(
                    "SELECT (SELECT count(*) FROM notifier_pendingwebpush),"
                    " (SELECT count(*) FROM django_tasks_database_dbtaskresult WHERE status IN ('READY', 'RUNNING'))"
                ).fetchone()
                if not owed and not busy:
                    break
                if time.perf_counter() - t0 > 600:
                    raise RuntimeError(f"pushes not sent after 600 s: {owed} owed, {busy} tasks")
                time.sleep(0.05)
            elapsed = time.perf_counter() - t0
            failed_tasks = conn.execute("SELECT count(*) FROM django_tasks_database_dbtaskresult"
                                        " WHERE status = 'FAILED'").fetchone()[0]
        load_send = os.getloadavg()
        accepted = push_stats(int(ports["LOCALIOT_HTTP_PORT"]))["accepted"] - before
    finally:
        stop(workers + [emulator])

    rate = stored["owed"] / elapsed
    result = {
        "database": "postgresql", "followers": args.followers, "rounds": args.rounds,
        "store": {"off_runs_s": stored["runs"]["off"], "on_runs_s": stored["runs"]["on"],
                  "off_median_s": off, "on_median_s": on, "ratio": round(on / off, 3),
                  "owe_statement_runs_s": stored["runs"]["owe_statement_s"],
                  "owe_statement_median_s": statistics.median(stored["runs"]["owe_statement_s"]),
                  "what": "every 500-follower chunk of the fan-out inline in one process (database queue, no worker), "
                          "first chunk start to last commit; live pushes to a no-op publisher",
                  "loadavg": load_store},
        "send": {"workers": WORKERS, "concurrency_per_worker": args.concurrency, "pushes": stored["owed"],
                 "send_tasks": stored["send_tasks"], "seconds": round(elapsed, 3), "per_second": round(rate, 1),
                 "accepted_by_push_service": accepted, "failed_tasks": failed_tasks, "loadavg": load_send,
                 "what": "2 db_worker processes, from moving the parked send_owed tasks to the queue until no row "
                         "is owed; encrypted + VAPID-signed POSTs to the emulator's local push service over loopback"},
    }
    checks = [
        {"what": f"{args.followers} followers: store time with Web Push on / off (medians)", "measured_x": result["store"]["ratio"],
         "target_x": TARGET_RATIO, "ok": result["store"]["ratio"] <= TARGET_RATIO},
        {"what": f"owed pushes sent by {WORKERS} workers", "measured_per_s": result["send"]["per_second"],
         "target_per_s": TARGET_RATE,
         "ok": rate >= TARGET_RATE and accepted == stored["owed"] and not failed_tasks},
    ]
    result["checks"] = checks
    result["machine"] = started_on
    path = write_result("webpush", result)
    print(f"Web Push, {args.followers} followers with one subscription each (PostgreSQL):")
    print(f"  store: off {off:.3f} s, on {on:.3f} s (median of {args.rounds}; ratio {result['store']['ratio']}); "
          f"the Web Push INSERT itself: {result['store']['owe_statement_median_s']:.3f} s")
    print(f"  send: {stored['owed']} pushes in {elapsed:.2f} s = {rate:.0f}/s with {WORKERS} workers "
          f"(accepted {accepted}, failed tasks {failed_tasks})")
    for c in checks:
        print(f"  [{'ok' if c['ok'] else 'FAIL'}] {c['what']}: {c.get('measured_x', c.get('measured_per_s'))}"
              f" (target {c.get('target_x', c.get('target_per_s'))})")
    print(f"wrote {path.relative_to(ROOT)}")
    if not all(c["ok"] for c in checks):
        sys.exit(1)


if __name__ == "__main__":
    main()
