"""The local IoT emulator (notifier/localiot): tokens, topic rules, SigV4, MQTT auth and delivery.

One emulator runs on free ports for the whole module. MQTT clients are paho (TCP and WebSocket);
a few checks speak raw MQTT or HTTP where the exact bytes on the wire are the point (CONNACK 0x05,
an unsigned or tampered request). The HTTP side is always driven by boto3's iot-data client
configured exactly like the production publisher.
"""
import asyncio
import datetime
import hashlib
import http.client
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import boto3
import botocore.auth
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from notifier.localiot import sigv4, topics
from notifier.localiot.server import LocalIoT
from notifier.localiot.tokens import (
    InvalidToken,
    issue_token,
    new_client_id,
    verify_token,
)

from .mqtt_client import Client

ROOT = Path(__file__).resolve().parent.parent
KEY_ID = "AKIDLOCALIOTTEST"
SECRET = "local-iot-test-secret"
TOKEN_KEY = "local-iot-test-token-key"
REGION = "us-east-1"
PREFIX = "herald/dev"
POSTS_FILTER = f"{PREFIX}/posts/+/comments"
NOT_AUTHORIZED = 5  # CONNACK return code
SUBACK_FAILURE = 0x80


def user_topic(user_id: int) -> str:
    return f"{PREFIX}/users/{user_id}/notifications"


def credentials_for(user_id: int, *, client_id: str | None = None, ttl: int = 60, key: str = TOKEN_KEY, now=None):
    """(client_id, token) as the credential view would issue them for this user."""
    client_id = client_id or new_client_id(user_id)
    token, _ = issue_token(
        key=key, client_id=client_id, user_id=user_id, topic_filters=[user_topic(user_id), POSTS_FILTER], ttl=ttl, now=now
    )
    return client_id, token


def iot_data_client(endpoint_url: str, key_id: str = KEY_ID, secret: str = SECRET):
    """boto3's iot-data client, configured like notifier.push.publisher.IotDataPublisher."""
    return boto3.client(
        "iot-data",
        endpoint_url=endpoint_url,
        region_name=REGION,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
    )


@pytest.fixture(scope="module")
def iot():
    running = LocalIoT(access_key_id=KEY_ID, secret_access_key=SECRET, token_key=TOKEN_KEY).start_in_thread()
    try:
        yield running.iot
    finally:
        running.stop()


@pytest.fixture(scope="module")
def iot_data(iot):
    return iot_data_client(iot.http_url)


@pytest.fixture
def connect(iot):
    """connect(user_id, transport=...) -> a connected, authenticated Client; closed after the test."""
    made = []

    def make(user_id: int = 42, *, transport="tcp", client_id=None, clean=True):
        client_id, token = credentials_for(user_id, client_id=client_id)
        port = iot.ws_port if transport == "websockets" else iot.mqtt_port
        client = Client(port, client_id, token, transport=transport, username=str(user_id), clean=clean)
        made.append(client)
        assert client.connect() == "Success"
        return client

    yield make
    for client in made:
        client.close()


def _mqtt_string(value: bytes) -> bytes:
    return struct.pack("!H", len(value)) + value


def raw_connect(port: int, client_id: str, *, username=None, password=None, clean=True, will=None) -> int:
    """Send one MQTT 3.1.1 CONNECT on a fresh socket; return the CONNACK return code byte."""
    flags = 0x02 if clean else 0
    payload = _mqtt_string(client_id.encode())
    if will is not None:
        will_topic, will_message, will_retain = will
        flags |= 0x04 | 0x08 | (0x20 if will_retain else 0)  # will flag, will QoS 1, will retain
        payload += _mqtt_string(will_topic.encode()) + _mqtt_string(will_message)
    if username is not None:
        flags |= 0x80
        payload += _mqtt_string(username.encode())
    if password is not None:
        flags |= 0x40
        payload += _mqtt_string(password.encode())
    body = _mqtt_string(b"MQTT") + bytes([4, flags]) + struct.pack("!H", 30) + payload
    length, encoded_length = len(body), b""
    while True:
        byte, length = length % 128, length // 128
        encoded_length += bytes([byte | (0x80 if length else 0)])
        if not length:
            break
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"\x10" + encoded_length + body)
        connack = b""
        while len(connack) < 4:
            chunk = sock.recv(4 - len(connack))
            if not chunk:
                break
            connack += chunk
    assert connack[:2] == b"\x20\x02", f"not a CONNACK: {connack!r}"
    return connack[3]


