"""Push latency: from sending a comment POST to the post author's MQTT client receiving it.

Everything runs as it does under `make run`, each part in its own process: the IoT emulator
(`manage.py runlocaliot`), Herald under gunicorn, and this script as both the commenter (HTTP) and
the post author's browser (MQTT over WebSocket with credentials from the API). Comments are sent
at a steady rate; each latency is measured from just before the POST is written to the moment
the notification arrives on the subscriber.

It also measures how fast access ends: a browser-like session logs in, opens a live connection with
its credentials and logs out; the time from the log-out POST to the connection being closed by
the emulator (DeleteConnection) is recorded, over --logouts rounds.

And it measures the credentials request (`POST /api/notifications/credentials/`: STS AssumeRole
against the emulator's local STS, plus presigning the URL), over HTTP like a browser's.

In the same run it measures the poll-based alternative: the cost of one unread-count poll, the
latency a 15 s poll interval implies (half the interval plus the poll), and requests per
delivered notification for both designs.

With --web-push, Web Push is on (VAPID keys set) and the post author has two devices subscribed on
the emulator's local push service: every comment also owes and sends two encrypted Web Pushes
after its commit, so the MQTT latency can be compared with and without them.

    python bench/push_latency.py [--count 1000] [--rate 20] [--credentials 300] [--web-push]

Writes bench/results/push_latency.json and prints a summary.
"""
import argparse
import http.cookiejar
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
import urllib.parse
import urllib.request
from urllib.parse import urlparse

import paho.mqtt.client as mqtt

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.benchlib import Api, free_port, ms, percentile, steady, stop, wait_for_port  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
POLL_INTERVAL_S = 15.0
WARMUP = 20


class Browser:
    """A cookie-keeping HTTP client that logs in and out through the pages, as a person does."""

    def __init__(self, port: int):
        self.base = f"http://127.0.0.1:{port}"
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def csrf(self) -> str:
        return next(c.value for c in self.jar if c.name == "csrftoken")

    def post(self, path: str, form: dict | None = None):
        """A form POST, as a page sends it."""
        data = urllib.parse.urlencode({"csrfmiddlewaretoken": self.csrf(), **(form or {})}).encode()
        request = urllib.request.Request(self.base + path, data=data, method="POST")
        with self.opener.open(request, timeout=30) as response:
            return response.status, response.read()

    def api_post(self, path: str):
        """A POST to the API as the page's script makes it: session cookie, CSRF header, no body."""
        request = urllib.request.Request(self.base + path, data=b"", method="POST", headers={
            "X-CSRFToken": self.csrf(), "Accept": "application/json", "Content-Type": "application/json"})
        with self.opener.open(request, timeout=30) as response:
            return response.status, response.read()

    def log_in(self, username: str, password: str) -> None:
        self.opener.open(self.base + "/accounts/login/", timeout=30).read()
        self.post("/accounts/login/", {"username": username, "password": password})


def subscribe(creds: dict, on_message=None) -> tuple[mqtt.Client, threading.Event, threading.Event]:
    """A paho client connected to the presigned URL and subscribed; (client, subscribed, closed)."""
    url = urlparse(creds["url"])
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=creds["client_id"], transport="websockets")
    client.ws_set_options(path=f"{url.path}?{url.query}" if url.query else url.path)
    if creds.get("password"):  # the signed-token credentials of releases before the STS path
        client.username_pw_set(creds.get("username"), creds["password"])
    subscribed, closed = threading.Event(), threading.Event()
    client.on_connect = lambda c, u, flags, reason, props: c.subscribe(creds["topics"]["notifications"], qos=1)
    client.on_subscribe = lambda *args: subscribed.set()
    client.on_disconnect = lambda *args: closed.set()
    if on_message:
        client.on_message = on_message
    client.connect(url.hostname, url.port)
    client.loop_start()
    if not subscribed.wait(10):
        raise RuntimeError("subscriber did not connect")
    return client, subscribed, closed


def access_end(port: int, username: str, password: str, rounds: int) -> list[float]:
    """Seconds from sending the log-out to the user's live connection being closed, per round."""
    took = []
    for _ in range(rounds):
        browser = Browser(port)
        browser.log_in(username, password)
        status, body = browser.api_post("/api/notifications/credentials/")
        assert status == 200, body
        client, _, closed = subscribe(json.loads(body))
        t0 = time.perf_counter()
        browser.post("/accounts/logout/")
        if not closed.wait(30):
            raise RuntimeError("the live connection outlived the log-out")
        took.append(time.perf_counter() - t0)
        client.loop_stop()
    return took


