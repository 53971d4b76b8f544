"""Live delivery as a person feels it: from an action to the notification on the recipient's open
page, on a machine whose CPU is oversubscribed, with the broker healthy, paused and killed.

Herald runs as a realistic local set-up, each part in its own process: the IoT emulator
(`manage.py runlocaliot`), gunicorn with several sync workers, one `db_worker` (`--interval 0.2`)
and `deliver_pending --loop 1`, on a scratch PostgreSQL database. The script starts `--busy`
processes that spin on a CPU each (4 on this 2-core machine), so everything competes for CPU.

Two users act on each other's things (comments on the other's post, likes of the other's posts,
follows and unfollows, and mentions in a comment on their own post), in two threads at `--rate`/2
each on a fixed schedule: ana's actions notify ben and ben's notify ana, so each recipient's
notifications come from one thread, one request at a time, and the k-th one gets seq base + k.
Unfollows are sent in the same schedule (the next follow needs them) but store nothing, so they
are not measured.

Each recipient has an open page: paho over WebSocket with credentials from
`POST /api/notifications/credentials/`, behaving as notifier/static/notifier/live.js in this
checkout does (its timing constants are read from the file, see page_policy): after a drop it
reconnects with fresh credentials on the script's schedule; after every (re)connect it catches up
with `GET /api/notifications/?after_seq=<last seq>`, and it does the same when a pushed seq skips
one and on the script's slow timer, one catch-up at a time. An event counts as shown by whichever
comes first: its push, or a catch-up whose `last_seq` covers it.

Scenarios (`--scenario`, all three by default), each on a fresh set of processes and users:
- load: the busy CPU only;
- pause: the emulator is stopped (SIGSTOP) for 0.5 s in the middle of the run, then continued;
- kill: the emulator is killed (SIGKILL) in the middle, and started again on the same ports 5 s
  later; it is back when its ports accept connections again.
An event made while the broker is unhealthy is measured from the broker's return, one made in the
3 s before the fault and not shown before it gets until 3 s after the return; every other event is
measured from just before its request.

Targets: p99 <= 500 ms under load; no event shown later than 3 s (after the event, or after the
broker's return); none lost (not shown after --final-wait seconds) in any scenario.

    python bench/live_slo.py [--events 500] [--rate 10] [--busy 4] [--workers 4] [--scenario load pause kill]

Writes bench/results/live_slo.json (after every scenario, and whatever happened) and exits 1 when
a target is missed.
"""
import argparse
import json
import os
import queue
import random
import re
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from importlib import metadata
from pathlib import Path
from urllib.parse import urlparse

import paho.mqtt.client as mqtt

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.benchlib import (  # noqa: E402
    Api, CpuMeter, bench_env, connect, free_port, machine, migrate, ms, percentile, recreate_database, scratch_url,
    start_cpu_hogs, start_db_worker, start_deliver_pending, start_gunicorn, start_localiot, steady, stop,
    write_result,
)

PASSWORD = "bench-password-42"
CREDENTIALS = "/api/notifications/credentials/"
CATCH_UP = "/api/notifications/?after_seq="
LATE_AFTER_S = 3.0
P99_TARGET_MS = 500.0
# One cycle of an actor's schedule: every slot but the unfollow stores one notification for the
# other user (the follow's item goes again with the unfollow, so the next follow is news again).
CYCLE = ["comment", "like", "mention", "comment", "follow", "like", "comment", "unfollow", "like", "comment"]
EXPECTED_STATUS = {"comment": 201, "mention": 201, "like": 201, "follow": 201, "unfollow": 204}
LIVE_JS = Path(__file__).resolve().parent.parent / "notifier" / "static" / "notifier" / "live.js"


def page_policy() -> dict:
    """How the page's script (live.js, as it is in this checkout) reconnects and re-syncs, read
    from its constants: after a drop, every FAST_RETRY_DELAY_MS (each wait between half and all of
    it) for FAST_RETRY_MS, then 1 s doubling to MAX_BACKOFF_MS (jittered the same way); a catch-up
    every SYNC_MS while the tab is visible. A constant the script does not have is a behaviour it
    does not have (None)."""
    text = LIVE_JS.read_text()

    def seconds(name):
        match = re.search(rf"var {name} = (?:Number\(options\.\w+\) \|\| )?([0-9.]+)(?: \* ([0-9.]+))?;", text)
        return None if not match else float(match.group(1)) * float(match.group(2) or 1) / 1000

    keepalive = re.search(r"var KEEPALIVE_S = (\d+);", text)
    return {"max_backoff_s": seconds("MAX_BACKOFF_MS") or 30.0, "fast_retry_s": seconds("FAST_RETRY_MS"),
            "fast_retry_delay_s": seconds("FAST_RETRY_DELAY_MS"), "sync_s": seconds("SYNC_MS"),
            "keepalive_s": int(keepalive.group(1)) if keepalive else 5}


