"""Push throughput: how fast a post's fan-out pushes reach the broker when the broker is 0 ms
(loopback), 10 ms or 30 ms of round trip away.

In production Herald publishes from Lambda to AWS IoT Core's data endpoint, a network hop away;
locally the IoT emulator answers over loopback. Here the emulator (`manage.py runlocaliot`) runs
once for the whole run, and for each latency above 0 a bench/latency_proxy.py process sits between
the publisher and the emulator's HTTP Publish port, adding that round trip to every request
(0 ms: the publisher talks to the emulator directly). MQTT subscribers always connect to the
emulator directly.

Measured for each latency, in interleaved rounds (round 1 at every latency, then round 2, ...;
the medians are reported):
- bare boto3, sequential: one `boto3.client("iot-data")` with the emulator's key pair
  (notifier.aws.local.root_credentials() under the run's SECRET_KEY) publishes one message after
  another to distinct user topics (notifier.topics.user_topic). Only --sequential-count messages
  (default 300): it is bounded by 1 / round trip, which is what it shows. Its time per message
  also checks that the proxy adds the latency it should.
- bare boto3, 8 threads sharing one client (`max_pool_connections=8`): N messages. The reference:
  what a plain concurrent boto3 loop gets from the same broker over the same path.
- Herald: `feed.services.create_post()` by an author with N followers, with the real publisher
  (notifier.push.publisher.IotDataPublisher, NOTIFIER_BACKEND=local, LOCALIOT_HTTP_PORT on the proxy),
  on PostgreSQL (a scratch database, data built as bench/fanout.py builds it, reset to the same
  state before every round), in a child process per round:
  - inline: TASK_BACKEND=immediate; from calling create_post() until every push is recorded
    (the outbox, notifier_pendingpush, is empty);
  - workers: TASK_BACKEND=database with 2 `manage.py db_worker --interval 0.05` processes started
    before the round; from the post's commit until no task is queued or running and the outbox is
    empty, polled every 20 ms.
  Throughput is N / that time. The messages are real notifications (JSON envelopes of about the
  bare loop's payload size) built from the rows the fan-out stored.

Every Herald round is verified, and any failure fails the run (exit 1): exactly N new_post
notifications with the right seqs and states (bench/fanout.py's verify), an empty outbox (nothing
pending, nothing failed), no failed task, and S real subscribers: before the round, S randomly
chosen followers each connect over MQTT (TCP) with a token for their own topic (what the
credential view issues) and subscribe; each must receive exactly one message for the post, a
new_post notification with the seq that follower's state predicts.

Herald reads PUSH_CONCURRENCY and PUSH_RATE_LIMIT (per process) from its environment; --concurrency
and --rate-limit set them for every Herald process.

    python bench/push_throughput.py [--count 10000] [--latency-ms 0 10 30] [--rounds 3]
        [--modes inline workers] [--sample 50] [--concurrency 8] [--rate-limit 1000]

Writes bench/results/push_throughput.json (settings, every round's numbers, medians, the ratio
Herald / bare 8-thread loop). Targets (reported, not the exit status): Herald >= 0.7x the bare
8-thread loop at 10 ms and 30 ms; at 0 ms Herald no slower (within 5%) than the baseline, when it
measured the same N: --baseline, by default bench/results/push_throughput_baseline.json (the
code before publishing was concurrent) if present, else the results file this run replaces.
"""
import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.benchlib import (  # noqa: E402
    PYTHON, RESULTS, ROOT, bench_env, connect, free_port, machine, migrate, recreate_database, scratch_url,
    start_db_worker, start_latency_proxy, start_localiot, stop, write_result,
)