def signed_headers(url: str, body: bytes, *, method="POST", key_id=KEY_ID, secret=SECRET) -> dict:
    """Headers of a request signed the way botocore signs iot-data calls."""
    request = AWSRequest(method=method, url=url, data=body)
    SigV4Auth(Credentials(key_id, secret), "iotdata", REGION).add_auth(request)
    return dict(request.headers.items())


def raw_http(iot, method: str, target: str, body: bytes = b"", headers: dict | None = None):
    """(status, headers, parsed JSON body) of one raw HTTP request to the emulator."""
    connection = http.client.HTTPConnection("127.0.0.1", iot.http_port, timeout=5)
    try:
        connection.request(method, target, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.headers, json.loads(response.read() or b"null")
    finally:
        connection.close()


def error_of(exc_info) -> tuple[int, str]:
    response = exc_info.value.response
    return response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Code"]


# --- tokens ---------------------------------------------------------------------------------------


def test_token_round_trip_carries_the_claims():
    client_id = new_client_id(42)
    token, expires_at = issue_token(
        key="k", client_id=client_id, user_id=42, topic_filters=[user_topic(42), POSTS_FILTER], ttl=900, now=1000.0
    )
    assert expires_at == 1900.0
    claims = verify_token(key="k", token=token, client_id=client_id, now=1899.0)
    assert claims == {"cid": client_id, "sub": 42, "filters": [user_topic(42), POSTS_FILTER], "exp": 1900.0}


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"now": 1900.0}, "expired"),
        ({"key": "other-key"}, "bad signature"),
        ({"client_id": "herald-u42-someone-else"}, "token belongs to another client id"),
        ({"token": "not-a-token"}, "bad signature"),
        ({"token": ""}, "no token"),
    ],
)
def test_token_is_refused_when(change, reason):
    client_id = "herald-u42-abc"
    token, _ = issue_token(key="k", client_id=client_id, user_id=42, topic_filters=[user_topic(42)], ttl=900, now=1000.0)
    args = {"key": "k", "token": token, "client_id": client_id, "now": 1000.0} | change
    with pytest.raises(InvalidToken) as exc_info:
        verify_token(**args)
    assert exc_info.value.reason == reason


def test_tampered_token_is_refused():
    client_id = "herald-u42-abc"
    token, _ = issue_token(key="k", client_id=client_id, user_id=42, topic_filters=[user_topic(42)], ttl=900)
    value, timestamp, signature = token.rsplit(":", 2)
    forged_claims = value.replace(value[5], "A" if value[5] != "A" else "B", 1)
    for forged in (f"{forged_claims}:{timestamp}:{signature}", f"{value}:{timestamp}:{signature[:-2]}xx"):
        with pytest.raises(InvalidToken):
            verify_token(key="k", token=forged, client_id=client_id)


@pytest.mark.parametrize(
    "bad",
    [
        {"client_id": "herald/u42"},
        {"client_id": "herald-u42-+"},
        {"client_id": ""},
        {"topic_filters": []},
        {"topic_filters": ["herald/#/x"]},
        {"topic_filters": ["herald/a+"]},
        {"ttl": 0},
        {"key": ""},
    ],
)
def test_issue_token_refuses_bad_input(bad):
    args = {"key": "k", "client_id": "herald-u42-abc", "user_id": 42, "topic_filters": [user_topic(42)], "ttl": 60}
    with pytest.raises(ValueError):
        issue_token(**(args | bad))


def test_client_ids_are_unguessable_and_safe():
    ids = {new_client_id(42) for _ in range(50)}
    assert len(ids) == 50
    for client_id in ids:
        assert client_id.startswith("herald-u42-")
        random_part = client_id.removeprefix("herald-u42-")
        assert len(random_part) >= 20
        assert all(c.isascii() and (c.isalnum() or c in "-_") for c in client_id)