class Page:
    """One recipient's open page: a live connection, and what it has shown, when and how.

    The paho thread only records arrivals (so a slow catch-up never delays a timestamp); this
    page's own thread does what the page's script does in between: reconnect and catch up."""

    def __init__(self, name: str, port: int, token: str, t0: float, policy: dict):
        self.name, self.t0, self.policy = name, t0, policy
        self.api = Api(port, token)  # this page's own requests (its thread, or open())
        self.probe = Api(port, token)  # the script's checks of the server's state
        self.lock = threading.Lock()
        self.shown: dict[int, tuple[float, str]] = {}  # seq -> (when, "push" | "catch-up (…)")
        self.last_seq = 0
        self.want_from = None  # a catch-up asked for, after this seq (the lowest anyone asked)
        self.client = None
        self.commands: queue.Queue = queue.Queue()
        self.closing = threading.Event()
        self.log: list[tuple[float, str]] = []  # (seconds since t0, what happened)
        self.counts = Counter()

    def note(self, what: str) -> None:
        self.log.append((round(time.perf_counter() - self.t0, 3), what))

    # -- the connection ------------------------------------------------------------------------
    def open(self) -> None:
        self._connect("connect")
        self.thread = threading.Thread(target=self._run, name=f"page-{self.name}", daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.closing.set()
        self.commands.put(("stop", None))
        self.thread.join(30)
        client, self.client = self.client, None
        if client:
            client.disconnect()
            client.loop_stop()

    def _run(self) -> None:
        sync = self.policy["sync_s"]
        next_sync = time.monotonic() + sync if sync else None
        while True:
            try:
                timeout = None if next_sync is None else max(0.0, next_sync - time.monotonic())
                command, arg = self.commands.get(timeout=timeout)
            except queue.Empty:  # the slow timer: a lost push with nothing after it
                next_sync = time.monotonic() + sync
                self.ask_catch_up(None, "catch-up (timer)")
                continue
            if command == "stop":
                return
            if command == "catch-up":
                with self.lock:
                    after, self.want_from = self.want_from, None
                if after is not None and not self.catch_up(after, arg):
                    with self.lock:  # failed: that seq is left for the next occasion
                        self.want_from = after if self.want_from is None else min(self.want_from, after)
            elif command == "dropped":
                arg.loop_stop()  # the old client's loop has ended (no automatic reconnect)
                self._reconnect()
                if sync:
                    next_sync = time.monotonic() + sync  # just caught up: the timer starts again

    def ask_catch_up(self, after: int | None, why: str) -> None:
        """One catch-up at a time, after the lowest seq anyone asked for (live.js catchUpNow)."""
        with self.lock:
            after = self.last_seq if after is None else after
            self.want_from = after if self.want_from is None else min(self.want_from, after)
        self.commands.put(("catch-up", why))

    def _reconnect(self) -> None:
        attempt, tries, dropped = 0, 0, time.monotonic()
        fast, fast_delay, most = (self.policy["fast_retry_s"], self.policy["fast_retry_delay_s"],
                                  self.policy["max_backoff_s"])
        while not self.closing.is_set():
            if fast and fast_delay and time.monotonic() - dropped < fast:
                delay = fast_delay
            else:
                delay = min(most, 1.0 * 2 ** attempt)
                attempt += 1
            delay = delay / 2 + random.random() * delay / 2
            tries += 1
            if self.closing.wait(delay):
                return
            try:
                self._connect("reconnect")
                return
            except Exception as exc:  # noqa: BLE001 - any failure means: back off and try again
                self.counts["failed_attempts"] += 1
                self.note(f"reconnect attempt {tries} failed: {str(exc)[:120]}")

    def _connect(self, why: str) -> None:
        try:
            status, creds = self.api.call("POST", CREDENTIALS)
        except OSError as exc:
            raise RuntimeError(f"credentials request failed: {exc}") from exc
        if status != 200:
            self.counts[f"credentials_{status}"] += 1
            raise RuntimeError(f"credentials {status}: {creds}")
        url = urlparse(creds["url"])
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=creds["client_id"], transport="websockets",
                             protocol=mqtt.MQTTv311, reconnect_on_failure=False)
        client.ws_set_options(path=f"{url.path}?{url.query}" if url.query else url.path)
        client.connect_timeout = 10
        subscribed, ended = threading.Event(), threading.Event()

        def on_connect(c, userdata, flags, reason, props):
            if reason.is_failure:
                ended.set()
            else:
                c.subscribe(creds["topics"]["notifications"], qos=1)

        def on_subscribe(c, userdata, mid, reasons, props):
            (ended if any(r.is_failure for r in reasons) else subscribed).set()

        def on_disconnect(c, userdata, flags, reason, props):
            ended.set()
            with self.lock:
                mine = self.client is c
                if mine:
                    self.client = None
            if mine:
                self.note(f"dropped ({reason})")
                self.counts["drops"] += 1
                self.commands.put(("dropped", c))

        client.on_connect, client.on_subscribe, client.on_disconnect = on_connect, on_subscribe, on_disconnect
        client.on_message = self._on_message
        try:
            client.connect(url.hostname, url.port, keepalive=self.policy["keepalive_s"])
        except OSError as exc:
            raise RuntimeError(f"connect failed: {exc}") from exc
        client.loop_start()
        ok = False
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not (subscribed.is_set() or ended.is_set()):
            subscribed.wait(0.05)
        if subscribed.is_set() and not ended.is_set():
            with self.lock:
                self.client = client
            ok = client.is_connected()
            if not ok:  # it went between SUBACK and here: on_disconnect did not see it as ours
                with self.lock:
                    self.client = None
        if not ok:
            client.disconnect()
            client.loop_stop()
            raise RuntimeError("no SUBACK" if not ended.is_set() else "refused or closed before SUBACK")
        self.counts[why + "s"] += 1
        self.note(f"{why}ed")
        with self.lock:
            after = self.last_seq if self.want_from is None else min(self.want_from, self.last_seq)
            self.want_from = None
        if not self.catch_up(after, f"catch-up ({why})"):
            self.ask_catch_up(after, f"catch-up ({why}, again)")

    # -- what the page shows -------------------------------------------------------------------
    def _on_message(self, client, userdata, message) -> None:
        now = time.perf_counter()
        try:
            body = json.loads(message.payload)
        except ValueError:
            return
        if body.get("type") != "notification" or not isinstance(body.get("seq"), int):
            return
        seq = body["seq"]
        with self.lock:
            self.shown.setdefault(seq, (now, "push"))
            self.counts["pushes"] += 1
            before = self.last_seq
            self.last_seq = max(before, seq)
        if seq > before + 1:  # one between them has not arrived (a push still owed): fetch it
            self.ask_catch_up(before, "catch-up (gap)")

    def catch_up(self, after: int, why: str) -> bool:
        """GET ?after_seq=…, following `next`; once the last page is read, everything up to its
        last_seq is on the page (an item withdrawn meanwhile, an unfollowed follow, included)."""
        path = CATCH_UP + str(after)
        self.counts[why] += 1
        while path:
            try:
                status, page = self.api.call("GET", path)
            except OSError as exc:
                self.note(f"{why} failed: {exc}")
                return False  # the next occasion tries again
            now = time.perf_counter()
            if status != 200:
                self.note(f"{why}: HTTP {status}")
                return False
            with self.lock:
                for item in page["results"]:
                    self.shown.setdefault(item["seq"], (now, why))
                    self.last_seq = max(self.last_seq, item["seq"])
                if not page.get("next"):
                    for seq in range(after + 1, page["last_seq"] + 1):
                        self.shown.setdefault(seq, (now, why))
            nxt = page.get("next")
            path = (urlparse(nxt).path + "?" + urlparse(nxt).query) if nxt else None
        return True

    def state_seq(self) -> int:
        """The recipient's last_seq as the server has it now."""
        status, page = self.probe.call("GET", CATCH_UP + str(2 ** 62))
        assert status == 200, page
        return page["last_seq"]


