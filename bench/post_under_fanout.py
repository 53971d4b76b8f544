"""Posting while a big fan-out runs: POST /api/posts/ latency of a user with no followers, quiet vs
while a 10,000-follower fan-out runs in a `manage.py db_worker` process.

Set-up, each part in its own process: Herald under gunicorn (2 sync workers, PostgreSQL scratch
database, TASK_BACKEND=database, NOTIFIER_PUBLISHER=bench.noop.NoopPublisher: pushes are not
measured), one `manage.py db_worker` (--interval 0.05) that runs every task, and this script.

The poster: a user with no followers (its own posts plan an empty fan-out) sends POST /api/posts/
at a steady rate (20/s) with token auth; each latency is measured from before the request is
written to the end of the response. Rounds alternate quiet and loaded (4 + 4 by default, 150 posts
each, after 20 warm-up posts), so drift on the machine hits both alike:
- quiet: nothing else runs (the worker is idle but for the poster's own empty plans);
- loaded: a thread of this script keeps a fan-out running: the author of 10,000 followers posts
  (feed.services.create_post, in-process: no HTTP request of its own competes), the script polls
  until all 10,000 rows are stored, and posts again at once. Only the poster's requests sent
  while a fan-out was in progress count as loaded (the share is reported).

It also reports the CPU cores used during the rounds by gunicorn, the db_worker, the database's
PostgreSQL backends, this script and the whole machine (from /proc): on 2 cores, what else runs
on the machine shows up in the loaded numbers.

    python bench/post_under_fanout.py [--rounds 4] [--per-round 150] [--rate 20] [--followers 10000]

Writes bench/results/post_under_fanout.json. Target: loaded p50 <= 1.2 x quiet p50.
"""
import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.benchlib import (  # noqa: E402
    NOOP_PUBLISHER, ROOT, Api, bench_env, free_port, machine, migrate, ms, percentile,
    recreate_database, scratch_url, start_db_worker, start_gunicorn, stats_ms, steady, stop, write_result,
)
from bench.fanout import build  # noqa: E402
from bench.benchlib import CpuMeter, connect  # noqa: E402
from urllib.parse import urlparse  # noqa: E402

TARGET_RATIO = 1.2
WARMUP = 20
WORKER_INTERVAL = 0.05


class FanoutLoad(threading.Thread):
    """Keeps one fan-out of the big author's posts running, back to back, until stopped."""

    def __init__(self, author_name: str, followers: int):
        super().__init__(daemon=True)
        self.author_name, self.followers = author_name, followers
        self.running = threading.Event()
        self.stopping = threading.Event()
        self.intervals: list[tuple[float, float]] = []  # (posted, all rows stored), perf_counter
        self.error: BaseException | None = None

    def run(self):
        from django.db import connection

        from feed import services
        from feed.models import User

        try:
            author = User.objects.get(username=self.author_name)
            while not self.stopping.is_set():
                t0 = time.perf_counter()
                post = services.create_post(author, f"Load post at {t0:.3f}")
                self.running.set()
                while True:
                    with connection.cursor() as cursor:
                        cursor.execute("SELECT count(*) FROM notifier_notification WHERE event_id IN"
                                       " (SELECT id FROM notifier_notificationevent WHERE post_ref = %s)", [post.pk])
                        n = cursor.fetchone()[0]
                    if n >= self.followers:
                        break
                    if time.perf_counter() - t0 > 60:
                        raise RuntimeError(f"fan-out of post {post.pk} incomplete after 60 s: {n}/{self.followers}"
                                           " (see the FAILED rows of django_tasks_database_dbtaskresult)")
                    time.sleep(0.02)
                self.intervals.append((t0, time.perf_counter()))
        except BaseException as exc:  # reported by the main thread
            self.error = exc
            self.running.set()
        finally:
            connection.close()