def test_tokens_need_neither_django_settings_nor_amqtt():
    # The credential view imports tokens in the web process, where amqtt must never be loaded, and
    # the emulator may run where settings are not configured.
    code = (
        "import sys\n"
        "from notifier.localiot.tokens import issue_token, verify_token, new_client_id\n"
        "cid = new_client_id(7)\n"
        "token, _ = issue_token(key='k', client_id=cid, user_id=7, topic_filters=['a/b'], ttl=60)\n"
        "assert verify_token(key='k', token=token, client_id=cid)['sub'] == 7\n"
        "assert 'amqtt' not in sys.modules, 'amqtt was imported'\n"
        "from django.conf import settings\n"
        "assert not settings.configured\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr


def test_the_web_path_never_imports_amqtt():
    code = (
        "import sys, django\n"
        "django.setup()\n"
        "import config.urls, config.wsgi, notifier.api, notifier.views, notifier.aws.issuer, notifier.push.publisher\n"
        "import notifier.localiot.tokens\n"
        "assert 'amqtt' not in sys.modules, 'amqtt was imported'\n"
    )
    env = os.environ | {"DJANGO_SETTINGS_MODULE": "config.settings"}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


# --- topic rules ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "topic, topic_filter, expected",
    [
        ("a/b", "a/b", True),
        ("a/b", "a/+", True),
        ("a/b/c", "a/+", False),
        ("a", "a/#", True),
        ("a/b/c", "a/#", True),
        ("a//c", "a/+/c", True),
        ("b/a", "a/#", False),
        ("$SYS/x", "#", False),
        ("$SYS/x", "+/x", False),
        ("a/b", "a/b/c", False),
    ],
)
def test_topic_matching(topic, topic_filter, expected):
    assert topics.topic_matches(topic, topic_filter) is expected


@pytest.mark.parametrize(
    "requested, expected",
    [
        (user_topic(42), True),
        (f"{PREFIX}/posts/17/comments", True),
        (POSTS_FILTER, True),
        (user_topic(43), False),
        ("#", False),
        (f"{PREFIX}/users/+/notifications", False),
        (f"{PREFIX}/users/42/#", False),
        (f"{PREFIX}/posts/17/#", False),
        ("+/dev/users/42/notifications", False),
        (f"{PREFIX}/posts/+/+", False),
        (f"{PREFIX}/posts/17/comments/x", False),
    ],
)
def test_subscription_must_stay_inside_the_token_filters(requested, expected):
    assert topics.filter_is_covered(requested, [user_topic(42), POSTS_FILTER]) is expected


@pytest.mark.parametrize(
    "topic, ok",
    [
        (user_topic(42), True),
        ("a/b/c/d/e/f/g/h", True),  # 7 slashes
        ("a/b/c/d/e/f/g/h/i", False),  # 8 slashes
        ("", False),
        ("a/#", False),
        ("a/+/b", False),
        ("$aws/things/x/shadow/update", False),
        ("x" * 257, False),
    ],
)
def test_publish_topic_rules(topic, ok):
    assert (topics.publish_topic_error(topic) is None) is ok


def test_topic_plugin_checks_subscribe_and_receive_and_refuses_publish():
    from amqtt.contexts import Action, BaseContext
    from amqtt.session import Session

    from notifier.localiot.plugins import CLAIMS, TokenTopicPlugin

    context = BaseContext()
    context.config = TokenTopicPlugin.Config()
    plugin = TokenTopicPlugin(context)
    session = Session()
    session.client_id = "herald-u42-abc"
    claims = {"cid": "herald-u42-abc", "sub": 42, "filters": [user_topic(42), POSTS_FILTER], "exp": time.time() + 60}
    session.attributes[CLAIMS] = claims

    def allowed(topic, action, on=session):
        return asyncio.run(plugin.topic_filtering(session=on, topic=topic, action=action))

    assert allowed(user_topic(42), Action.SUBSCRIBE)
    assert not allowed(user_topic(43), Action.SUBSCRIBE)
    assert allowed(user_topic(42), Action.RECEIVE)
    assert allowed(f"{PREFIX}/posts/9/comments", Action.RECEIVE)
    assert not allowed(user_topic(43), Action.RECEIVE)
    assert not allowed(user_topic(42), Action.PUBLISH)
    assert not allowed(user_topic(42), Action.RECEIVE, on=Session())  # no verified token
    claims["exp"] = time.time() - 1  # the token expired while connected
    assert not allowed(user_topic(42), Action.SUBSCRIBE)
    assert allowed(user_topic(42), Action.RECEIVE)