class Actor(threading.Thread):
    """One user acting on the other's things on a fixed schedule, one request at a time."""

    def __init__(self, name: str, api: Api, other: str, posts: list[int], comment_post: int, own_post: int,
                 measured: int, rate: float, delay: float, base_seq: int, t0: float):
        super().__init__(name=f"actor-{name}", daemon=True)
        self.who, self.api, self.other = name, api, other
        self.posts, self.comment_post, self.own_post = posts, comment_post, own_post
        self.rate, self.delay, self.base_seq, self.t0 = rate, delay, base_seq, t0
        self.plan = []
        while sum(kind != "unfollow" for kind in self.plan) < measured:
            self.plan.append(CYCLE[len(self.plan) % len(CYCLE)])
        self.events: list[dict] = []
        self.error: str | None = None

    def request(self, kind: str, i: int) -> tuple[int, dict]:
        if kind == "comment":
            return self.api.call("POST", f"/api/posts/{self.comment_post}/comments/", {"text": f"comment #{i}"})
        if kind == "mention":
            return self.api.call("POST", f"/api/posts/{self.own_post}/comments/", {"text": f"@{self.other} look #{i}"})
        if kind == "like":
            return self.api.call("POST", f"/api/posts/{self.posts.pop()}/like/")
        if kind == "follow":
            return self.api.call("POST", f"/api/users/{self.other}/follow/")
        return self.api.call("DELETE", f"/api/users/{self.other}/follow/")

    def run(self) -> None:
        time.sleep(max(0.0, self.t0 + self.delay - time.perf_counter()))
        seq = self.base_seq
        try:
            for i in steady(len(self.plan), self.rate):
                kind = self.plan[i]
                sent = time.perf_counter()
                try:
                    status, body = self.request(kind, i)
                except OSError as exc:
                    status, body = 0, {"error": str(exc)}
                took = time.perf_counter() - sent
                ok = status == EXPECTED_STATUS[kind]
                event = {"actor": self.who, "recipient": self.other, "kind": kind, "i": i, "sent": sent,
                         "request_s": took, "status": status, "measured": kind != "unfollow" and ok, "seq": None}
                if not ok:
                    event["error"] = str(body)[:200]
                if event["measured"]:
                    seq += 1
                    event["seq"] = seq
                self.events.append(event)
        except Exception as exc:  # noqa: BLE001 - reported, and the run fails
            self.error = repr(exc)