PUBLISHER = "notifier.push.publisher.IotDataPublisher"
THREADS = 8
WORKERS = 2
WORKER_INTERVAL = 0.05
POLL_S = 0.02
TARGET_RATIO = 0.7  # Herald / bare 8-thread loop, at the latencies below
TARGET_LATENCIES = (10, 30)
LOOPBACK_TOLERANCE = 0.05  # run-to-run noise allowed when comparing loopback with the baseline
# Loopback numbers of the code before publishing became concurrent (same script, same N), if kept.
BASELINE = RESULTS / "push_throughput_baseline.json"
DELIVERY_WAIT_S = 10  # how long subscribers may take to receive after the outbox is empty
QUIET_S = 0.3  # then how long a duplicate is watched for


# --- bare boto3 (this process) ------------------------------------------------------------------

def bare_client(endpoint: str, pool: int):
    """An iot-data client as Herald's patient one is configured, on the emulator's key pair."""
    import boto3
    from botocore.config import Config
    from django.conf import settings

    from notifier.aws.local import root_credentials as local_credentials

    key_id, secret = local_credentials()
    config = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=2, read_timeout=5,
                    tcp_keepalive=True, max_pool_connections=pool)
    return boto3.client("iot-data", endpoint_url=endpoint, region_name=settings.AWS_REGION,
                        aws_access_key_id=key_id, aws_secret_access_key=secret, config=config)


def sample_payload() -> bytes:
    """A new_post notification envelope, the size of what Herald sends."""
    from notifier import envelope

    return envelope.encode({
        "v": 1, "type": "notification", "seq": 6, "id": 1234567, "kind": "new_post",
        "actor": {"username": "fan10000", "display_name": "Author fan10000"},
        "text": "Author fan10000 posted: “Benchmark post 1”", "url": "/posts/123/",
        "created_at": "2026-01-01T12:00:00.000000+00:00", "unread_count": 4,
    })


