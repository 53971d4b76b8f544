"""Live push end to end: API write → boto3 iot-data Publish → emulator → the recipient's MQTT client."""
import json
import queue
import time
from datetime import datetime, timezone
from urllib.parse import parse_qs, urlsplit

import pytest
from django.core.management import call_command
from django.utils import timezone as dj_timezone

from feed import services
from notifier.localiot.config import options_from_settings
from notifier.localiot.server import LocalIoT
from notifier.models import Notification
from notifier.aws.local import root_credentials as local_credentials

from .helpers import make_due, push_of
from .live import free_port, point_settings_at
from .mqtt_client import Client

pytestmark = pytest.mark.django_db

SUBACK_FAILURE = 0x80


def credentials(api, user):
    r = api.as_(user).post("/api/notifications/credentials/")
    assert r.status_code == 200, r.content
    return r.json()


def subscriber(creds, port=None, transport="websockets"):
    """A client on the vended presigned URL: over WebSocket as a browser, or over TCP with the URL
    as the CONNECT password."""
    if transport == "websockets":
        client = Client.over_websocket(creds["url"], creds["client_id"])
    else:
        client = Client.over_tcp(port, creds["url"], creds["client_id"])
    assert client.connect() == 0
    assert client.subscribe(creds["topics"]["notifications"]) == 1
    return client


def payload(message) -> dict:
    return json.loads(message.payload.decode("utf-8"))


def test_credentials_shape(api, alice, settings, live_push):
    """The production shape from the production issuer: STS keys and a SigV4-presigned URL."""
    creds = credentials(api, alice)
    assert set(creds) == {"backend", "client_id", "url", "topics", "expires_at", "aws"}
    assert creds["backend"] == "local"
    url = urlsplit(creds["url"])
    assert (url.scheme, url.netloc, url.path) == ("ws", f"127.0.0.1:{live_push.ws_port}", "/mqtt")
    query = parse_qs(url.query)
    keys = creds["aws"]
    assert keys["access_key_id"].startswith("ASIA") and len(keys["access_key_id"]) == 20
    assert keys["endpoint"] == f"127.0.0.1:{live_push.ws_port}" and keys["region"] == settings.AWS_REGION
    assert query["X-Amz-Credential"][0].startswith(f"{keys['access_key_id']}/")
    assert query["X-Amz-Credential"][0].endswith(f"/{settings.AWS_REGION}/iotdevicegateway/aws4_request")
    assert query["X-Amz-Security-Token"] == [keys["session_token"]]
    assert list(parse_qs(url.query))[-1] == "X-Amz-Security-Token"  # appended after signing
    assert creds["topics"] == {
        "notifications": f"herald/dev/users/{alice.pk}/notifications",
        "post_comments": "herald/dev/posts/+/comments",
    }
    assert creds["client_id"].startswith(f"herald-u{alice.pk}-") and len(creds["client_id"]) > 25
    assert creds["client_id"] != credentials(api, alice)["client_id"]  # a fresh random part each time
    expires = datetime.fromisoformat(creds["expires_at"].replace("Z", "+00:00"))
    assert abs((expires - datetime.now(timezone.utc)).total_seconds() - settings.IOT_CREDENTIALS_TTL) < 5


def test_credentials_need_login_and_are_throttled(api, alice, live_push, monkeypatch):
    from config.throttles import CredentialsThrottle

    assert api.post("/api/notifications/credentials/").status_code == 401
    monkeypatch.setattr(CredentialsThrottle, "THROTTLE_RATES", {"credentials": "2/min"})
    api.as_(alice)
    codes = [api.post("/api/notifications/credentials/").status_code for _ in range(3)]
    assert codes == [200, 200, 429]


@pytest.mark.parametrize("transport", ["tcp", "websockets"])
def test_comment_reaches_the_post_authors_client_within_a_second(
    api, alice, bob, live_push, django_capture_on_commit_callbacks, transport
):
    post = services.create_post(alice, "hello")
    creds = credentials(api, alice)
    client = subscriber(creds, live_push.mqtt_port, transport)
    try:
        started = time.monotonic()
        with django_capture_on_commit_callbacks(execute=True):
            r = api.as_(bob).post(f"/api/posts/{post.pk}/comments/", {"text": "live!"}, format="json")
        assert r.status_code == 201
        message = client.next_message(timeout=1.0)
        assert time.monotonic() - started < 1.0
        n = Notification.objects.get(recipient=alice)
        assert message.topic == f"herald/dev/users/{alice.pk}/notifications"
        body = payload(message)
        assert body["type"] == "notification" and body["id"] == n.pk and body["seq"] == n.seq
        assert body["kind"] == "comment" and body["unread_count"] == 1 and body["actor"]["username"] == "bob"
        assert push_of(n) == ("delivered", None, "")
    finally:
        client.close()


def test_issued_credentials_cannot_reach_other_topics(api, alice, bob, live_push):
    creds = credentials(api, alice)
    client = Client.over_websocket(creds["url"], creds["client_id"])
    assert client.connect() == 0
    try:
        assert client.subscribe(f"herald/dev/users/{bob.pk}/notifications") == SUBACK_FAILURE
        assert client.subscribe("#") == SUBACK_FAILURE
        assert client.subscribe("herald/dev/users/+/notifications") == SUBACK_FAILURE
    finally:
        client.close()
    # Another client id with alice's keys: iot:Connect is refused, the connection closed.
    thief = Client.over_websocket(creds["url"], creds["client_id"] + "x")
    assert thief.connect() != 0
    thief.close()