class Probe(threading.Thread):
    """The floor: GET /api/notifications/unread-count/ (auth, one small read, no push) on a fixed
    schedule beside the events, so a push path's time can be set against what any request takes on
    the machine as loaded as it is."""

    def __init__(self, api: Api, rate: float, until: threading.Event):
        super().__init__(name="probe", daemon=True)
        self.api, self.rate, self.until = api, rate, until
        self.took: list[float] = []

    def run(self) -> None:
        for _ in steady(10 ** 9, self.rate):
            if self.until.is_set():
                return
            took, status, _ = self.api.timed("GET", "/api/notifications/unread-count/")
            if status == 200:
                self.took.append(took)


class Fault(threading.Thread):
    """Stops or kills the emulator in the middle of the run and brings it back."""

    def __init__(self, kind: str, stack: "Stack", at: float, pause_s: float, kill_s: float):
        super().__init__(name=f"fault-{kind}", daemon=True)
        self.kind, self.stack, self.at, self.pause_s, self.kill_s = kind, stack, at, pause_s, kill_s
        self.started = self.returned = self.restart_s = None
        self.error = None

    def run(self) -> None:
        try:
            time.sleep(max(0.0, self.at - time.perf_counter()))
            pid = self.stack.emulator.pid
            self.started = time.perf_counter()
            if self.kind == "pause":
                os.kill(pid, signal.SIGSTOP)
                time.sleep(self.pause_s)
                os.kill(pid, signal.SIGCONT)
                self.returned = time.perf_counter()
            else:
                os.kill(pid, signal.SIGKILL)
                self.stack.emulator.wait()
                time.sleep(max(0.0, self.started + self.kill_s - time.perf_counter()))
                restart = time.perf_counter()
                self.stack.emulator = start_localiot(self.stack.env, stderr=self.stack.log("localiot-2"), timeout=120)
                self.returned = time.perf_counter()
                self.restart_s = self.returned - restart
        except Exception as exc:  # noqa: BLE001
            self.error = repr(exc)


class Stack:
    """Herald as under `make run`, each part in its own process, with its logs in files."""

    def __init__(self, url: str, workers: int, logdir: Path):
        self.ports = {"http": free_port(), "mqtt": free_port(), "ws": free_port(), "pub": free_port()}
        self.logdir = logdir
        self.handles = []
        self.env = bench_env(
            url, NOTIFIER_PUBLISHER="notifier.push.publisher.IotDataPublisher", TASK_BACKEND="database",
            LOCALIOT_MQTT_PORT=str(self.ports["mqtt"]), LOCALIOT_WS_PORT=str(self.ports["ws"]),
            LOCALIOT_HTTP_PORT=str(self.ports["pub"]),
        )
        self.env.pop("PUSH_RATE_LIMIT")  # pushes are real here: the setting's own default
        self.emulator = start_localiot(self.env, stderr=self.log("localiot"), timeout=120)
        self.procs = [
            start_gunicorn(self.env, self.ports["http"], workers, stderr=self.log("gunicorn")),
            start_db_worker(self.env, interval=0.2, stderr=self.log("db_worker")),
            start_deliver_pending(self.env, loop=1.0, stderr=self.log("deliver_pending")),
        ]

    def log(self, name: str):
        handle = open(self.logdir / f"{name}.log", "ab")
        self.handles.append(handle)
        return handle

    def stop(self) -> None:
        stop([self.emulator, *self.procs])
        for handle in self.handles:
            handle.close()

    def log_summary(self) -> dict:
        """Warnings and errors each process logged, by message with numbers blanked, most frequent first."""
        out = {}
        for path in sorted(self.logdir.glob("*.log")):
            counts = Counter()
            for line in path.read_text(errors="replace").splitlines():
                match = re.search(r"\b(WARNING|ERROR|CRITICAL)\b (.*)", line)
                if match:
                    text = re.sub(r"\d+(\.\d+)?", "N", match.group(2))[:160]
                    counts[f"{match.group(1)} {text}"] += 1
                elif line.startswith("Traceback"):
                    counts["Traceback"] += 1
            out[path.stem] = dict(counts.most_common(12))
        return out


