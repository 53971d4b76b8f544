"""`python manage.py listen` / notifier.cli.listener: awsiotsdk subscriber against the real local emulator."""
import io
import json
import socket
import subprocess
import sys
import threading
import time
import types
import unicodedata
from concurrent.futures import Future
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from feed import services
from notifier.cli import listener as listener_module
from notifier.cli.listener import (
    HttpSource,
    IssuerSource,
    Listener,
    ListenError,
    build_connection,
    clean,
    format_message,
    refresh_delay,
)
from notifier.models import Notification

ROOT = Path(__file__).resolve().parent.parent
E2E = pytest.mark.django_db(transaction=True)


# -- helpers ----------------------------------------------------------------------------------------

class Background:
    """Runs fn() in a thread and keeps its result or exception for join()."""

    def __init__(self, fn):
        self.result = self.error = None
        self.thread = threading.Thread(target=self._run, args=(fn,), daemon=True)
        self.thread.start()

    def _run(self, fn):
        try:
            self.result = fn()
        except BaseException as exc:
            self.error = exc

    def join(self, timeout=15.0):
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "still running"
        if self.error is not None:
            raise self.error
        return self.result


def wait_for(predicate, what, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    pytest.fail(f"timed out waiting for {what}")


def start(listener, timeout=15.0):
    running = Background(lambda: listener.run(timeout=timeout))
    wait_for(lambda: listener.live.is_set() or not running.thread.is_alive(), "the listener to subscribe")
    assert listener.live.is_set(), running.join()
    return running


def new_listener(user, **kwargs):
    out, err = io.StringIO(), io.StringIO()
    return Listener(IssuerSource(user), out=out, err=err, **kwargs), out, err


def listen_command(*args, **env):
    out, err = io.StringIO(), io.StringIO()
    running = Background(lambda: call_command("listen", *args, stdout=out, stderr=err))
    return running, out, err


def comment(api, user, post, text):
    r = api.as_(user).post(f"/api/posts/{post.pk}/comments/", {"text": text}, format="json")
    assert r.status_code == 201, r.content
    return r.json()


def token_for(user):
    from rest_framework.authtoken.models import Token

    return Token.objects.get_or_create(user=user)[0].key


def local_creds(**overrides):
    expires = (datetime.now(timezone.utc) + timedelta(seconds=900)).isoformat().replace("+00:00", "Z")
    creds = {"backend": "local", "client_id": "herald-u1-abc", "url": "ws://127.0.0.1:8083/mqtt",
             "topics": {"notifications": "herald/dev/users/1/notifications",
                        "post_comments": "herald/dev/posts/+/comments"},
             "expires_at": expires}
    creds.update(overrides)
    return creds


# -- end to end: the local emulator, the real boto3 publisher, awscrt over WebSocket -------------------

@E2E
def test_listener_prints_a_comment_as_it_happens(api, alice, bob, live_push):
    post = services.create_post(alice, "hello")
    listener, out, err = new_listener(alice, count=1)
    running = start(listener)
    started = time.monotonic()
    comment(api, bob, post, "is anyone there?")
    assert running.join() == 1
    assert time.monotonic() - started < 3
    n = Notification.objects.get(recipient=alice)
    [line] = out.getvalue().splitlines()
    assert line.endswith(
        f"  #{n.pk} comment  bob: Bob commented on your post: “is anyone there?”  {n.url}  (unread 1)"
    )
    assert line[:8] == n.created_at.astimezone().strftime("%H:%M:%S")
    assert "listening as alice on ws://127.0.0.1:" in err.getvalue()


@E2E
@pytest.mark.parametrize("mode", ["direct", "url"])
def test_command_catches_up_then_prints_live_without_duplicates(mode, request, api, alice, bob, live_push):
    post = services.create_post(alice, "hello")
    services.add_comment(bob, post.pk, "before the listener")
    if mode == "url":
        server = request.getfixturevalue("live_server")
        args = ["--url", server.url, "--token", token_for(alice), "alice"]
    else:
        args = ["ALICE"]  # usernames are matched case-insensitively
    running, out, err = listen_command(*args, "--since", "0", "--count", "2", "--timeout", "10")
    wait_for(lambda: "before the listener" in out.getvalue() or not running.thread.is_alive(), "the catch-up")
    assert "listening as alice" in err.getvalue(), running.join()
    comment(api, bob, post, "after it")
    running.join()
    lines = out.getvalue().splitlines()
    assert len(lines) == 2, lines
    assert "“before the listener”" in lines[0] and "(unread 1)" in lines[0]
    assert "“after it”" in lines[1] and "(unread 2)" in lines[1]


@E2E
def test_command_with_url_prints_only_new_notifications_by_default(api, alice, bob, live_push, live_server):
    post = services.create_post(alice, "hello")
    services.add_comment(bob, post.pk, "old news")
    running, out, err = listen_command("--url", live_server.url, "--token", token_for(alice),
                                       "--once", "--timeout", "10")
    wait_for(lambda: "listening as" in err.getvalue() or not running.thread.is_alive(), "the subscription")
    comment(api, bob, post, "fresh")
    running.join()
    [line] = out.getvalue().splitlines()
    assert "“fresh”" in line and "(unread 2)" in line


@E2E
def test_control_characters_never_reach_the_terminal(api, alice, bob, live_push):
    post = services.create_post(alice, "hello")
    listener, out, _ = new_listener(alice, count=1)
    running = start(listener)
    comment(api, bob, post, "\x1b]0;owned\x07\x1b[2J hi\u202e there\r\nfake line \x9b31m")
    running.join()
    text = out.getvalue()
    assert text.endswith("\n") and text.count("\n") == 1
    body = text[:-1]
    assert not [ch for ch in body if unicodedata.category(ch) == "Cc"]
    assert "\u202e" not in body
    assert "hi there" in body and "fake line" in body


@E2E
def test_refreshes_credentials_before_they_expire_and_keeps_receiving(api, alice, bob, settings, live_push):
    settings.IOT_CREDENTIALS_TTL = 900  # STS's minimum...
    post = services.create_post(alice, "hello")
    closed = []

    def build(creds, **callbacks):
        conn = build_connection(creds, on_connection_closed=lambda connection, callback_data: closed.append(connection),
                                **callbacks)
        built.append(conn)
        return conn

    built = []
    out, err = io.StringIO(), io.StringIO()
    listener = Listener(IssuerSource(alice), out=out, err=err, count=1, verbosity=2, build=build)
    listener.refresh_lead = 898  # ...refreshed 898 s before expiry: after 2 s
    # It ends at its one message: the generous limits only matter on a machine too busy to keep time.
    running = start(listener, timeout=120)
    wait_for(lambda: listener.connections >= 2, "a refresh", timeout=60)
    wait_for(lambda: built[0] in closed, "the first connection to close", timeout=60)  # make before break
    comment(api, bob, post, "still there?")
    running.join()
    assert listener.credentials_fetched >= 2
    assert "“still there?”" in out.getvalue() and len(out.getvalue().splitlines()) == 1
    assert "fresh credentials" in err.getvalue()


class Relay:
    """A TCP relay in front of the emulator's WebSocket port that can cut the line (a network drop)."""

    def __init__(self, target_port):
        self.target_port = target_port
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.open = True
        self.sockets = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            if not self.open:
                client.close()  # refused while the line is down
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src, dst):
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self):
        self.open = False
        for s in self.sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.sockets = []

    def close(self):
        self.cut()
        self.server.close()