def test_mark_all_read_reaches_every_open_tab(api, alice, bob, live_push, django_capture_on_commit_callbacks):
    post = services.create_post(alice, "hello")
    services.add_comment(bob, post.pk, "one")
    tabs = [subscriber(credentials(api, alice), live_push.mqtt_port) for _ in range(2)]
    try:
        with django_capture_on_commit_callbacks(execute=True):
            assert api.as_(alice).post("/api/notifications/read-all/").status_code == 200
        for tab in tabs:
            body = payload(tab.next_message(timeout=1.0))
            assert (body["type"], body["all"], body["unread_count"]) == ("read", True, 0)
    finally:
        for tab in tabs:
            tab.close()


def test_emulator_down_comment_succeeds_and_deliver_pending_delivers_later(
    api, alice, bob, settings, django_capture_on_commit_callbacks
):
    ports = {"mqtt_port": free_port(), "ws_port": free_port(), "http_port": free_port()}
    key_id, secret = local_credentials()

    class Down:  # the emulator's ports while nothing listens on them
        mqtt_port, ws_port, http_port = ports["mqtt_port"], ports["ws_port"], ports["http_port"]

    point_settings_at(settings, Down)
    post = services.create_post(alice, "hello")
    with django_capture_on_commit_callbacks(execute=True):
        r = api.as_(bob).post(f"/api/posts/{post.pk}/comments/", {"text": "while down"}, format="json")
    assert r.status_code == 201
    n = Notification.objects.get(recipient=alice)
    state, attempts, error = push_of(n)
    assert (state, attempts) == ("pending", 1)
    assert "Could not connect" in error

    running = LocalIoT(**options_from_settings(host="127.0.0.1", **ports)).start_in_thread()
    try:
        client = subscriber(credentials(api, alice), ports["mqtt_port"])
        make_due(n)
        call_command("deliver_pending", verbosity=0)
        body = payload(client.next_message(timeout=1.0))
        assert body["id"] == n.pk and body["text"].endswith("“while down”")
        assert push_of(n) == ("delivered", None, "")
        call_command("deliver_pending", verbosity=0)
        with pytest.raises(queue.Empty):
            client.next_message(timeout=0.3)  # delivered once, not again
        client.close()
    finally:
        running.stop()


def test_publisher_classifies_failures_against_the_real_emulator(settings, live_push):
    from notifier.push.publisher import PublishError, get_publisher

    publisher = get_publisher()
    publisher.publish("herald/dev/users/1/notifications", b"{}")  # accepted
    with pytest.raises(PublishError) as too_big:
        publisher.publish("herald/dev/users/1/notifications", b"x" * (129 * 1024))
    assert too_big.value.permanent and "413" in str(too_big.value)
    with pytest.raises(PublishError) as bad_topic:
        publisher.publish("herald/dev/users/#", b"{}")
    assert bad_topic.value.permanent and "400" in str(bad_topic.value)


def test_publisher_with_the_wrong_key_is_refused_and_retried_later(settings, live_push):
    from notifier.push.publisher import PublishError, _load, get_publisher

    settings.SECRET_KEY = "another-secret-key-so-another-derived-publisher-key"
    _load.cache_clear()
    with pytest.raises(PublishError) as refused:
        get_publisher().publish("herald/dev/users/1/notifications", b"{}")
    assert "403" in str(refused.value) and not refused.value.permanent


def test_one_iot_data_client_per_process(settings, live_push):
    from notifier.push.publisher import get_publisher

    assert get_publisher() is get_publisher()
    assert get_publisher().client._endpoint.host == f"http://127.0.0.1:{live_push.http_port}"


def test_a_wedged_broker_does_not_hold_a_write(api, alice, bob, settings, django_capture_on_commit_callbacks):
    """A broker that accepts connections and never answers: the comment's POST still returns
    within the urgent push budget (one attempt, PUSH_URGENT_TIMEOUT), and the push stays owed."""
    import socket
    import threading

    wedged = socket.socket()
    wedged.bind(("127.0.0.1", 0))
    wedged.listen(16)
    held = []
    stop = threading.Event()

    def accept_and_hold():
        wedged.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(wedged.accept()[0])  # never read, never answered
            except OSError:
                pass

    threading.Thread(target=accept_and_hold, daemon=True).start()

    class Wedged:
        mqtt_port = ws_port = http_port = wedged.getsockname()[1]

    point_settings_at(settings, Wedged)
    post = services.create_post(alice, "hello")
    try:
        started = time.monotonic()
        with django_capture_on_commit_callbacks(execute=True):
            r = api.as_(bob).post(f"/api/posts/{post.pk}/comments/", {"text": "into the void"}, format="json")
        took = time.monotonic() - started
    finally:
        stop.set()
        for conn in held:
            conn.close()
        wedged.close()
    assert r.status_code == 201
    assert took < 1.5, f"the POST waited {took:.2f}s on the broker"  # was 20 s: 3 attempts x (2 s + 5 s)
    state, attempts, error = push_of(Notification.objects.get(recipient=alice))
    assert (state, attempts) == ("pending", 1) and "timeout" in error.lower()