# --- SigV4 ----------------------------------------------------------------------------------------


def _signed(target="/topics/a%2Fb?qos=1", body=b"hi", **kwargs):
    headers = signed_headers(f"http://127.0.0.1:9/{target.lstrip('/')}", body, **kwargs)
    return {"method": "POST", "target": target, "headers": list(headers.items()) + [("Host", "127.0.0.1:9")], "body": body}


def test_sigv4_accepts_what_botocore_signs():
    request = _signed()
    sigv4.verify_request(**request, access_key_id=KEY_ID, secret_access_key=SECRET)
    sigv4.verify_request(**request, access_key_id=KEY_ID, secret_access_key=SECRET, now=time.time() + 290)


@pytest.mark.parametrize(
    "change",
    [
        {"body": b"changed"},
        {"target": "/topics/a%2Fc?qos=1"},
        {"target": "/topics/a%2Fb?qos=0"},
        {"secret_access_key": "wrong"},
        {"access_key_id": "AKIDOTHER"},
        {"now": 301},  # seconds after signing
        {"now": -301},
    ],
)
def test_sigv4_refuses(change):
    request = _signed() | {"access_key_id": KEY_ID, "secret_access_key": SECRET}
    if "now" in change:
        change = {"now": time.time() + change["now"]}
    with pytest.raises(sigv4.SignatureError):
        sigv4.verify_request(**(request | change))


def test_sigv4_refuses_a_content_hash_that_is_not_the_body():
    request = _signed()
    request["headers"].append(("X-Amz-Content-SHA256", hashlib.sha256(b"other").hexdigest()))
    with pytest.raises(sigv4.SignatureError):
        sigv4.verify_request(**request, access_key_id=KEY_ID, secret_access_key=SECRET)


# --- MQTT: delivery and authorization ---------------------------------------------------------------


@pytest.mark.parametrize("transport", ["tcp", "websockets"])
def test_subscriber_receives_a_boto3_publish_within_a_second(iot_data, connect, transport):
    client = connect(42, transport=transport)
    assert client.subscribe(user_topic(42), qos=1) == 1
    payload = json.dumps({"v": 1, "type": "notification", "seq": 1, "text": "hello"}).encode()
    started = time.monotonic()
    iot_data.publish(topic=user_topic(42), qos=1, payload=payload)
    message = client.next_message(timeout=1.0)
    assert time.monotonic() - started < 1.0
    assert (message.topic, message.payload, message.qos, message.retain) == (user_topic(42), payload, 1, False)


def test_public_post_comments_reach_subscribers_of_that_post_only(iot_data, connect):
    reader = connect(42)
    assert reader.subscribe(f"{PREFIX}/posts/17/comments", qos=0) == 0
    iot_data.publish(topic=f"{PREFIX}/posts/18/comments", qos=1, payload=b"other post")
    iot_data.publish(topic=f"{PREFIX}/posts/17/comments", qos=1, payload=b"this post")
    message = reader.next_message()
    # Delivered at min(publish QoS 1, granted QoS 0).
    assert (message.topic, message.payload, message.qos) == (f"{PREFIX}/posts/17/comments", b"this post", 0)
    reader.assert_nothing_arrives()


def test_subscriptions_outside_the_token_are_refused(connect):
    client = connect(42)
    codes = {
        topic_filter: client.subscribe(topic_filter, qos=1)
        for topic_filter in [
            user_topic(42),
            f"{PREFIX}/posts/17/comments",
            POSTS_FILTER,
            user_topic(43),
            "#",
            f"{PREFIX}/users/+/notifications",
            "+/dev/users/42/notifications",
            f"{PREFIX}/#",
            "$SYS/#",
        ]
    }
    assert codes == {
        user_topic(42): 1,
        f"{PREFIX}/posts/17/comments": 1,
        POSTS_FILTER: 1,
        user_topic(43): SUBACK_FAILURE,
        "#": SUBACK_FAILURE,
        f"{PREFIX}/users/+/notifications": SUBACK_FAILURE,
        "+/dev/users/42/notifications": SUBACK_FAILURE,
        f"{PREFIX}/#": SUBACK_FAILURE,
        "$SYS/#": SUBACK_FAILURE,
    }
    assert client.subscribe(user_topic(42), qos=2) == 1  # AWS IoT has no QoS 2