@E2E
def test_after_a_drop_it_reconnects_with_fresh_credentials_and_catches_up(api, alice, bob, settings, live_push):
    from notifier.envelope import encode, notification_message
    from notifier.push.publisher import get_publisher
    from notifier.topics import user_topic

    relay = Relay(live_push.ws_port)
    settings.LOCALIOT_WS_PORT = relay.port  # the credentials' url points at the relay
    post = services.create_post(alice, "hello")
    listener, out, err = new_listener(alice, count=2)
    listener.backoff_start, listener.backoff_max = 0.1, 0.4
    running = start(listener)
    try:
        relay.cut()
        wait_for(lambda: not listener.live.is_set(), "the drop")
        comment(api, bob, post, "while you were away")  # pushed, but nobody is subscribed
        n = Notification.objects.get(recipient=alice)
        time.sleep(0.3)  # a few refused reconnects
        fetched = listener.credentials_fetched
        relay.open = True
        wait_for(lambda: "while you were away" in out.getvalue(), "the catch-up")
        assert listener.credentials_fetched > fetched
        wait_for(listener.live.is_set, "the new subscription")
        # The same notification pushed again (a retried delivery) is not printed twice.
        get_publisher().publish(user_topic(alice.pk), encode(notification_message(n, 1)))
        comment(api, bob, post, "welcome back")
        running.join()
    finally:
        listener.stop()
        relay.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 2, lines
    assert "“while you were away”" in lines[0] and "“welcome back”" in lines[1]
    err_text = err.getvalue()
    assert "connection lost; reconnecting" in err_text and "reconnected as alice" in err_text