def web_push_env(pub_port: int) -> dict:
    """Web Push on, the emulator's push service allowed (--web-push)."""
    from notifier.webpush.keys import generate

    pair = generate()
    return {"WEB_PUSH_VAPID_PRIVATE_KEY": pair.private, "WEB_PUSH_VAPID_PUBLIC_KEY": pair.public,
            "WEB_PUSH_EXTRA_ORIGINS": f"http://127.0.0.1:{pub_port}"}


def subscribe_devices(api: Api, pub_port: int, devices: int = 2) -> None:
    """The author's browsers subscribe on the local push service (keys made like a browser's)."""
    import base64

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    for i in range(devices):
        point = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
        status, body = api.call("POST", "/api/push/subscriptions/", {
            "endpoint": f"http://127.0.0.1:{pub_port}/push/bench-{i}",
            "keys": {"p256dh": b64(point), "auth": b64(os.urandom(16))}})
        assert status == 201, body


def run(count: int, rate: float, polls: int, credentials: int, logouts: int, web_push: bool = False) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="herald-bench-"))
    ports = {"http": free_port(), "mqtt": free_port(), "ws": free_port(), "pub": free_port()}
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{workdir / 'bench.sqlite3'}",
        "SECRET_KEY": secrets.token_urlsafe(40),
        "LOCALIOT_MQTT_PORT": str(ports["mqtt"]),
        "LOCALIOT_WS_PORT": str(ports["ws"]),
        "LOCALIOT_HTTP_PORT": str(ports["pub"]),
        "THROTTLE_WRITE": "1000000/min",
        "THROTTLE_SIGNUP": "1000/min",
        "THROTTLE_LOGIN": "1000/min",
        "THROTTLE_CREDENTIALS": "1000000/min",
        "LOG_LEVEL": "WARNING",
        "DJANGO_SETTINGS_MODULE": "config.settings",
        **(web_push_env(ports["pub"]) if web_push else {}),
    }
    procs = []
    try:
        subprocess.run([PYTHON, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
        procs.append(subprocess.Popen([PYTHON, "manage.py", "runlocaliot"], cwd=ROOT, env=env,
                                      stdout=subprocess.DEVNULL))
        procs.append(subprocess.Popen(
            [PYTHON, "-m", "gunicorn", "config.wsgi", "-b", f"127.0.0.1:{ports['http']}", "-w", "2",
             "--log-level", "warning"], cwd=ROOT, env=env,
        ))
        # (The WebSocket port is not probed: a bare TCP connect there is a failed handshake.)
        for port in (ports["http"], ports["mqtt"], ports["pub"]):
            wait_for_port(port)

        anon = Api(ports["http"])
        tokens = {}
        for name in ("author", "commenter"):
            status, _ = anon.call("POST", "/api/users/", {"username": name, "password": "bench-password-42"})
            assert status == 201, status
            status, body = anon.call("POST", "/api/token/", {"username": name, "password": "bench-password-42"})
            tokens[name] = body["token"]
        author, commenter = Api(ports["http"], tokens["author"]), Api(ports["http"], tokens["commenter"])
        status, post = author.call("POST", "/api/posts/", {"text": "Benchmark post"})
        assert status == 201, post
        status, creds = author.call("POST", "/api/notifications/credentials/")
        assert status == 200, creds
        if web_push:
            subscribe_devices(author, ports["pub"])

        received: dict[int, float] = {}
        done = threading.Event()

        def on_message(c, userdata, message):
            now = time.perf_counter()
            payload = json.loads(message.payload)
            if payload.get("type") == "notification" and "#" in payload["text"]:
                index = int(payload["text"].rsplit("#", 1)[1].split(" ")[0].rstrip("”"))
                received.setdefault(index, now)
                if len(received) >= count:
                    done.set()

        client, _, _ = subscribe(creds, on_message)

        # Credentials, one after another (what each page load or reconnect costs).
        credential_times = []
        for i in range(WARMUP + credentials):
            t0 = time.perf_counter()
            status, body = author.call("POST", "/api/notifications/credentials/")
            if i >= WARMUP:
                credential_times.append(time.perf_counter() - t0)
            assert status == 200, body

        # Warm-up: the first requests of each gunicorn worker pay for imports and connections.
        for i in range(WARMUP):
            status, body = commenter.call("POST", f"/api/posts/{post['id']}/comments/", {"text": "warm-up"})
            assert status == 201, body
        time.sleep(0.5)

        sent: dict[int, float] = {}
        post_times = []
        for i in steady(count, rate):
            t0 = time.perf_counter()
            sent[i] = t0
            status, body = commenter.call("POST", f"/api/posts/{post['id']}/comments/", {"text": f"comment #{i} "})
            post_times.append(time.perf_counter() - t0)
            assert status == 201, body
        done.wait(10)
        client.loop_stop()
        client.disconnect()

        latencies = [received[i] - sent[i] for i in sent if i in received]
        ended = access_end(ports["http"], "commenter", "bench-password-42", logouts) if logouts else []
        lost = count - len(latencies)

        # The poll-based alternative: GET unread-count, as a client polling every 15 s would.
        poll_times = []
        for _ in range(polls):
            t0 = time.perf_counter()
            status, body = author.call("GET", "/api/notifications/unread-count/")
            poll_times.append(time.perf_counter() - t0)
            assert status == 200 and body["unread_count"] == count + WARMUP
        poll_median = statistics.median(poll_times)

        # Requests per delivered notification, for a user receiving 10 notifications an hour.
        per_hour = 10
        polls_per_hour = 3600 / POLL_INTERVAL_S
        ttl = 900
        return {
            "count": count,
            "rate_per_s": rate,
            "received": len(latencies),
            "lost": lost,
            "push_ms": {
                "p50": ms(percentile(latencies, 50)), "p95": ms(percentile(latencies, 95)),
                "p99": ms(percentile(latencies, 99)), "max": ms(max(latencies)),
                "mean": ms(statistics.fmean(latencies)),
            },
            "comment_post_ms": {"p50": ms(percentile(post_times, 50)), "p99": ms(percentile(post_times, 99))},
            "logout_to_closed_ms": {"rounds": logouts, "p50": ms(percentile(ended, 50)) if ended else None,
                                    "max": ms(max(ended)) if ended else None},
            "credentials_ms": {"count": credentials, "p50": ms(percentile(credential_times, 50)),
                               "p99": ms(percentile(credential_times, 99)), "backend": creds["backend"]},
            "poll": {
                "interval_s": POLL_INTERVAL_S,
                "requests_measured": polls,
                "one_poll_ms": {"p50": ms(poll_median), "p99": ms(percentile(poll_times, 99))},
                "expected_latency_ms": ms(POLL_INTERVAL_S / 2 + poll_median),
                "worst_latency_ms": ms(POLL_INTERVAL_S + percentile(poll_times, 99)),
            },
            "requests_per_notification": {
                "assumed_notifications_per_hour": per_hour,
                "poll": round(polls_per_hour / per_hour, 1),
                # one publish per notification, plus a credentials request each TTL
                "push": round((per_hour + 3600 / ttl) / per_hour, 2),
            },
            "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
            **({"web_push_accepted": json.loads(urllib.request.urlopen(
                f"http://127.0.0.1:{ports['pub']}/push/").read())["accepted"]} if web_push else {}),
        }
    finally:
        stop(procs)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=20.0, help="comments per second")
    parser.add_argument("--polls", type=int, default=300)
    parser.add_argument("--credentials", type=int, default=300, help="credentials requests to time")
    parser.add_argument("--logouts", type=int, default=20, help="log-in, connect, log-out rounds to time")
    parser.add_argument("--out", default=None, help="file name under bench/results/ (default push_latency.json, "
                                                      "push_latency_webpush.json with --web-push)")
    parser.add_argument("--web-push", action="store_true", help="the author also has two Web Push devices")
    args = parser.parse_args()
    args.out = args.out or ("push_latency_webpush.json" if args.web_push else "push_latency.json")
    result = run(args.count, args.rate, args.polls, args.credentials, args.logouts, args.web_push)
    result["web_push_devices"] = 2 if args.web_push else 0
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / args.out).write_text(json.dumps(result, indent=2) + "\n")
    push, poll = result["push_ms"], result["poll"]
    print(f"push ({result['received']}/{result['count']} received at {result['rate_per_s']}/s): "
          f"p50 {push['p50']} ms, p95 {push['p95']} ms, p99 {push['p99']} ms, max {push['max']} ms")
    cred = result["credentials_ms"]
    print(f"credentials ({cred['backend']}, {cred['count']} requests): p50 {cred['p50']} ms, p99 {cred['p99']} ms")
    ended = result["logout_to_closed_ms"]
    if ended["rounds"]:
        print(f"log-out to live connection closed ({ended['rounds']} rounds): p50 {ended['p50']} ms, max {ended['max']} ms")
    print(f"poll every {poll['interval_s']:.0f} s: one poll p50 {poll['one_poll_ms']['p50']} ms; "
          f"expected latency {poll['expected_latency_ms']} ms, worst {poll['worst_latency_ms']} ms")
    rpn = result["requests_per_notification"]
    print(f"requests per notification at {rpn['assumed_notifications_per_hour']}/hour: "
          f"poll {rpn['poll']}, push {rpn['push']}")
    if result["lost"]:
        print(f"LOST {result['lost']} notifications", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