def test_another_users_messages_never_arrive(iot_data, connect):
    alice, bob = connect(42), connect(43)
    assert alice.subscribe(user_topic(42)) == 1
    assert bob.subscribe(user_topic(43)) == 1
    iot_data.publish(topic=user_topic(43), qos=1, payload=b"for bob")
    assert bob.next_message().payload == b"for bob"
    alice.assert_nothing_arrives()


@pytest.mark.parametrize(
    "case",
    ["forged", "expired", "other client id", "other key", "no password", "no credentials", "will message"],
)
def test_connect_is_refused_with_connack_5(iot, case):
    client_id = new_client_id(42)
    _, valid = credentials_for(42, client_id=client_id)
    kwargs = {"username": "42", "password": valid}
    if case == "forged":
        kwargs["password"] = valid[:-3] + ("AAA" if not valid.endswith("AAA") else "BBB")
    elif case == "expired":
        kwargs["password"] = credentials_for(42, client_id=client_id, ttl=60, now=time.time() - 61)[1]
    elif case == "other client id":
        kwargs["password"] = credentials_for(42)[1]
    elif case == "other key":
        kwargs["password"] = credentials_for(42, client_id=client_id, key="not-the-emulator-key")[1]
    elif case == "no password":
        kwargs = {"username": "42"}
    elif case == "no credentials":
        kwargs = {}
    elif case == "will message":
        # amqtt publishes wills (retained too) without topic checks: a will must not get in.
        kwargs["will"] = (user_topic(43), b"planted", True)
    assert raw_connect(iot.mqtt_port, client_id, **kwargs) == NOT_AUTHORIZED
    # The same client id with the valid token still gets in: the refusal was about the credentials.
    assert raw_connect(iot.mqtt_port, client_id, username="42", password=valid) == 0


def test_paho_sees_not_authorized_over_websocket(iot):
    client_id, _ = credentials_for(42)
    client = Client(iot.ws_port, client_id, "forged-token", transport="websockets")
    try:
        assert client.connect() == "Not authorized"
    finally:
        client.close()


def test_websocket_is_served_on_mqtt_path_only(iot):
    headers = {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Protocol": "mqtt",
    }
    connection = http.client.HTTPConnection("127.0.0.1", iot.ws_port, timeout=5)
    try:
        connection.request("GET", "/not-mqtt", headers=headers)
        assert connection.getresponse().status == 404
    finally:
        connection.close()
    connection = http.client.HTTPConnection("127.0.0.1", iot.ws_port, timeout=5)
    try:
        connection.request("GET", "/mqtt", headers=headers)
        response = connection.getresponse()
        assert response.status == 101
        assert response.headers["Sec-WebSocket-Protocol"] == "mqtt"
    finally:
        connection.close()


def test_client_publishes_reach_nobody_and_nothing_is_retained(iot, iot_data, connect):
    receiver = connect(42)
    assert receiver.subscribe(user_topic(42)) == 1
    # A second connection of the same user: its token covers the topic, so only the no-publish
    # rule stands between it and the receiver.
    publisher = connect(42)
    for qos, retain in [(0, False), (1, False), (1, True), (0, True)]:
        info = publisher.paho.publish(user_topic(42), f"planted qos={qos} retain={retain}".encode(), qos=qos, retain=retain)
        info.wait_for_publish(timeout=5)
    receiver.assert_nothing_arrives()

    later = connect(42)
    assert later.subscribe(user_topic(42)) == 1
    later.assert_nothing_arrives()
    assert iot.broker.retained_messages == {}

    # Both subscriptions were live all along: a server publish reaches both.
    iot_data.publish(topic=user_topic(42), qos=1, payload=b"from the server")
    assert receiver.next_message().payload == b"from the server"
    assert later.next_message().payload == b"from the server"