# -- credentials over HTTP: errors say what is wrong --------------------------------------------------

@E2E
def test_refused_token_is_a_clear_error(alice, live_server, monkeypatch):
    monkeypatch.setenv("HERALD_TOKEN", "not-a-token")
    with pytest.raises(CommandError, match=r"refused the token \(401"):
        call_command("listen", "--url", live_server.url, "--timeout", "5", stdout=io.StringIO(), stderr=io.StringIO())


@E2E
def test_throttled_and_unavailable_credentials_are_retried_later(alice, live_server, live_push, monkeypatch):
    from config.throttles import CredentialsThrottle
    from notifier.aws import issuer as credentials

    source = HttpSource(live_server.url, token_for(alice))
    monkeypatch.setattr(CredentialsThrottle, "THROTTLE_RATES", {"credentials": "1/min"})
    assert source.fetch()["backend"] == "local"
    with pytest.raises(ListenError) as throttled:
        source.fetch()
    assert not throttled.value.permanent and "429" in str(throttled.value)
    assert 50 <= throttled.value.retry_after <= 60

    monkeypatch.setattr(CredentialsThrottle, "THROTTLE_RATES", {"credentials": "100/min"})

    class Down:
        def issue(self, user):
            raise credentials.CredentialsUnavailable("IoT credentials are unavailable right now.")

    monkeypatch.setattr(credentials, "get_issuer", lambda: Down())
    with pytest.raises(ListenError) as unavailable:
        source.fetch()
    assert not unavailable.value.permanent
    assert "503" in str(unavailable.value) and "unavailable right now" in str(unavailable.value)


def test_http_source_refuses_other_schemes_and_a_missing_token():
    with pytest.raises(ListenError, match="http"):
        HttpSource("file:///etc/passwd", "t")
    with pytest.raises(ListenError, match="token"):
        HttpSource("http://127.0.0.1:8000", "")


# -- the loop, without a network ----------------------------------------------------------------------

class FakeConnection:
    def __init__(self, creds):
        self.creds = creds
        self.disconnected = False

    def connect(self):
        return done({"session_present": False})

    def subscribe(self, topic, qos, callback=None):
        self.callback = callback
        return done({"packet_id": 1, "topic": topic, "qos": qos}), 1

    def disconnect(self):
        self.disconnected = True
        return done({})


def done(result):
    future = Future()
    future.set_result(result)
    return future


class ScriptedSource:
    """Hands out what `script` says, in order: credentials dicts or exceptions to raise."""

    label = "alice"

    def __init__(self, *script):
        self.script = list(script)
        self.calls = []

    def fetch(self):
        self.calls.append(time.monotonic())
        item = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if isinstance(item, Exception):
            raise item
        return item

    def last_seq(self):
        return 0

    def missed(self, after_seq):
        return []

    def close(self):
        pass