class Sampler(threading.Thread):
    """The outbox and the task queue, every 0.25 s: how many pushes are owed and which ones were
    retried (attempts > 0), with the error that made them wait."""

    def __init__(self, url: str, t0: float, user_ids: dict[int, str]):
        super().__init__(name="sampler", daemon=True)
        self.url, self.t0, self.user_ids = url, t0, user_ids
        self.halt = threading.Event()
        self.timeline = []  # [t, owed, failed for good, tasks ready, tasks running]
        self.runnable = []  # processes ready to run on the whole machine (/proc/loadavg), each sample
        self.retried: dict[tuple[str, int], dict] = {}  # (recipient, seq) -> attempts, errors, first seen

    def run(self) -> None:
        with connect(self.url) as conn:
            while not self.halt.wait(0.25):
                t = round(time.perf_counter() - self.t0, 2)
                self.runnable.append(int(Path("/proc/loadavg").read_text().split()[3].split("/")[0]))
                owed, failed = conn.execute(
                    "SELECT count(*) FILTER (WHERE due_at IS NOT NULL), count(*) FILTER (WHERE due_at IS NULL)"
                    " FROM notifier_pendingpush").fetchone()
                ready, running = conn.execute(
                    "SELECT count(*) FILTER (WHERE status = 'READY'), count(*) FILTER (WHERE status = 'RUNNING')"
                    " FROM django_tasks_database_dbtaskresult").fetchone()
                self.timeline.append([t, owed, failed, ready, running])
                rows = conn.execute(
                    "SELECT n.recipient_id, n.seq, p.attempts, p.last_error FROM notifier_pendingpush p"
                    " JOIN notifier_notification n ON n.id = p.notification_id WHERE p.attempts > 0").fetchall()
                for recipient_id, seq, attempts, error in rows:
                    if recipient_id not in self.user_ids:
                        continue
                    entry = self.retried.setdefault((self.user_ids[recipient_id], seq),
                                                    {"first_seen": t, "attempts": 0, "errors": []})
                    entry["attempts"] = max(entry["attempts"], attempts)
                    error = re.sub(r'"?https?://\S+', "<url>", error or "")[:120]
                    if error and error not in entry["errors"] and len(entry["errors"]) < 3:
                        entry["errors"].append(error)

    def tasks(self) -> dict:
        with connect(self.url) as conn:
            rows = conn.execute("SELECT task_path, status, count(*) FROM django_tasks_database_dbtaskresult"
                                " GROUP BY 1, 2 ORDER BY 1, 2").fetchall()
        return {f"{path} {status}": n for path, status, n in rows}


