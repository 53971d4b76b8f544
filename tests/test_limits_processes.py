"""Limits hold across processes: four gunicorn workers serving Herald, hit in parallel over real
HTTP, count in one place (limits.counters), as every warm Lambda container does.

- 60 parallel wrong passwords for one account (half on the log-in page, half on POST /api/token/)
  have at most LOGIN_FAILURES_PER_USERNAME (10) passwords checked; the rest are 429, and so is the
  right password afterwards.
- 40 parallel posts by one user with THROTTLE_WRITE=30/min: exactly 30 are created. (WriteThrottle
  on POST /api/posts/ stands for every throttle: they count alike, and this endpoint needs no IoT
  emulator, which the credentials endpoint's throttle would.)

Each run gets a database of its own that it creates and migrates: a SQLite file, or on PostgreSQL
(the suite's DATABASE_URL) a scratch database beside the test database, dropped afterwards. The
Redis run (CACHE_URL, database 15, flushed) is skipped when no Redis answers.

Nothing here assumes a fast machine: the server is ready when its port answers and its four
workers exist; timeouts are only guards against a hang.
"""
import http.client
import json
import os
import re
import secrets
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import quote, urlencode

import pytest
from django.conf import settings as django_settings

from .live import free_port
from .test_limit_counters import REDIS_URL, redis_answers

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "the-right-password-42"
GUARD = 120  # seconds: only a guard against a hang, never a pace

SETUP = """
import django
django.setup()
from rest_framework.authtoken.models import Token
from feed.models import User
victim = User.objects.create_user("victim", password=%(password)r)
writer = User.objects.create_user("writer", password=%(password)r)
print(Token.objects.create(user=writer).key)
"""


def scratch_database(tmp_path) -> tuple[str, callable]:
    """(DATABASE_URL of a new empty database, a function that removes it)."""
    db = django_settings.DATABASES["default"]
    if db["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{tmp_path / 'limits.sqlite3'}", lambda: None
    import psycopg

    name = f"herald_limits_{os.getpid()}_{secrets.token_hex(3)}"
    params = {"host": db.get("HOST") or "localhost", "port": db.get("PORT") or 5432, "user": db.get("USER") or None,
              "password": db.get("PASSWORD") or None, "dbname": "postgres", "autocommit": True}
    with psycopg.connect(**{k: v for k, v in params.items() if v is not None}) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')

    def drop():
        with psycopg.connect(**{k: v for k, v in params.items() if v is not None}) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    auth = quote(db["USER"], safe="") + (f":{quote(db['PASSWORD'], safe='')}" if db.get("PASSWORD") else "") + "@" if db.get("USER") else ""
    port = f":{db['PORT']}" if db.get("PORT") else ""
    return f"postgres://{auth}{params['host']}{port}/{name}", drop


def server_env(database_url: str, cache_url: str | None) -> dict:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": database_url,
        "DEBUG": "0",
        "SECRET_KEY": "herald-limits-test-key-" + secrets.token_hex(16),
        "LOG_LEVEL": "WARNING",
        "TASK_BACKEND": "database",  # the fan-out of a post waits in the queue: nobody runs it
        "NOTIFIER_PUBLISHER": "tests.publishers.MemoryPublisher",
        "LOCALIOT_HTTP_PORT": str(free_port()),  # were a publish attempted: a closed port
        "THROTTLE_WRITE": "30/min",
        "THROTTLE_LOGIN": "1000/min",  # the address's token throttle is not what is measured here
        "LOGIN_FAILURES_PER_USERNAME": "10",
        "LOGIN_FAILURES_PER_ADDRESS": "1000",
        "PYTHONPATH": str(ROOT),
    }
    env.pop("CACHE_URL", None)
    if cache_url:
        env["CACHE_URL"] = cache_url
    return env


def worker_count(master_pid: int) -> int:
    count = 0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == master_pid:
                count += 1
    return count


def wait_until(condition, what: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + GUARD
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"gunicorn exited ({proc.returncode}) before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} after {GUARD}s")
        time.sleep(0.1)


def port_answers(port: int) -> bool:
    import socket

    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def request(port, method, path, body=b"", headers=None) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=GUARD)
    conn.request(method, path, body=body, headers=headers or {})
    response = conn.getresponse()
    response.body = response.read()
    conn.close()
    return response