def test_retry_after_is_honoured_and_permanent_errors_end_the_loop():
    source = ScriptedSource(ListenError("Too many credential requests (429).", retry_after=0.5), local_creds())
    built = []
    listener = Listener(source, out=io.StringIO(), err=io.StringIO(),
                        build=lambda creds, **cb: built.append(FakeConnection(creds)) or built[-1])
    listener.backoff_start = 0.01
    running = Background(lambda: listener.run(timeout=5))
    wait_for(listener.live.is_set, "the connection")
    listener.stop()
    running.join()
    first, second = source.calls[:2]
    assert second - first >= 0.5
    assert built[0].disconnected  # stop() disconnects

    refused = ScriptedSource(ListenError("Herald refused the token (401).", permanent=True))
    with pytest.raises(ListenError, match="401"):
        Listener(refused, out=io.StringIO(), err=io.StringIO()).run(timeout=5)


def test_messages_are_deduplicated_and_unknown_ones_ignored():
    listener = Listener(ScriptedSource(local_creds()), out=io.StringIO(), err=io.StringIO(), count=3)
    message = {"v": 1, "type": "notification", "seq": 5, "id": 9, "kind": "like", "actor": {"username": "bob"},
               "text": "Bob liked your post", "url": "/posts/1/", "created_at": "2026-01-01T10:00:00+00:00",
               "unread_count": 2}
    read = {"v": 1, "type": "read", "seq": 5, "ids": None, "all": True, "unread_count": 0}
    for payload in (message, message, read, read, {"v": 2, "type": "notification"}, {"v": 1, "type": "comment"}):
        listener._on_message(topic="t", payload=json.dumps(payload).encode())
    listener._on_message(topic="t", payload=b"\xff not json")
    lines = listener.out.getvalue().splitlines()
    assert len(lines) == 2 and lines[0].endswith("#9 like  bob: Bob liked your post  /posts/1/  (unread 2)")
    assert lines[1].endswith("  read: unread 0")
    assert listener.printed == 1 and listener._last_seq == 5


def test_format_message_strips_control_characters_everywhere():
    line = format_message({
        "v": 1, "type": "notification", "seq": 1, "id": 2, "kind": "comment\x1b[0m",
        "actor": {"username": "mal\x07lory"}, "text": "a\x1b[31mred\x9b2J\ud800 \u202egnp.exe",
        "url": "/posts/1/\n/evil", "created_at": "not a date", "unread_count": 1,
    })
    assert "\x1b" not in line and "\x07" not in line and "\x9b" not in line and "\ud800" not in line
    assert "\u202e" not in line and "\n" not in line
    assert "#2 comment[0m  mallory: a[31mred2J gnp.exe  /posts/1/ /evil  (unread 1)" in line
    assert format_message({"v": True, "type": "read", "unread_count": 0}) is None  # True is not 1
    assert format_message({"v": 1, "type": "notification", "id": "x", "seq": 1}) is None
    assert format_message(["v", 1]) is None
    assert clean("x" * 2000).endswith("…") and len(clean("x" * 2000)) == 1000


def test_refresh_delay():
    now = time.time()

    def at(seconds):
        return datetime.fromtimestamp(now + seconds, tz=timezone.utc).isoformat().replace("+00:00", "Z")

    assert refresh_delay(at(900), now=now) == pytest.approx(840)
    assert refresh_delay(at(62), now=now) == pytest.approx(2)
    assert refresh_delay(at(10), now=now) == 2  # never sooner than MIN_REFRESH_DELAY
    with pytest.raises(ListenError):
        refresh_delay("soon", now=now)


# -- how connections are built (no network) ------------------------------------------------------------

AWS_CREDS = local_creds(
    backend="aws", client_id="herald-u1-xyz",
    url="wss://abc-ats.iot.eu-west-1.amazonaws.com/mqtt?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=ab"
        "&X-Amz-Security-Token=tok%2Fen",
    aws={"access_key_id": "ASIAEXAMPLE", "secret_access_key": "secret", "session_token": "session",
         "region": "eu-west-1", "endpoint": "abc-ats.iot.eu-west-1.amazonaws.com"},
)


class Headers(dict):
    def set(self, name, value):
        self[name] = value