@pytest.mark.parametrize("attacker_clean_session", [True, False])
@pytest.mark.parametrize("attacker_password", ["forged", "own valid token", None])
def test_session_takeover_with_bad_credentials_fails(iot, iot_data, connect, attacker_clean_session, attacker_password):
    victim = connect(42, clean=attacker_clean_session)
    victim_id = victim.client_id
    assert victim.subscribe(user_topic(42)) == 1

    password = credentials_for(43)[1] if attacker_password == "own valid token" else attacker_password
    for _ in range(2):
        code = raw_connect(iot.mqtt_port, victim_id, username="43", password=password, clean=attacker_clean_session)
        assert code == NOT_AUTHORIZED

    assert not victim.disconnected.wait(0.2), "the victim was disconnected"
    assert victim.paho.is_connected()
    iot_data.publish(topic=user_topic(42), qos=1, payload=b"still yours")
    message = victim.next_message()
    assert (message.topic, message.payload) == (user_topic(42), b"still yours")


# --- HTTP Publish API -----------------------------------------------------------------------------


def test_unsigned_publish_is_forbidden(iot):
    status, headers, body = raw_http(iot, "POST", "/topics/herald%2Fdev%2Fusers%2F42%2Fnotifications?qos=1", b"x")
    assert status == 403
    assert headers["x-amzn-ErrorType"] == "ForbiddenException"
    assert body["message"]


@pytest.mark.parametrize("key_id, secret", [(KEY_ID, "wrong-secret"), ("AKIDSOMEONEELSE", SECRET)])
def test_publish_with_wrong_credentials_is_forbidden(iot, connect, key_id, secret):
    client = connect(42)
    assert client.subscribe(user_topic(42)) == 1
    with pytest.raises(ClientError) as exc_info:
        iot_data_client(iot.http_url, key_id=key_id, secret=secret).publish(topic=user_topic(42), qos=1, payload=b"x")
    assert error_of(exc_info) == (403, "ForbiddenException")
    client.assert_nothing_arrives()


def test_publish_signed_too_long_ago_is_forbidden(iot, monkeypatch):
    stale = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=6)

    def stale_clock(remove_tzinfo=True):
        return stale.replace(tzinfo=None) if remove_tzinfo else stale

    # botocore signs with its own Python signer, or with awscrt's when awscrt is installed.
    monkeypatch.setattr(botocore.auth, "get_current_datetime", stale_clock)
    try:
        import botocore.crt.auth as crt_auth
    except ImportError:
        crt_auth = None
    if crt_auth is not None:
        monkeypatch.setattr(crt_auth, "get_current_datetime", stale_clock)
    with pytest.raises(ClientError) as exc_info:
        iot_data_client(iot.http_url).publish(topic=user_topic(42), qos=1, payload=b"x")
    assert error_of(exc_info) == (403, "ForbiddenException")


def test_signed_request_with_a_swapped_body_is_forbidden(iot):
    target = "/topics/herald%2Fdev%2Fusers%2F42%2Fnotifications?qos=1"
    headers = signed_headers(f"http://127.0.0.1:{iot.http_port}{target}", b"original")
    assert raw_http(iot, "POST", target, b"original", headers)[0] == 200
    status, response_headers, _ = raw_http(iot, "POST", target, b"swapped!", headers)
    assert (status, response_headers["x-amzn-ErrorType"]) == (403, "ForbiddenException")


def test_oversized_payload_is_413(iot_data):
    iot_data.publish(topic=user_topic(42), qos=1, payload=b"x" * 131072)  # exactly 128 KB is fine
    with pytest.raises(ClientError) as exc_info:
        iot_data.publish(topic=user_topic(42), qos=1, payload=b"x" * (129 * 1024))
    assert error_of(exc_info) == (413, "RequestEntityTooLargeException")


@pytest.mark.parametrize("topic", ["#", "herald/+/x", "a/b/c/d/e/f/g/h/i", "$aws/things/t/shadow/update"])
def test_invalid_topic_is_400(iot_data, topic):
    with pytest.raises(ClientError) as exc_info:
        iot_data.publish(topic=topic, qos=1, payload=b"x")
    assert error_of(exc_info) == (400, "InvalidRequestException")
    assert exc_info.value.response["Error"]["Message"]