def in_parallel(count: int, call) -> list:
    results, start = [None] * count, threading.Barrier(count)

    def run(i):
        start.wait()
        try:
            results[i] = call(i)
        except Exception as exc:  # noqa: BLE001  (reported by the assertions)
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=GUARD * 2)
    return results


@pytest.fixture(params=["database", "redis"])
def herald(request, tmp_path):
    """Four gunicorn workers on a fresh, migrated database; yields (port, the writer's token)."""
    cache_url = None
    if request.param == "redis":
        if not redis_answers():
            pytest.skip(f"no Redis at {REDIS_URL}")
        import redis

        redis.Redis.from_url(REDIS_URL).flushdb()
        cache_url = REDIS_URL
    database_url, drop = scratch_database(tmp_path)
    env = server_env(database_url, cache_url)
    proc = None
    try:
        subprocess.run([sys.executable, "manage.py", "migrate", "-v0", "--no-input"], cwd=ROOT, env=env,
                       check=True, timeout=GUARD * 3)
        token = subprocess.run([sys.executable, "-c", SETUP % {"password": PASSWORD}], cwd=ROOT, env=env,
                               check=True, capture_output=True, text=True, timeout=GUARD).stdout.strip()
        port = free_port()
        log = (tmp_path / "gunicorn.log").open("wb")
        proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "config.wsgi", "-w", "4", "-b", f"127.0.0.1:{port}",
                                 "--timeout", str(GUARD), "--log-level", "warning"],
                                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        wait_until(lambda: port_answers(port), "port answering", proc)
        wait_until(lambda: worker_count(proc.pid) == 4, "four workers", proc)
        yield port, token
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(GUARD)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            print((tmp_path / "gunicorn.log").read_text(errors="replace")[-4000:])  # shown if the test failed
        drop()
        if cache_url:
            import redis

            redis.Redis.from_url(REDIS_URL).flushdb()


def page_form(port) -> tuple[str, str]:
    """(csrftoken cookie, the form's token) from the log-in page."""
    page = request(port, "GET", "/accounts/login/")
    cookie = re.search(r"csrftoken=([^;]+)", page.getheader("Set-Cookie") or "").group(1)
    token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page.body).group(1).decode()
    return cookie, token


def test_sixty_parallel_guesses_get_at_most_ten_password_checks(herald):
    port, _ = herald
    cookie, form_token = page_form(port)

    def guess(i, password="wrong-guess"):
        if i % 2:
            r = request(port, "POST", "/api/token/", json.dumps({"username": "victim", "password": password}),
                        {"Content-Type": "application/json"})
            checked = 400
        else:
            body = urlencode({"username": "victim", "password": password, "csrfmiddlewaretoken": form_token})
            r = request(port, "POST", "/accounts/login/", body,
                        {"Content-Type": "application/x-www-form-urlencoded", "Cookie": f"csrftoken={cookie}"})
            checked = 200  # the form again, saying the password was wrong
        return "checked" if r.status == checked else r.status, r.getheader("Retry-After")

    results = in_parallel(60, guess)
    outcomes = [r[0] if isinstance(r, tuple) else repr(r) for r in results]
    checked = outcomes.count("checked")
    assert outcomes.count(429) == 60 - checked, outcomes
    assert 1 <= checked <= 10, f"{checked} of 60 passwords were checked (limit 10)"
    assert all(int(r[1]) > 0 for r in results if r[0] == 429)
    # Past the limit, the right password is refused too (on both paths).
    assert guess(1, PASSWORD)[0] == 429 and guess(0, PASSWORD)[0] == 429


def test_forty_parallel_writes_at_thirty_a_minute_let_exactly_thirty_through(herald):
    port, token = herald

    def write(i):
        r = request(port, "POST", "/api/posts/", json.dumps({"text": f"post {i}"}),
                    {"Content-Type": "application/json", "Authorization": f"Token {token}"})
        return r.status, r.getheader("Retry-After")

    results = in_parallel(40, write)
    statuses = sorted(r[0] if isinstance(r, tuple) else repr(r) for r in results)
    assert statuses.count(201) == 30 and statuses.count(429) == 10, statuses
    assert all(0 < int(r[1]) <= 60 for r in results if r[0] == 429)