class Handshake:
    """What awscrt hands a WebSocket handshake transform: the request to change, and set_done()."""

    def __init__(self):
        self.http_request = types.SimpleNamespace(path="/", headers=Headers())
        self.done = False

    def set_done(self, error=None):
        self.done = error is None


def handshake(connection) -> tuple[str, str]:
    """(path, Host header) of the connection's WebSocket handshake."""
    args = Handshake()
    connection._ws_handshake_transform_cb(transform_args=args)
    assert args.done
    return args.http_request.path, args.http_request.headers["Host"]


def test_one_presigned_path_for_aws_and_the_emulator():
    """Both connect over the vended URL as it is (signature and session token in the query), as a
    browser does: TLS for wss://, none for the emulator's ws://; no username, password or metrics."""
    aws = build_connection(dict(AWS_CREDS))  # the real builder; nothing connects
    assert (aws.host_name, aws.port, aws.client_id, aws.clean_session) == (
        "abc-ats.iot.eu-west-1.amazonaws.com", 443, "herald-u1-xyz", True)
    assert aws._use_websockets and aws.client.tls_ctx is not None and aws._metrics is None
    assert (aws.username, aws.password) == (None, None)
    assert handshake(aws) == ("/mqtt?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=ab&X-Amz-Security-Token=tok%2Fen",
                              "abc-ats.iot.eu-west-1.amazonaws.com")

    local = build_connection(local_creds(url="ws://127.0.0.1:8083/mqtt?X-Amz-Signature=cd"))
    assert (local.host_name, local.port, local.client_id) == ("127.0.0.1", 8083, "herald-u1-abc")
    assert (local.username, local.password) == (None, None)
    assert local._use_websockets and local.client.tls_ctx is None and local._metrics is None
    assert handshake(local) == ("/mqtt?X-Amz-Signature=cd", "127.0.0.1:8083")  # the signed Host, port included


def test_bad_credentials_are_refused_before_connecting():
    with pytest.raises(ListenError, match="lack url"):
        listener_module.check_credentials({k: v for k, v in local_creds().items() if k != "url"})
    with pytest.raises(ListenError, match="Unknown credentials backend"):
        listener_module.check_credentials(local_creds(backend="mqtt"))
    with pytest.raises(ListenError, match="Unsupported credentials url"):
        build_connection(local_creds(url="https://127.0.0.1/mqtt"))


# -- the command's arguments ------------------------------------------------------------------------------

@pytest.mark.django_db
def test_command_argument_errors(alice, monkeypatch):
    monkeypatch.delenv("HERALD_TOKEN", raising=False)
    quiet = {"stdout": io.StringIO(), "stderr": io.StringIO()}
    with pytest.raises(CommandError, match="No user named 'nobody'"):
        call_command("listen", "nobody", **quiet)
    with pytest.raises(CommandError, match="USERNAME"):
        call_command("listen", **quiet)
    with pytest.raises(CommandError, match="token"):
        call_command("listen", "alice", "--url", "http://127.0.0.1:9", **quiet)
    with pytest.raises(CommandError, match="--count"):
        call_command("listen", "alice", "--count", "0", **quiet)


def test_awscrt_is_not_imported_by_the_web_process():
    code = (
        "import os, sys, django\n"
        "os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'config.settings')\n"
        "django.setup()\n"
        "import config.urls, config.wsgi, notifier.cli.listener, notifier.management.commands.listen\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('awscrt', 'awsiot', '_awscrt')))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], check=False, cwd=ROOT, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.django_db
def test_a_database_that_does_not_answer_while_vending_is_retried_not_fatal(alice, monkeypatch):
    """Vending credentials in-process writes a row; a lock or a restart of the database at that
    moment is a wait-and-retry, like a network error, not the end of the listener."""
    from django.db import OperationalError

    from notifier import live_clients

    def locked(user):
        raise OperationalError("database table is locked")

    monkeypatch.setattr(live_clients, "vend", locked)
    with pytest.raises(listener_module.ListenError) as raised:
        listener_module.IssuerSource(alice).fetch()
    assert not raised.value.permanent and "did not answer" in str(raised.value)
