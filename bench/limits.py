"""Limits shared by every process: how many of 60 parallel wrong passwords for one account four
gunicorn workers check (the limit is 10), and what one counter hit costs (p50/p99), for each store.

    .venv/bin/python bench/limits.py [--hits 2000]

Stores: "postgresql" and "sqlite" (limits.counters' database store on a scratch database) and
"redis" (CACHE_URL=redis://127.0.0.1:6379/15, flushed; skipped when no Redis answers; counts on
the PostgreSQL database's server otherwise). Prints JSON and writes bench/results/limits.json.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import benchlib  # noqa: E402

REDIS_URL = "redis://127.0.0.1:6379/15"
ATTEMPTS, LIMIT = 60, 10

SETUP = "import django; django.setup(); from feed.models import User; User.objects.create_user('victim', password='right-password-42')"

HIT_LATENCY = """
import json, sys, time
import django
django.setup()
from limits import counters
hits, keys = int(sys.argv[1]), 100
for i in range(200):  # warm the connection and the statement
    counters.hit(f"warm{i % keys}", 3600)
times = []
for i in range(hits):
    t0 = time.perf_counter()
    counters.hit(f"bench{i % keys}", 3600)
    times.append(time.perf_counter() - t0)
print(json.dumps(times))
"""


def redis_answers() -> bool:
    try:
        import redis

        return bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping())
    except Exception:
        return False


def flush_redis() -> None:
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()


def brute_force(env: dict) -> dict:
    """60 parallel wrong passwords for one account through POST /api/token/ on four workers."""
    subprocess.run([benchlib.PYTHON, "-c", SETUP], cwd=benchlib.ROOT, env=env, check=True)
    port = benchlib.free_port()
    proc = benchlib.start_gunicorn(env, port, workers=4)
    try:
        statuses, start = [], threading.Barrier(ATTEMPTS)

        def guess():
            api = benchlib.Api(port)
            start.wait()
            statuses.append(api.call("POST", "/api/token/", {"username": "victim", "password": "wrong"})[0])

        threads = [threading.Thread(target=guess) for _ in range(ATTEMPTS)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - t0
    finally:
        benchlib.stop([proc])
    return {"attempts": ATTEMPTS, "limit": LIMIT, "passwords_checked": statuses.count(400),
            "refused_429": statuses.count(429), "other": sorted(s for s in statuses if s not in (400, 429)),
            "seconds": round(elapsed, 2)}


def hit_latency(env: dict, hits: int) -> dict:
    out = subprocess.run([benchlib.PYTHON, "-c", HIT_LATENCY, str(hits)], cwd=benchlib.ROOT, env=env, check=True,
                         capture_output=True, text=True).stdout
    return benchlib.stats_ms(json.loads(out.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hits", type=int, default=2000, help="counter hits timed per store")
    args = parser.parse_args()

    limits = {"LOGIN_FAILURES_PER_USERNAME": str(LIMIT), "LOGIN_FAILURES_PER_ADDRESS": "100000"}
    pg_url = benchlib.scratch_url("limits")
    results = {}
    with tempfile.TemporaryDirectory(prefix="herald-bench-limits-") as folder:
        stores = {
            "postgresql": {"DATABASE_URL": pg_url},
            "sqlite": {"DATABASE_URL": f"sqlite:///{Path(folder) / 'limits.sqlite3'}"},
        }
        if redis_answers():
            stores["redis"] = {"DATABASE_URL": pg_url, "CACHE_URL": REDIS_URL}
        for name, extra in stores.items():
            if extra["DATABASE_URL"] == pg_url:
                benchlib.recreate_database(pg_url)
            if "CACHE_URL" in extra:
                flush_redis()
            env = benchlib.bench_env(extra["DATABASE_URL"], **limits, **extra)
            if "CACHE_URL" not in extra:
                env.pop("CACHE_URL", None)
            benchlib.migrate(env)
            results[name] = {"brute_force_4_workers": brute_force(env), "hit_ms": hit_latency(env, args.hits)}
            if "CACHE_URL" in extra:
                flush_redis()
        benchlib.recreate_database(pg_url)  # leave it empty
    result = {"machine": benchlib.machine(), "hits_timed": args.hits, "stores": results}
    print(json.dumps(result, indent=2))
    print(f"wrote {benchlib.write_result('limits', result)}", file=sys.stderr)


if __name__ == "__main__":
    os.chdir(benchlib.ROOT)
    main()
