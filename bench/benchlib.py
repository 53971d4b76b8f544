"""What the PostgreSQL benchmarks share: scratch databases, the processes they start, percentiles.

Databases: the server (and the name prefix) come from DATABASE_URL, default
postgres://postgres@127.0.0.1:5432/herald_bench. A benchmark never writes to that database itself:
each one drops and creates its own scratch database beside it, `<name>_<suffix>` (for example
herald_bench_fanout), so a run always starts from the same empty state and never touches data
someone cares about.
"""
import http.client
import json
import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import psycopg

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PYTHON = sys.executable
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/herald_bench"
# Pushes are not what these benchmarks measure: every process publishes through this no-op.
NOOP_PUBLISHER = "bench.noop.NoopPublisher"


def base_url() -> str:
    url = os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL
    if urlparse(url).scheme not in ("postgres", "postgresql", "pgsql"):
        sys.exit(f"these benchmarks need PostgreSQL; DATABASE_URL is {url!r}")
    return url


def scratch_url(suffix: str) -> str:
    parts = urlparse(base_url())
    name = (parts.path.lstrip("/") or "herald_bench") + "_" + suffix
    return urlunparse(parts._replace(path="/" + name))


def _conninfo(url: str) -> str:
    return url.replace("pgsql://", "postgresql://", 1)


def recreate_database(url: str) -> None:
    """Drop (if present) and create the database `url` names, via the server's `postgres` db."""
    parts = urlparse(url)
    name = parts.path.lstrip("/")
    admin = urlunparse(parts._replace(path="/postgres"))
    with psycopg.connect(_conninfo(admin), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def connect(url: str) -> psycopg.Connection:
    return psycopg.connect(_conninfo(url), autocommit=True)


def bench_env(url: str, **extra: str) -> dict:
    """The environment of every process of a run: its database, generous throttles, no-op pushes."""
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "SECRET_KEY": secrets.token_urlsafe(40),
        "THROTTLE_WRITE": "1000000/min",
        "THROTTLE_SIGNUP": "1000000/min",
        "THROTTLE_LOGIN": "1000000/min",
        "LOG_LEVEL": "WARNING",
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "NOTIFIER_PUBLISHER": NOOP_PUBLISHER,
        # Nothing is sent, so the publish rate limit (which keeps a real broker's limit) would only
        # pace the no-op: these benchmarks measure storing.
        "PUSH_RATE_LIMIT": "100000",
        "PYTHONPATH": str(ROOT),
        "DEBUG": "0",
    }
    env.update(extra)
    return env