def send_round(api: Api, count: int, rate: float, label: str) -> list[tuple[float, float]]:
    """POST /api/posts/ `count` times at `rate`/s; returns (sent at, latency) pairs."""
    out = []
    for i in steady(count, rate):
        t0 = time.perf_counter()
        status, body = api.call("POST", "/api/posts/", {"text": f"{label} post {i}"})
        out.append((t0, time.perf_counter() - t0))
        assert status == 201, (status, body)
    return out


def wait_queue_idle(timeout: float = 120) -> None:
    from django.db import connection

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM django_tasks_database_dbtaskresult WHERE status IN ('READY', 'RUNNING')")
            if not cursor.fetchone()[0]:
                return
        time.sleep(0.05)
    raise RuntimeError("task queue did not drain")


def run(rounds: int, per_round: int, rate: float, followers: int, worker_nice: int = 0,
        db_settings: list[str] = ()) -> dict:
    started_on = machine()  # the commit at the start: others may commit while this runs
    url = scratch_url("post_load")
    recreate_database(url)
    for setting in db_settings:  # diagnosis only, on the scratch database: e.g. synchronous_commit=off
        key, value = setting.split("=", 1)
        with connect(url) as conn:
            conn.execute(f'ALTER DATABASE "{urlparse(url).path.lstrip("/")}" SET {key} = {value}')
    env = bench_env(url, TASK_BACKEND="database")
    migrate(env)
    authors = build(url, [followers])
    os.environ.update({k: env[k] for k in ("DATABASE_URL", "TASK_BACKEND", "NOTIFIER_PUBLISHER", "SECRET_KEY",
                                           "DJANGO_SETTINGS_MODULE", "LOG_LEVEL")})
    import django

    django.setup()
    from django.db import connection

    port = free_port()
    procs = []
    try:
        procs.append(start_gunicorn(env, port, workers=2))
        procs.append(start_db_worker(env, WORKER_INTERVAL, nice=worker_nice))
        meter = CpuMeter(urlparse(url).path.lstrip("/"), gunicorn=procs[0].pid, db_workers=(procs[1].pid,))
        cpu = {"quiet": [], "loaded": []}
        anon = Api(port)
        status, _ = anon.call("POST", "/api/users/", {"username": "poster", "password": "bench-password-42"})
        assert status == 201, status
        status, body = anon.call("POST", "/api/token/", {"username": "poster", "password": "bench-password-42"})
        api = Api(port, body["token"])
        send_round(api, WARMUP, rate, "warm-up")
        wait_queue_idle()

        quiet, loaded, loaded_all, fanouts = [], [], [], []
        for r in range(rounds):
            # Quiet round.
            wait_queue_idle()
            time.sleep(0.5)
            meter.start()
            quiet += [lat for _, lat in send_round(api, per_round, rate, f"quiet {r}")]
            cpu["quiet"].append(meter.stop())
            # Loaded round: a fan-out in progress for the whole round.
            wait_queue_idle()
            load = FanoutLoad(authors[followers], followers)
            load.start()
            load.running.wait(30)
            time.sleep(0.2)  # the plan has run; chunks are being written
            meter.start()
            samples = send_round(api, per_round, rate, f"loaded {r}")
            cpu["loaded"].append(meter.stop())
            load.stopping.set()
            load.join(120)
            if load.error:
                raise load.error
            fanouts += [end - start for start, end in load.intervals]
            for sent, lat in samples:
                loaded_all.append(lat)
                if any(start <= sent <= end for start, end in load.intervals):
                    loaded.append(lat)
            print(f"  round {r + 1}/{rounds}: quiet p50 {ms(statistics.median(quiet[-per_round:]))} ms, "
                  f"loaded p50 {ms(statistics.median(loaded_all[-per_round:]))} ms "
                  f"({len(load.intervals)} fan-outs of {followers})", file=sys.stderr, flush=True)
        wait_queue_idle()
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM notifier_notification WHERE kind = 'new_post'")
            stored = cursor.fetchone()[0]
        connection.close()
    finally:
        stop(procs)

    expected = followers  # an author's posts are one item per follower (grouped), bumped by each post
    ratio = percentile(loaded, 50) / percentile(quiet, 50)
    return {
        "rate_per_s": rate, "rounds": rounds, "per_round": per_round, "followers": followers,
        "gunicorn_workers": 2, "db_workers": 1, "worker_interval_s": WORKER_INTERVAL, "worker_nice": worker_nice,
        "db_settings": list(db_settings),
        "publisher": f"{NOOP_PUBLISHER} (no-op: pushes are not measured)", "database": "postgresql",
        "quiet_ms": stats_ms(quiet),
        "loaded_ms": stats_ms(loaded),
        "loaded_all_in_round_ms": stats_ms(loaded_all),
        "loaded_share_overlapping": round(len(loaded) / len(loaded_all), 3),
        "fanouts": {"count": len(fanouts), "median_s": round(statistics.median(fanouts), 3),
                    "rows_stored": stored, "rows_expected": expected},
        "p50_ratio": round(ratio, 3),
        # Average CPU cores in use during the rounds (2 on this machine); "machine" counts everything.
        "cpu_cores": {phase: {k: round(statistics.fmean(r[k] for r in rounds_), 2) for k in rounds_[0]}
                      for phase, rounds_ in cpu.items()},
        "checks": [{"what": "loaded p50 / quiet p50", "measured_x": round(ratio, 3), "target_x": TARGET_RATIO,
                    "ok": ratio <= TARGET_RATIO}],
        "machine": started_on,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=4, help="quiet + loaded pairs")
    parser.add_argument("--per-round", type=int, default=150, help="posts per round")
    parser.add_argument("--rate", type=float, default=20.0, help="posts per second")
    parser.add_argument("--followers", type=int, default=10000)
    parser.add_argument("--worker-nice", type=int, default=0,
                        help="run the db_worker under `nice -n N` (a diagnosis: is the slowdown CPU?)")
    parser.add_argument("--db-setting", action="append", default=[], metavar="KEY=VALUE",
                        help="ALTER DATABASE … SET on the scratch database (a diagnosis, e.g. synchronous_commit=off)")
    args = parser.parse_args()
    result = run(args.rounds, args.per_round, args.rate, args.followers, args.worker_nice, args.db_setting)
    suffix = (f"_nice{args.worker_nice}" if args.worker_nice else "") + "".join(
        "_" + s.replace("=", "_") for s in args.db_setting)
    path = write_result("post_under_fanout" + suffix, result)
    q, l = result["quiet_ms"], result["loaded_ms"]
    print(f"POST /api/posts/ at {result['rate_per_s']:.0f}/s, {result['rounds']} quiet + {result['rounds']} loaded rounds "
          f"of {result['per_round']} (gunicorn 2 workers, PostgreSQL, pushes to a no-op):")
    print(f"  quiet:  p50 {q['p50']} ms, p95 {q['p95']} ms (n={q['n']})")
    print(f"  loaded: p50 {l['p50']} ms, p95 {l['p95']} ms (n={l['n']}, {result['loaded_share_overlapping']:.0%} of the "
          f"loaded rounds' posts overlapped a fan-out; {result['fanouts']['count']} fan-outs of {result['followers']}, "
          f"median {result['fanouts']['median_s']} s each)")
    for phase, cores in result["cpu_cores"].items():
        print(f"  CPU cores in use, {phase}: " + ", ".join(f"{k} {v}" for k, v in cores.items()))
    c = result["checks"][0]
    print(f"  [{'ok' if c['ok'] else 'FAIL'}] {c['what']}: {c['measured_x']} (target <= {c['target_x']})")
    print(f"wrote {path.relative_to(ROOT)}")
    if result["fanouts"]["rows_stored"] != result["fanouts"]["rows_expected"]:
        sys.exit(f"fan-outs stored {result['fanouts']['rows_stored']} rows, expected {result['fanouts']['rows_expected']}")
    if not c["ok"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