def publish_all(client, topics: list[str], payload: bytes, threads: int) -> None:
    """Publish one message per topic, `threads` threads taking every threads-th topic each."""
    errors = []

    def run(part):
        try:
            for topic in part:
                client.publish(topic=topic, qos=1, payload=payload)
        except Exception as exc:  # reported below: a failed bare publish fails the run
            errors.append(exc)

    workers = [threading.Thread(target=run, args=(topics[i::threads],)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    if errors:
        raise RuntimeError(f"bare publish failed: {errors[0]!r}")


def bare_round(endpoint: str, topics: list[str], threads: int) -> dict:
    """A fresh client (its connections opened by an untimed warm-up), then len(topics) publishes."""
    payload = sample_payload()
    client = bare_client(endpoint, max(threads, THREADS))
    try:
        publish_all(client, topics[: threads * 2], payload, threads)
        t0 = time.perf_counter()
        publish_all(client, topics, payload, threads)
        elapsed = time.perf_counter() - t0
    finally:
        client.close()
    return {"messages": len(topics), "seconds": round(elapsed, 4), "per_s": round(len(topics) / elapsed, 1),
            "ms_per_publish": round(elapsed / len(topics) * 1000 * threads, 3)}


# --- MQTT subscribers (this process) ------------------------------------------------------------

class Subscribers:
    """Real MQTT clients of sampled followers: each gets keys as a browser does (STS AssumeRole on
    the emulator with Herald's session policy, then a presigned URL), connects to the emulator's
    MQTT port with that URL as its password, and subscribes to its own topic."""

    def __init__(self, port: int, user_ids: list[int]):
        from datetime import datetime, timezone

        import boto3
        import paho.mqtt.client as mqtt
        from django.conf import settings

        from notifier.aws import local
        from notifier.aws.policies import dumps, new_client_id, session_policy
        from notifier.aws.presign import presign_wss_url
        from notifier.topics import user_topic

        self.messages: dict[int, list[dict]] = {uid: [] for uid in user_ids}
        self.subscribed = {uid: threading.Event() for uid in user_ids}
        self.refused: list[int] = []
        self.clients = []
        key_id, secret = local.root_credentials()
        sts = boto3.client("sts", endpoint_url=local.endpoint_url(), region_name=settings.AWS_REGION,
                           aws_access_key_id=key_id, aws_secret_access_key=secret)
        for uid in user_ids:
            client_id = new_client_id(uid)
            topic = user_topic(uid)
            policy = session_policy(region=settings.AWS_REGION, account=local.ACCOUNT,
                                    prefix=settings.IOT_TOPIC_PREFIX, client_id=client_id, user_id=uid)
            keys = sts.assume_role(RoleArn=local.ROLE_ARN, RoleSessionName=f"bench-{uid}", DurationSeconds=3600,
                                   Policy=dumps(policy))["Credentials"]
            url = presign_wss_url(endpoint=local.data_endpoint(), region=settings.AWS_REGION,
                                  access_key_id=keys["AccessKeyId"], secret_access_key=keys["SecretAccessKey"],
                                  session_token=keys["SessionToken"], now=datetime.now(timezone.utc), expires=3600,
                                  scheme="ws")
            client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, reconnect_on_failure=False,
                                 userdata=(uid, topic))
            client.username_pw_set(str(uid), url)
            client.on_connect = self._on_connect
            client.on_subscribe = self._on_subscribe
            client.on_message = self._on_message
            client.connect("127.0.0.1", port, keepalive=60)
            client.loop_start()
            self.clients.append(client)
        deadline = time.monotonic() + 15
        for uid, event in self.subscribed.items():
            if not event.wait(max(0.0, deadline - time.monotonic())):
                self.close()
                raise RuntimeError(f"subscriber of user {uid} did not subscribe")
        if self.refused:
            self.close()
            raise RuntimeError(f"subscriptions refused for users {self.refused}")

    def _on_connect(self, client, userdata, flags, reason, properties):
        uid, topic = userdata
        if reason.is_failure:
            self.refused.append(uid)
            self.subscribed[uid].set()
        else:
            client.subscribe(topic, qos=1)

    def _on_subscribe(self, client, userdata, mid, reasons, properties):
        uid, _ = userdata
        if any(r.is_failure for r in reasons):
            self.refused.append(uid)
        self.subscribed[uid].set()

    def _on_message(self, client, userdata, message):
        self.messages[userdata[0]].append(json.loads(message.payload))

    def check(self, post_url: str, expected_seq: dict[int, int]) -> dict:
        """Each subscriber got exactly one message for the post: a new_post notification with the
        expected seq. Waits up to DELIVERY_WAIT_S for stragglers, then QUIET_S for duplicates."""
        def for_post(uid):
            return [m for m in self.messages[uid] if m.get("url") == post_url]

        deadline = time.monotonic() + DELIVERY_WAIT_S
        while time.monotonic() < deadline and not all(for_post(uid) for uid in self.messages):
            time.sleep(0.05)
        time.sleep(QUIET_S)
        missing, duplicated, wrong = [], [], []
        for uid in self.messages:
            got = for_post(uid)
            if not got:
                missing.append(uid)
            elif len(got) > 1:
                duplicated.append(uid)
            elif not (got[0].get("type") == "notification" and got[0].get("kind") == "new_post"
                      and got[0].get("seq") == expected_seq[uid]):
                wrong.append({"user": uid, "message": got[0], "expected_seq": expected_seq[uid]})
        return {"ok": not (missing or duplicated or wrong), "subscribers": len(self.messages),
                "received_one": len(self.messages) - len(missing) - len(duplicated) - len(wrong),
                "missing": missing, "duplicated": duplicated, "wrong": wrong}

    def close(self) -> None:
        for client in self.clients:
            client.disconnect()
            client.loop_stop()


# --- Herald (a child process per round, with its own settings) ----------------------------------

def _sql(query: str, params=None):
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(query, params)
        return cursor.fetchall() if cursor.description else None


def _outbox() -> tuple[bool, bool, bool]:
    """(tasks queued or running, pushes owed, pushes that failed or are waiting for a retry)."""
    return _sql(
        "SELECT EXISTS (SELECT 1 FROM django_tasks_database_dbtaskresult WHERE status IN ('READY', 'RUNNING')),"
        " EXISTS (SELECT 1 FROM notifier_pendingpush),"
        " EXISTS (SELECT 1 FROM notifier_pendingpush WHERE attempts > 0 OR due_at IS NULL)"
    )[0]


def wait_pushed(t0: float, timeout: float) -> float:
    """Seconds from t0 until nothing is queued and every push is recorded (the outbox is empty),
    polled every POLL_S. Raises when pushes failed (the work is done but rows are left waiting
    for a retry or marked failed) or after `timeout`."""
    while True:
        busy, owed, failing = _outbox()
        if not busy and not owed:
            return time.perf_counter() - t0
        if not busy and failing:
            rows = _sql("SELECT count(*), count(*) FILTER (WHERE due_at IS NULL), min(last_error)"
                        " FROM notifier_pendingpush")[0]
            raise RuntimeError(f"pushes failed: {rows[0]} owed, {rows[1]} failed for good; e.g. {rows[2]!r}")
        if time.perf_counter() - t0 > timeout:
            raise RuntimeError(f"pushes not done after {timeout:.0f} s")
        time.sleep(POLL_S)


def child(mode: str, author_name: str, expected: int, timeout: float) -> dict:
    import django

    django.setup()
    from django.conf import settings

    from bench.fanout import reset, verify
    from feed import services
    from feed.models import User
    from notifier.push.publisher import get_publisher

    assert type(get_publisher()).__name__ == PUBLISHER.rsplit(".", 1)[1], settings.NOTIFIER_PUBLISHER
    assert settings.TASK_BACKEND == {"inline": "immediate", "workers": "database"}[mode]
    author = User.objects.get(username=author_name)
    warm = User.objects.get(username="warm")

    # Warm-up (imports, connections, the boto3 client; in workers mode, two posts so that both
    # workers are likely to get one), then back to the starting state.
    reset()
    for i in range(1 if mode == "inline" else WORKERS):
        services.create_post(warm, f"warm-up post {i}")
    wait_pushed(time.perf_counter(), timeout)
    reset()

    t_call = time.perf_counter()
    post = services.create_post(author, "Benchmark post")
    t_commit = time.perf_counter()
    t0 = t_call if mode == "inline" else t_commit
    elapsed = wait_pushed(t0, timeout)
    rows = verify(author.pk, post.pk, expected)
    (owed, failed_tasks), = _sql("SELECT (SELECT count(*) FROM notifier_pendingpush),"
                                 " (SELECT count(*) FROM django_tasks_database_dbtaskresult WHERE status = 'FAILED')")
    return {"seconds": round(elapsed, 4), "per_s": round(expected / elapsed, 1),
            "create_post_s": round(t_commit - t_call, 4), "post_id": post.pk, "post_url": post.get_absolute_url(),
            "rows": rows, "outbox_left": owed, "failed_tasks": failed_tasks}


def run_child(env: dict, mode: str, author: str, n: int, timeout: float) -> dict:
    out = subprocess.run(
        [PYTHON, str(Path(__file__)), "--child", mode, "--author", author, "--count", str(n),
         "--timeout", str(timeout)],
        cwd=ROOT, env=env, check=True, stdout=subprocess.PIPE, text=True,
    ).stdout
    line = [ln for ln in out.splitlines() if ln.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


def herald_round(ctx: dict, env: dict, mode: str) -> dict:
    """One Herald fan-out with S fresh subscribers watching; every check's outcome is in the result."""
    sample = random.sample(ctx["followers"], ctx["sample"])
    subscribers = Subscribers(ctx["mqtt_port"], sample)
    try:
        env = {**env, "TASK_BACKEND": "immediate" if mode == "inline" else "database"}
        workers = [start_db_worker(env, WORKER_INTERVAL) for _ in range(WORKERS)] if mode == "workers" else []
        try:
            result = run_child(env, mode, ctx["author"], ctx["count"], ctx["timeout"])
        finally:
            stop(workers)
        result["subscribers"] = subscribers.check(result["post_url"], {u: ctx["seq0"][u] + 1 for u in sample})
    finally:
        subscribers.close()
    result["ok"] = (result["rows"]["ok"] and result["outbox_left"] == 0 and result["failed_tasks"] == 0
                    and result["subscribers"]["ok"])
    return result


# --- the run (this process) ---------------------------------------------------------------------

def prepare(url: str, env: dict, count: int) -> dict:
    """Scratch database with bench/fanout.py's data for N followers; the facts the checks need."""
    from bench.fanout import build

    recreate_database(url)
    migrate(env)
    author = build(url, [count])[count]
    with connect(url) as conn:
        followers = [r[0] for r in conn.execute(
            "SELECT f.follower_id FROM feed_follow f JOIN feed_user a ON a.id = f.followee_id"
            " WHERE a.username = %s ORDER BY f.follower_id", [author])]
        seq0 = dict(conn.execute("SELECT user_id, last_seq FROM bench_state0").fetchall())
    assert len(followers) == count
    return {"author": author, "followers": followers, "seq0": seq0}


def setup_django(env: dict) -> None:
    """This process uses Herald's settings too (the run's SECRET_KEY, topic names)."""
    import django

    os.environ.update(env)
    django.setup()


def load_baseline(path: Path, count: int) -> dict | None:
    """Loopback Herald throughput (median msg/s by mode) from an earlier run with the same N."""
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    loopback = old.get("medians", {}).get("0", {})
    if old.get("settings", {}).get("count") != count or not loopback:
        return None
    herald = {k.removeprefix("herald_"): v for k, v in loopback.items() if k.startswith("herald_")}
    return {"file": str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path),
            "commit": old.get("machine", {}).get("commit"),
            "uncommitted_app_changes": old.get("machine", {}).get("uncommitted_app_changes"),
            "loopback_per_s": herald}


def medians(rounds: list[dict], latencies: list[int], kinds: list[str]) -> dict:
    return {str(lat): {k: round(statistics.median(r[k]["per_s"] for r in rounds if r["latency_ms"] == lat), 1)
                       for k in kinds} for lat in latencies}


def checks(result: dict, args, baseline: dict | None) -> tuple[list[dict], list[dict]]:
    """(correctness checks, which fail the run; targets, which are only reported)."""
    correct, targets = [], []
    rounds = result["rounds"]
    herald_rounds = [(r["round"], r["latency_ms"], k, r[k]) for r in rounds for k in r if k.startswith("herald_")]
    bad = [f"round {i} {lat} ms {k}" for i, lat, k, h in herald_rounds if not h["ok"]]
    correct.append({"what": f"every Herald round delivered exactly: {args.count} notifications, empty outbox, "
                            f"{args.sample} subscribers got their one message", "ok": not bad, "failed": bad})
    for lat in args.latency_ms:
        # The proxy works: one sequential publish takes at least the injected round trip.
        per_msg = statistics.median(r["bare_sequential"]["ms_per_publish"] for r in rounds if r["latency_ms"] == lat)
        correct.append({"what": f"{lat} ms: a sequential publish takes >= the injected round trip",
                        "measured_ms": per_msg, "target_ms": lat, "ok": per_msg >= lat * 0.95})
    for lat in [lat for lat in args.latency_ms if lat in TARGET_LATENCIES]:
        for mode in args.modes:
            ratio = result["ratios"][str(lat)][mode]
            targets.append({"what": f"{lat} ms, {mode}: Herald / bare 8-thread loop", "measured_x": ratio,
                            "target_x": TARGET_RATIO, "ok": ratio >= TARGET_RATIO})
    if 0 in args.latency_ms:
        for mode in args.modes:
            now = result["medians"]["0"][f"herald_{mode}"]
            before = (baseline or {}).get("loopback_per_s", {}).get(mode)
            targets.append({"what": f"0 ms, {mode}: Herald msg/s not lower than the baseline "
                                    f"(within {LOOPBACK_TOLERANCE:.0%})",
                            "measured_per_s": now, "baseline_per_s": before,
                            "ok": None if before is None else now >= before * (1 - LOOPBACK_TOLERANCE)})
    return correct, targets


def print_table(result: dict, args) -> None:
    kinds = ["bare_sequential", "bare_threads"] + [f"herald_{m}" for m in args.modes]
    names = {"bare_sequential": "boto3 seq", "bare_threads": f"boto3 {THREADS} thr",
             "herald_inline": "Herald inline", "herald_workers": f"Herald {WORKERS} workers"}
    print(f"push throughput, msg/s, median of {args.rounds} round(s); N = {args.count} "
          f"(sequential: {args.sequential_count}); PUSH_CONCURRENCY={args.concurrency}, "
          f"PUSH_RATE_LIMIT={args.rate_limit:g}")
    print(f"  {'latency':>8}" + "".join(f"{names[k]:>17}" for k in kinds)
          + "".join(f"{'ratio ' + m:>15}" for m in args.modes))
    for lat in args.latency_ms:
        med, ratio = result["medians"][str(lat)], result["ratios"][str(lat)]
        print(f"  {str(lat) + ' ms':>8}" + "".join(f"{med[k]:>17,.1f}" for k in kinds)
              + "".join(f"{ratio[m]:>14.2f}x" for m in args.modes))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=10000, help="followers = messages per measurement (N)")
    parser.add_argument("--sequential-count", type=int, default=300, help="messages of the sequential bare loop")
    parser.add_argument("--latency-ms", type=int, nargs="+", default=[0, 10, 30], help="round trips to the broker")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--modes", nargs="+", choices=["inline", "workers"], default=["inline", "workers"])
    parser.add_argument("--sample", type=int, default=50, help="MQTT subscribers checked per Herald round")
    parser.add_argument("--concurrency", type=int, default=8, help="PUSH_CONCURRENCY for Herald processes")
    parser.add_argument("--rate-limit", type=float, default=1000.0, help="PUSH_RATE_LIMIT (per process)")
    parser.add_argument("--baseline", type=Path, default=None,
                        help=f"earlier results to compare loopback with (default: {BASELINE.name} if present, "
                             "else the results file this run replaces)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--author", help=argparse.SUPPRESS)
    parser.add_argument("--timeout", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        print("RESULT " + json.dumps(child(args.child, args.author, args.count, args.timeout)), flush=True)
        return

    started_on = machine()  # the commit at the start: others may commit while this runs
    if args.baseline is None:
        args.baseline = BASELINE if BASELINE.exists() else RESULTS / "push_throughput.json"
    baseline = load_baseline(args.baseline, args.count)
    ports = {"LOCALIOT_MQTT_PORT": free_port(), "LOCALIOT_WS_PORT": free_port(), "LOCALIOT_HTTP_PORT": free_port()}
    url = scratch_url("push")
    env = bench_env(url, NOTIFIER_PUBLISHER=PUBLISHER, NOTIFIER_BACKEND="local", LOCALIOT_HOST="127.0.0.1",
                    TASK_BACKEND="immediate", LOCALIOT_PUBLISH_RATE="0",  # the emulator never throttles here
                    PUSH_CONCURRENCY=str(args.concurrency),
                    PUSH_RATE_LIMIT=f"{args.rate_limit:g}", **{k: str(v) for k, v in ports.items()})
    setup_django(env)
    from notifier.topics import user_topic

    t0 = time.perf_counter()
    ctx = prepare(url, env, args.count)
    print(f"data built in {time.perf_counter() - t0:.1f} s ({args.count} followers)", file=sys.stderr)
    ctx.update(count=args.count, sample=min(args.sample, args.count), mqtt_port=ports["LOCALIOT_MQTT_PORT"],
               timeout=60 + args.count / 10)  # 10 msg/s at least, or something is wrong
    topics = [user_topic(uid) for uid in ctx["followers"]]

    procs = [start_localiot(env)]
    endpoints = {}  # latency -> the HTTP Publish port the publisher talks to
    result = {"settings": {"count": args.count, "sequential_count": args.sequential_count, "latency_ms": args.latency_ms,
                           "rounds": args.rounds, "modes": args.modes, "sample": ctx["sample"],
                           "push_concurrency": args.concurrency, "push_rate_limit": args.rate_limit,
                           "bare_threads": THREADS, "db_workers": WORKERS, "worker_interval_s": WORKER_INTERVAL,
                           "poll_s": POLL_S, "database": "postgresql", "publisher": PUBLISHER,
                           "latency_injected": "round trip, by bench/latency_proxy.py in front of the emulator's"
                                               " HTTP Publish port (0 ms: no proxy)"},
              "rounds": []}
    failure = None
    try:
        for lat in args.latency_ms:
            if lat == 0:
                endpoints[lat] = ports["LOCALIOT_HTTP_PORT"]
            else:
                proc, endpoints[lat] = start_latency_proxy(ports["LOCALIOT_HTTP_PORT"], lat)
                procs.append(proc)
        for i in range(args.rounds):
            for lat in args.latency_ms:
                endpoint = f"http://127.0.0.1:{endpoints[lat]}"
                record = {"round": i + 1, "latency_ms": lat}
                record["bare_sequential"] = bare_round(endpoint, topics[: args.sequential_count], 1)
                record["bare_threads"] = bare_round(endpoint, topics, THREADS)
                for mode in args.modes:
                    herald_env = {**env, "LOCALIOT_HTTP_PORT": str(endpoints[lat])}
                    record[f"herald_{mode}"] = herald_round(ctx, herald_env, mode)
                result["rounds"].append(record)
                print(f"  round {i + 1}, {lat:>2} ms: " + ", ".join(
                    f"{k} {v['per_s']:,.0f}/s" + ("" if v.get("ok", True) else " (FAILED CHECKS)")
                    for k, v in record.items() if isinstance(v, dict)), file=sys.stderr, flush=True)
                bad = [k for k, v in record.items() if isinstance(v, dict) and not v.get("ok", True)]
                if bad:
                    failure = f"round {i + 1}, {lat} ms: {', '.join(bad)} failed its checks"
                    break
            if failure:
                break
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        failure = f"{type(exc).__name__}: {exc}"
    finally:
        stop(procs)

    result["machine"] = started_on
    if failure:
        result["aborted"] = failure
        path = write_result("push_throughput_failed", result)
        print(f"FAILED: {failure} (see {path.relative_to(ROOT)})", file=sys.stderr)
        sys.exit(1)

    kinds = ["bare_sequential", "bare_threads"] + [f"herald_{m}" for m in args.modes]
    result["medians"] = medians(result["rounds"], args.latency_ms, kinds)
    result["ratios"] = {str(lat): {m: round(result["medians"][str(lat)][f"herald_{m}"]
                                            / result["medians"][str(lat)]["bare_threads"], 2) for m in args.modes}
                        for lat in args.latency_ms}
    result["baseline"] = baseline
    correct, targets = checks(result, args, baseline)
    result["checks"], result["targets"] = correct, targets
    path = write_result("push_throughput", result)

    print_table(result, args)
    for c in correct:
        print(f"  [{'ok' if c['ok'] else 'FAIL'}] {c['what']}"
              + (f": {c['measured_ms']} ms (>= {c['target_ms']})" if "measured_ms" in c else "")
              + (f" {c['failed']}" if c.get("failed") else ""))
    for t in targets:
        verdict = {True: "PASS", False: "FAIL", None: "n/a "}[t["ok"]]
        if "measured_x" in t:
            print(f"  [{verdict}] target: {t['what']} = {t['measured_x']:.2f}x (>= {t['target_x']}x)")
        else:
            base = "no baseline with this N" if t["baseline_per_s"] is None else f"baseline {t['baseline_per_s']:,.1f}"
            print(f"  [{verdict}] target: {t['what']}: {t['measured_per_s']:,.1f} ({base})")
    print(f"wrote {path.relative_to(ROOT)}")
    if not all(c["ok"] for c in correct):
        sys.exit(1)


if __name__ == "__main__":
    main()