def migrate(env: dict, *target: str) -> None:
    subprocess.run([PYTHON, "manage.py", "migrate", *target, "-v0", "--no-input"], cwd=ROOT, env=env, check=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listening on port {port} after {timeout}s")


def start_gunicorn(env: dict, port: int, workers: int = 2, stderr=None) -> subprocess.Popen:
    proc = subprocess.Popen(
        [PYTHON, "-m", "gunicorn", "config.wsgi", "-b", f"127.0.0.1:{port}", "-w", str(workers),
         "--log-level", "warning"], cwd=ROOT, env=env, stderr=stderr,
    )
    wait_for_port(port)
    return proc


def start_db_worker(env: dict, interval: float = 0.05, nice: int = 0, stderr=None) -> subprocess.Popen:
    """`manage.py db_worker` on the database queue (TASK_BACKEND=database in env)."""
    assert env.get("TASK_BACKEND") == "database"
    return subprocess.Popen(
        (["nice", "-n", str(nice)] if nice else []) + [PYTHON, "manage.py", "db_worker", "--interval", str(interval), "--no-startup-delay", "--no-reload", "-v0"],
        cwd=ROOT, env=env, stderr=stderr,
    )


def start_deliver_pending(env: dict, loop: float = 1.0, stderr=None) -> subprocess.Popen:
    """`manage.py deliver_pending --loop N`: the retrier of owed pushes, as a long-lived local process."""
    return subprocess.Popen([PYTHON, "manage.py", "deliver_pending", "--loop", str(loop), "-v0"],
                            cwd=ROOT, env=env, stderr=stderr)


def start_cpu_hogs(count: int) -> list[subprocess.Popen]:
    """`count` processes that each spin on a CPU until stopped: a machine whose cores are
    oversubscribed, as on a shared or throttled host. Stop them with stop()."""
    return [subprocess.Popen([PYTHON, "-c", "while True: pass"]) for _ in range(count)]


def start_localiot(env: dict, stderr=None, timeout: float = 30) -> subprocess.Popen:
    """`manage.py runlocaliot` (the IoT emulator) on env's LOCALIOT_*_PORT; returns once its MQTT
    and HTTP Publish ports accept connections (the WebSocket port is not probed: a bare TCP connect
    there is a failed handshake), or fails after `timeout` seconds."""
    proc = subprocess.Popen([PYTHON, "manage.py", "runlocaliot"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=stderr)
    try:
        for name in ("LOCALIOT_MQTT_PORT", "LOCALIOT_HTTP_PORT"):
            wait_for_port(int(env[name]), timeout)
    except BaseException:
        stop([proc])
        raise
    return proc


def start_latency_proxy(upstream_port: int, latency_ms: float) -> tuple[subprocess.Popen, int]:
    """bench/latency_proxy.py in its own process, adding `latency_ms` of round trip in front of
    127.0.0.1:upstream_port; returns the process and the port it listens on."""
    proc = subprocess.Popen(
        [PYTHON, str(ROOT / "bench" / "latency_proxy.py"), "--listen", "0", "--upstream", f"127.0.0.1:{upstream_port}",
         "--latency-ms", str(latency_ms)], cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )
    line = proc.stdout.readline()  # "listening on HOST:PORT", or "" if it died
    if not line.startswith("listening on "):
        stop([proc])
        raise RuntimeError(f"the latency proxy did not start: {line!r}")
    return proc, int(line.rsplit(":", 1)[1])


def stop(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def steady(count: int, rate: float):
    """Yield 0..count-1 at `rate` per second on a fixed schedule (a late step does not push the
    later ones back), so a slow response does not lower the offered load."""
    interval = 1.0 / rate
    start = time.perf_counter()
    for i in range(count):
        delay = start + i * interval - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        yield i


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def stats_ms(values: list[float]) -> dict:
    return {"n": len(values), "p50": ms(percentile(values, 50)), "p95": ms(percentile(values, 95)),
            "p99": ms(percentile(values, 99)), "max": ms(max(values))}


class Api:
    """An HTTP/1.1 connection to Herald's API (reopened when gunicorn's sync worker closes it)."""

    def __init__(self, port: int, token: str | None = None):
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.token = token

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Token {self.token}"
        payload = json.dumps(body) if body is not None else None
        try:
            self.conn.request(method, path, body=payload, headers=headers)
            response = self.conn.getresponse()
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            self.conn.close()
            self.conn.request(method, path, body=payload, headers=headers)
            response = self.conn.getresponse()
        raw = response.read()
        return response.status, (json.loads(raw) if raw else {})

    def timed(self, method: str, path: str, body: dict | None = None) -> tuple[float, int, dict]:
        t0 = time.perf_counter()
        status, data = self.call(method, path, body)
        return time.perf_counter() - t0, status, data


def machine() -> dict:
    """Where and on what code the numbers were measured (other people commit while benchmarks run)."""
    with connect(base_admin_url()) as conn:
        pg = conn.execute("SHOW server_version").fetchone()[0]
    git = lambda *args: subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()  # noqa: E731
    return {"cpus": os.cpu_count(), "python": sys.version.split()[0], "postgresql": pg,
            "commit": git("rev-parse", "--short", "HEAD"),
            "uncommitted_app_changes": git("status", "--porcelain", "--", "notifier", "feed", "config").splitlines()}


def base_admin_url() -> str:
    return urlunparse(urlparse(base_url())._replace(path="/postgres"))


def write_result(name: str, result: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path


def create_users_sql(prefix: str, count: int) -> tuple[str, list]:
    """INSERT … SELECT generate_series: `count` active users named <prefix>1…<prefix>N, with an
    unusable password (nobody logs in as them)."""
    return (
        "INSERT INTO feed_user (password, is_superuser, username, first_name, last_name, email, is_staff,"
        " is_active, date_joined, display_name, bio)"
        " SELECT '!', false, %s || g, '', '', '', false, true, now(), '', '' FROM generate_series(1, %s) g",
        [prefix, count],
    )


class CpuMeter:
    """CPU time used (from /proc, Linux) by the processes of a run, by group, and by the machine.

    Groups: `gunicorn` (the master and its workers), `db_worker`, `postgres` (the backends serving
    the run's database: their command line names it), `bench` (this process), and `machine` (all
    busy time of every CPU, from /proc/stat, so whatever else runs on the machine shows too).
    Processes come and go (database connections), so a thread samples every 0.25 s and adds up
    each process's own increase; a process that ends loses at most its last quarter second."""

    TICK = os.sysconf("SC_CLK_TCK")

    def __init__(self, dbname: str, gunicorn: int | None = None, db_workers: tuple[int, ...] = ()):
        self.dbname, self.gunicorn, self.db_workers = dbname, gunicorn, set(db_workers)
        self._thread = None

    def _group(self, pid: int, ppid: int, cmd: str) -> str | None:
        if pid == os.getpid():
            return "bench"
        if self.gunicorn and self.gunicorn in (pid, ppid):
            return "gunicorn"
        if pid in self.db_workers or ppid in self.db_workers:
            return "db_worker"
        if cmd.startswith("postgres: ") and f" {self.dbname} " in cmd:
            return "postgres"
        return None

    def _sample(self) -> tuple[dict, int]:
        seen = {}
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                stat = Path(f"/proc/{name}/stat").read_text()
                cmd = Path(f"/proc/{name}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2:].split()
            group = self._group(int(name), int(fields[1]), cmd)
            if group:
                seen[(int(name), fields[19])] = (group, int(fields[11]) + int(fields[12]))  # (pid, start time)
        values = list(map(int, Path("/proc/stat").read_text().splitlines()[0].split()[1:]))
        return seen, sum(values) - values[3] - values[4]  # all but idle and iowait

    def start(self) -> None:
        import threading

        self._stop = threading.Event()
        self._totals = {"gunicorn": 0, "db_worker": 0, "postgres": 0, "bench": 0}
        self._last, machine0 = self._sample()
        self._t0, self._machine0 = time.perf_counter(), machine0

        def loop():
            while not self._stop.wait(0.25):
                self._tick()

        self._thread = threading.Thread(target=loop, daemon=True)
        self._thread.start()

    def _tick(self) -> int:
        seen, machine_ticks = self._sample()
        for key, (group, ticks) in seen.items():
            before = self._last.get(key, (group, 0))[1]  # a new process: all its time is new
            self._totals[group] += max(0, ticks - before)
        self._last = seen
        return machine_ticks

    def stop(self) -> dict:
        """Average CPU cores used since start(), by group."""
        self._stop.set()
        self._thread.join()
        machine_ticks = self._tick()
        wall = time.perf_counter() - self._t0
        cores = {k: round(v / self.TICK / wall, 2) for k, v in self._totals.items()}
        cores["machine"] = round((machine_ticks - self._machine0) / self.TICK / wall, 2)
        return cores


def ensure_database(url: str) -> None:
    """Create the database `url` names if it is missing (make bench runs this first)."""
    name = urlparse(url).path.lstrip("/")
    with connect(base_admin_url()) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')
            print(f"created database {name}")


if __name__ == "__main__":
    ensure_database(base_url())