def wait_for_tasks(url: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    with connect(url) as conn:
        while time.monotonic() < deadline:
            if not conn.execute("SELECT count(*) FROM django_tasks_database_dbtaskresult"
                                " WHERE status IN ('READY', 'RUNNING')").fetchone()[0]:
                return
            time.sleep(0.2)
    raise RuntimeError("the task queue did not drain")


def set_up_users(port: int, prefix: str, likes: int) -> dict:
    """Two users, each with a post for the other's comments, one for their own mentions, and
    `likes` posts for the other to like; made before anyone follows anyone (no new_post items)."""
    anon = Api(port)
    users = {}
    for name in (f"{prefix}_ana", f"{prefix}_ben"):
        status, body = anon.call("POST", "/api/users/", {"username": name, "password": PASSWORD})
        assert status == 201, body
        status, body = anon.call("POST", "/api/token/", {"username": name, "password": PASSWORD})
        assert status == 200, body
        api = Api(port, body["token"])
        posts = []
        for i in range(likes + 2):
            status, post = api.call("POST", "/api/posts/", {"text": f"{name}'s post {i}"})
            assert status == 201, post
            posts.append(post["id"])
        users[name] = {"token": body["token"], "api": api, "comment_post": posts[0], "own_post": posts[1],
                       "like_posts": posts[2:]}
    return users


def run_scenario(kind: str, args, url: str, logroot: Path) -> dict:
    logdir = logroot / kind
    logdir.mkdir()
    stack = Stack(url, args.workers, logdir)
    hogs, pages, sampler = [], [], None
    try:
        per_actor = args.events // 2
        users = set_up_users(stack.ports["http"], kind, likes=per_actor * 3 // 9 + 5)
        wait_for_tasks(url)
        names = list(users)
        with connect(url) as conn:
            user_ids = dict(conn.execute("SELECT id, username FROM feed_user WHERE username = ANY(%s)",
                                         [names]).fetchall())
        load_before = os.getloadavg()
        hogs = start_cpu_hogs(args.busy)
        t0 = time.perf_counter()
        pages = {name: Page(name, stack.ports["http"], users[name]["token"], t0, args.policy) for name in names}
        for page in pages.values():
            page.open()
        # Warm-up under load: every gunicorn worker serves its first requests before measuring.
        for actor, other in ((names[0], names[1]), (names[1], names[0])):
            for i in range(10):
                status, body = users[actor]["api"].call(
                    "POST", f"/api/posts/{users[other]['comment_post']}/comments/", {"text": f"warm-up {i}"})
                assert status == 201, body
        base = {}
        for name, page in pages.items():
            base[name] = page.state_seq()
            deadline = time.monotonic() + 30
            while page.last_seq < base[name] and time.monotonic() < deadline:
                time.sleep(0.05)
        sampler = Sampler(url, t0, user_ids)
        sampler.start()
        start = time.perf_counter() + 0.5
        actors = [
            Actor(names[0], users[names[0]]["api"], names[1], users[names[1]]["like_posts"],
                  users[names[1]]["comment_post"], users[names[0]]["own_post"], per_actor, args.rate / 2, 0.0,
                  base[names[1]], start),
            Actor(names[1], users[names[1]]["api"], names[0], users[names[0]]["like_posts"],
                  users[names[0]]["comment_post"], users[names[1]]["own_post"], args.events - per_actor,
                  args.rate / 2, 1.0 / args.rate, base[names[0]], start),
        ]
        slots = sum(len(a.plan) for a in actors)
        fault = None
        if kind in ("pause", "kill"):
            fault = Fault(kind, stack, start + slots / 2 / args.rate, args.pause, args.kill)
            fault.start()
        meter = CpuMeter(urlparse(url).path.lstrip("/"), gunicorn=stack.procs[0].pid,
                         db_workers=(stack.procs[1].pid, stack.procs[2].pid))
        metered = time.perf_counter()
        meter.start()
        done = threading.Event()
        probe = Probe(Api(stack.ports["http"], users[names[0]]["token"]), args.probe_rate, done)
        if args.probe_rate:
            probe.start()
        for actor in actors:
            actor.start()
        for actor in actors:
            actor.join()
        done.set()
        cpu = meter.stop()
        cpu["wall_s"] = round(time.perf_counter() - metered, 2)
        if fault:
            fault.join()
        last_sent = max(e["sent"] for a in actors for e in a.events)
        events = [e for a in actors for e in a.events]
        measured = [e for e in events if e["measured"]]
        deadline = last_sent + args.final_wait
        while time.perf_counter() < deadline:
            if all(e["seq"] in pages[e["recipient"]].shown for e in measured):
                break
            time.sleep(0.1)
        sampler.halt.set()
        sampler.join()
        load_after = os.getloadavg()
        final_seq = {name: page.state_seq() for name, page in pages.items()}
        result = summarize(kind, args, t0, events, pages, fault, sampler, stack, base, final_seq, actors,
                           load_before, load_after)
        result["cpu_cores"] = cpu
        result["probe_get_ms"] = ({"n": len(probe.took), "p50": ms(percentile(probe.took, 50)),
                                   "p99": ms(percentile(probe.took, 99)), "max": ms(max(probe.took))}
                                  if probe.took else None)
        result["cpu_ms_per_request"] = {
            group: round(cpu[group] * cpu["wall_s"] * 1000 / len(events), 1) for group in ("gunicorn", "postgres", "db_worker")}
        return result
    finally:
        for page in (pages.values() if isinstance(pages, dict) else []):
            page.close()
        if sampler and sampler.is_alive():
            sampler.halt.set()
        stop(hogs)
        stack.stop()


def summarize(kind, args, t0, events, pages, fault, sampler, stack, base, final_seq, actors,
              load_before, load_after) -> dict:
    rel = lambda t: round(t - t0, 3)  # noqa: E731
    fault_start = fault.started if fault else None
    fault_end = fault.returned if fault else None
    rows = []
    for e in events:
        if not e["measured"]:
            continue
        shown = pages[e["recipient"]].shown.get(e["seq"])
        ref, deadline_ref = e["sent"], e["sent"]
        if fault_start is not None and fault_end is not None:
            if fault_start <= e["sent"] <= fault_end:
                ref = deadline_ref = fault_end  # made while the broker was unhealthy
            elif fault_start - LATE_AFTER_S < e["sent"] < fault_start and (shown is None or shown[0] > fault_start):
                deadline_ref = fault_end  # in flight when the broker went away
        row = {"actor": e["actor"], "kind": e["kind"], "seq": e["seq"], "sent": rel(e["sent"]),
               "request_ms": ms(e["request_s"]), "shown": rel(shown[0]) if shown else None,
               "how": shown[1] if shown else None,
               "latency_s": (max(0.0, shown[0] - ref)) if shown else None,
               "from_event_s": (shown[0] - e["sent"]) if shown else None,
               "late": shown is None or shown[0] - deadline_ref > LATE_AFTER_S}
        retried = sampler.retried.get((e["recipient"], e["seq"]))
        if retried:
            row["push_retried"] = retried
        rows.append(row)
    shown = [r for r in rows if r["shown"] is not None]
    latencies = [r["latency_s"] for r in shown]
    lost = [r for r in rows if r["shown"] is None]
    late = [r for r in rows if r["late"]]
    how = Counter(r["how"] for r in shown)
    errors = [e for e in events if e["status"] != EXPECTED_STATUS[e["kind"]]]
    requests = [e["request_s"] for e in events]
    expected_final = {name: base[name] + sum(1 for e in events if e["measured"] and e["recipient"] == name)
                      for name in pages}
    stats = {"n": len(latencies)}
    if latencies:
        stats.update(p50=ms(percentile(latencies, 50)), p99=ms(percentile(latencies, 99)), max=ms(max(latencies)))
    result = {
        "scenario": kind,
        "events": len(rows),
        "unmeasured_unfollows": sum(1 for e in events if e["kind"] == "unfollow"),
        "kinds": dict(Counter(r["kind"] for r in rows)),
        "offered_rate_per_s": args.rate,
        "duration_s": round(max(e["sent"] for e in events) - min(e["sent"] for e in events), 2),
        "shown_ms": stats,
        "late": len(late),
        "lost": len(lost),
        "shown_by": dict(how),
        "shown_by_catch_up": sum(n for k, n in how.items() if k.startswith("catch-up")),
        "request_ms": {"p50": ms(percentile(requests, 50)), "p99": ms(percentile(requests, 99)),
                       "max": ms(max(requests))},
        "request_errors": len(errors),
        "request_error_samples": [{k: e.get(k) for k in ("kind", "status", "error")} for e in errors[:5]],
        "actor_errors": [a.error for a in actors if a.error],
        "seq_check": {"expected": expected_final, "server": final_seq, "ok": expected_final == final_seq},
        "fault": None if not fault else {
            "kind": kind, "started": rel(fault.started) if fault.started else None,
            "returned": rel(fault.returned) if fault.returned else None,
            "unhealthy_s": round(fault.returned - fault.started, 3) if fault.returned and fault.started else None,
            "restart_s": round(fault.restart_s, 3) if fault.restart_s else None, "error": fault.error,
            "events_during": sum(1 for r in rows if fault.started and fault.returned
                                 and fault.started - t0 <= r["sent"] <= fault.returned - t0),
        },
        "pages": {name: {"counts": dict(p.counts), "log": p.log[:40]} for name, p in pages.items()},
        "pushes_retried": len([r for r in rows if "push_retried" in r]),
        "late_by": dict(Counter(r["how"] or "never shown" for r in late)),
        "recovery": recovery(fault, pages, sampler, t0),
        "late_events": [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()} for r in late[:25]],
        "slowest": [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()}
                    for r in sorted(shown, key=lambda r: -r["latency_s"])[:10]],
        "outbox_timeline": sampler.timeline[::4],  # [t, owed, failed, tasks ready, tasks running], every 1 s
        "tasks": sampler.tasks(),
        "logs": stack.log_summary(),
        "load_average": {"before": [round(x, 2) for x in load_before], "after": [round(x, 2) for x in load_after]},
        "runnable_processes": {"mean": round(sum(sampler.runnable) / max(1, len(sampler.runnable)), 1),
                               "max": max(sampler.runnable, default=0)},
    }
    missed = []
    if kind == "load" and latencies and stats["p99"] > P99_TARGET_MS:
        missed.append(f"p99 {stats['p99']} ms > {P99_TARGET_MS:.0f} ms")
    if late:
        missed.append(f"{len(late)} shown later than {LATE_AFTER_S:.0f} s")
    if lost:
        missed.append(f"{len(lost)} lost")
    if errors or result["actor_errors"] or not result["seq_check"]["ok"] or (fault and fault.error):
        missed.append("the run itself went wrong (request errors, seq check or fault)")
    result["missed"] = missed
    return result