@pytest.mark.parametrize("target", ["/topics/?qos=1", "/topics/a%2Fb?qos=2", "/topics/a%2Fb?qos=x"])
def test_signed_but_invalid_request_is_400(iot, target):
    headers = signed_headers(f"http://127.0.0.1:{iot.http_port}{target}", b"x")
    status, response_headers, body = raw_http(iot, "POST", target, b"x", headers)
    assert (status, response_headers["x-amzn-ErrorType"]) == (400, "InvalidRequestException")
    assert body["message"]


def test_other_paths_are_404_and_other_methods_405(iot, iot_data):
    with pytest.raises(ClientError) as exc_info:
        iot_data.get_thing_shadow(thingName="thing")
    assert error_of(exc_info) == (404, "ResourceNotFoundException")
    status, headers, _ = raw_http(iot, "GET", "/topics/a%2Fb")
    assert (status, headers["x-amzn-ErrorType"]) == (405, "MethodNotAllowedException")


def test_huge_body_is_refused_unread(iot):
    with socket.create_connection(("127.0.0.1", iot.http_port), timeout=5) as sock:
        sock.sendall(b"POST /topics/a HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n")
        response = b""
        while chunk := sock.recv(4096):  # the server answers and closes without waiting for the body
            response += chunk
    assert response.startswith(b"HTTP/1.1 413 ")
    assert b"x-amzn-ErrorType: RequestEntityTooLargeException" in response


def test_valid_publish_is_200_and_keeps_the_connection(iot_data, connect):
    client = connect(42)
    assert client.subscribe(user_topic(42)) == 1
    for n in range(3):  # one pooled keep-alive connection serves several publishes
        response = iot_data.publish(topic=user_topic(42), qos=1, payload=f"n={n}".encode())
        assert response["ResponseMetadata"]["HTTPStatusCode"] == 200
        assert client.next_message().payload == f"n={n}".encode()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_failed_start_leaves_nothing_bound():
    mqtt_port = _free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        iot = LocalIoT(
            mqtt_port=mqtt_port, ws_port=taken.getsockname()[1], access_key_id=KEY_ID, secret_access_key=SECRET, token_key=TOKEN_KEY
        )
        with pytest.raises(Exception, match="address already in use"):
            iot.start_in_thread()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", mqtt_port))  # the MQTT listener that did bind was closed again


def test_port_1883_is_refused():
    with pytest.raises(ValueError):
        LocalIoT(mqtt_port=1883, access_key_id=KEY_ID, secret_access_key=SECRET, token_key=TOKEN_KEY)


# --- the management command -------------------------------------------------------------------------


def test_runlocaliot_serves_the_settings_credentials_and_stops_on_sigterm(settings):
    from notifier.aws.local import root_credentials as local_credentials

    ports = {"LOCALIOT_MQTT_PORT": _free_port(), "LOCALIOT_WS_PORT": _free_port(), "LOCALIOT_HTTP_PORT": _free_port()}
    env = os.environ | {name: str(port) for name, port in ports.items()} | {"LOCALIOT_HOST": "127.0.0.1"}
    process = subprocess.Popen(
        [sys.executable, "manage.py", "runlocaliot"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        line = process.stdout.readline()  # printed once all three listeners are bound
        for port in ports.values():
            assert f":{port}" in line, line + process.stderr.read() if process.poll() is not None else line

        client_id = new_client_id(42)
        token, _ = issue_token(
            key=settings.SECRET_KEY, client_id=client_id, user_id=42, topic_filters=[user_topic(42)], ttl=60
        )
        client = Client(ports["LOCALIOT_MQTT_PORT"], client_id, token)
        try:
            assert client.connect() == "Success"
            assert client.subscribe(user_topic(42)) == 1
            key_id, secret = local_credentials()
            endpoint = f"http://127.0.0.1:{ports['LOCALIOT_HTTP_PORT']}"
            iot_data_client(endpoint, key_id=key_id, secret=secret).publish(topic=user_topic(42), qos=1, payload=b"hi")
            assert client.next_message().payload == b"hi"
        finally:
            client.close()

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()
        process.stderr.close()
