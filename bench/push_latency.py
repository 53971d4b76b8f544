"""Push latency: from sending a comment POST to the post author's MQTT client receiving it.

Everything runs as it does under `make run`, each part in its own process: the IoT emulator
(`manage.py runlocaliot`), Herald under gunicorn, and this script as both the commenter (HTTP) and
the post author's browser (MQTT over WebSocket with credentials from the API). Comments are sent
at a steady rate; each latency is measured from just before the POST is written to the moment
the notification arrives on the subscriber.

It also measures the credentials request (`POST /api/notifications/credentials/`: STS AssumeRole
against the emulator's local STS, plus presigning the URL), over HTTP like a browser's.

In the same run it measures the poll-based alternative: the cost of one unread-count poll, the
latency a 15 s poll interval implies (half the interval plus the poll), and requests per
delivered notification for both designs.

    python bench/push_latency.py [--count 1000] [--rate 20] [--credentials 300]

Writes bench/results/push_latency.json and prints a summary.
"""
import argparse
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
from urllib.parse import urlparse

import paho.mqtt.client as mqtt

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.benchlib import Api, free_port, ms, percentile, steady, stop, wait_for_port  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
POLL_INTERVAL_S = 15.0
WARMUP = 20


def run(count: int, rate: float, polls: int, credentials: int) -> dict:
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

        received: dict[int, float] = {}
        done = threading.Event()
        subscribed = threading.Event()
        url = urlparse(creds["url"])
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=creds["client_id"], transport="websockets")
        # The presigned URL as it is: path and query (signature, session token).
        client.ws_set_options(path=f"{url.path}?{url.query}" if url.query else url.path)
        if creds.get("password"):  # the signed-token credentials of releases before the STS path
            client.username_pw_set(creds.get("username"), creds["password"])

        def on_connect(c, userdata, flags, reason, properties):
            c.subscribe(creds["topics"]["notifications"], qos=1)

        def on_subscribe(c, userdata, mid, reasons, properties):
            subscribed.set()

        def on_message(c, userdata, message):
            now = time.perf_counter()
            payload = json.loads(message.payload)
            if payload.get("type") == "notification" and "#" in payload["text"]:
                index = int(payload["text"].rsplit("#", 1)[1].split(" ")[0].rstrip("”"))
                received.setdefault(index, now)
                if len(received) >= count:
                    done.set()

        client.on_connect, client.on_subscribe, client.on_message = on_connect, on_subscribe, on_message
        client.connect(url.hostname, url.port)
        client.loop_start()
        if not subscribed.wait(10):
            raise RuntimeError("subscriber did not connect")

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
        }
    finally:
        stop(procs)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=20.0, help="comments per second")
    parser.add_argument("--polls", type=int, default=300)
    parser.add_argument("--credentials", type=int, default=300, help="credentials requests to time")
    parser.add_argument("--out", default="push_latency.json", help="file name under bench/results/")
    args = parser.parse_args()
    result = run(args.count, args.rate, args.polls, args.credentials)
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / args.out).write_text(json.dumps(result, indent=2) + "\n")
    push, poll = result["push_ms"], result["poll"]
    print(f"push ({result['received']}/{result['count']} received at {result['rate_per_s']}/s): "
          f"p50 {push['p50']} ms, p95 {push['p95']} ms, p99 {push['p99']} ms, max {push['max']} ms")
    cred = result["credentials_ms"]
    print(f"credentials ({cred['backend']}, {cred['count']} requests): p50 {cred['p50']} ms, p99 {cred['p99']} ms")
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