def recovery(fault, pages, sampler, t0) -> dict | None:
    """After the broker's return: when each page was live again, and when the outbox was empty."""
    if not fault or not fault.returned:
        return None
    back = fault.returned - t0
    live_again = {}
    for name, page in pages.items():
        times = [t for t, what in page.log if what in ("reconnected", "connected") and t > fault.started - t0]
        live_again[name] = round(times[0] - back, 3) if times else None
    drained = next((t for t, owed, *_ in sampler.timeline if t > back and owed == 0), None)
    return {"pages_live_after_s": live_again, "outbox_empty_after_s": round(drained - back, 2) if drained else None,
            "max_owed": max((owed for _, owed, *_ in sampler.timeline), default=0)}


def versions() -> dict:
    out = {}
    for name in ("Django", "gunicorn", "paho-mqtt", "boto3", "amqtt", "psycopg", "django-tasks-db"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=500, help="measured events per scenario [500]")
    parser.add_argument("--rate", type=float, default=10.0, help="actions per second, both users together [10]")
    parser.add_argument("--busy", type=int, default=4, help="CPU-spinning processes during the run [4]")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn sync workers [4]")
    parser.add_argument("--scenario", nargs="+", choices=["load", "pause", "kill"], default=["load", "pause", "kill"])
    parser.add_argument("--pause", type=float, default=0.5, help="seconds the emulator is stopped [0.5]")
    parser.add_argument("--kill", type=float, default=5.0, help="seconds the emulator is dead [5]")
    parser.add_argument("--probe-rate", type=float, default=2.0,
                        help="GETs of the unread count per second beside the events, the floor (0: none) [2]")
    parser.add_argument("--final-wait", type=float, default=60.0, help="seconds after the last event [60]")
    parser.add_argument("--out", default="live_slo", help="results file name under bench/results/, no .json")
    args = parser.parse_args()

    args.policy = page_policy()
    url = scratch_url("live_slo")
    recreate_database(url)
    migrate(bench_env(url))
    info = machine()
    info.update(versions=versions(), load_average_before=[round(x, 2) for x in os.getloadavg()])
    result = {"benchmark": "live_slo",
              "settings": {"events": args.events, "rate_per_s": args.rate, "busy_processes": args.busy,
                           "gunicorn_workers": args.workers, "db_worker_interval_s": 0.2, "deliver_pending_loop_s": 1,
                           "probe_rate_per_s": args.probe_rate, "pause_s": args.pause, "kill_s": args.kill, "final_wait_s": args.final_wait,
                           "late_after_s": LATE_AFTER_S, "p99_target_ms": P99_TARGET_MS,
                           "page_policy": args.policy},
              "machine": info, "scenarios": {}}
    failed = []
    logroot = Path(tempfile.mkdtemp(prefix="herald-live-slo-"))
    try:
        for kind in args.scenario:
            print(f"== {kind}", flush=True)
            try:
                result["scenarios"][kind] = run_scenario(kind, args, url, logroot)
            except Exception as exc:  # noqa: BLE001 - recorded, the other scenarios still run
                result["scenarios"][kind] = {"scenario": kind, "error": repr(exc), "missed": ["did not complete"]}
            result["machine"]["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
            write_result(args.out, result)
            print_row(kind, result["scenarios"][kind])
    finally:
        result["machine"]["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
        result["logs_kept_in"] = str(logroot)
        failed = [f"{k}: {'; '.join(s['missed'])}" for k, s in result["scenarios"].items() if s.get("missed")]
        result["passed"] = not failed
        path = write_result(args.out, result)
    print_table(result)
    print(f"wrote {path}")
    if failed:
        print("missed: " + " | ".join(failed), file=sys.stderr)
        sys.exit(1)


def print_row(kind: str, s: dict) -> None:
    if "error" in s:
        print(f"{kind}: failed: {s['error']}")
    else:
        print(f"{kind}: p50 {s['shown_ms'].get('p50')} ms, p99 {s['shown_ms'].get('p99')} ms, "
              f"max {s['shown_ms'].get('max')} ms, late {s['late']}, lost {s['lost']}, "
              f"by catch-up {s['shown_by_catch_up']}", flush=True)


def print_table(result: dict) -> None:
    print()
    print(f"{'scenario':<9}{'events':>7}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>10}{'>3 s':>6}{'lost':>6}"
          f"{'catch-up':>10}{'drops':>7}{'GET p99':>9}  targets")
    for kind, s in result["scenarios"].items():
        if "error" in s:
            print(f"{kind:<9} failed: {s['error']}")
            continue
        st = s["shown_ms"]
        drops = sum(p["counts"].get("drops", 0) for p in s["pages"].values())
        floor = (s.get("probe_get_ms") or {}).get("p99", "-")
        print(f"{kind:<9}{s['events']:>7}{st.get('p50', '-'):>9}{st.get('p99', '-'):>9}{st.get('max', '-'):>10}"
              f"{s['late']:>6}{s['lost']:>6}{s['shown_by_catch_up']:>10}{drops:>7}{floor:>9}  "
              f"{'met' if not s['missed'] else 'MISSED: ' + '; '.join(s['missed'])}")


if __name__ == "__main__":
    main()
