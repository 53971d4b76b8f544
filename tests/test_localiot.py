"""The local IoT emulator (notifier/localiot): SigV4, MQTT auth and policies, Publish, DeleteConnection.

One emulator runs on free ports for the whole module, configured like production's account: the
root keys carry the dev stage's Lambda policy (zappa_settings.json), STS hands out sessions of the
browser role (policies.role_policy) with Herald's session policy. Every MQTT client gets its keys
the way a browser does (tests/iot_keys.py: boto3 STS AssumeRole, then a presigned ws:// URL).
Clients are paho (TCP and WebSocket); a few checks speak raw MQTT or HTTP where the exact bytes on
the wire are the point (CONNACK 0x05, HTTP 403 at the upgrade, an unsigned or tampered request).
"""
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
from urllib.parse import quote, urlsplit

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from notifier.aws.local import ACCOUNT, ROLE_ARN
from notifier.aws.policies import new_client_id
from notifier.aws.presign import presign_wss_url
from notifier.localiot import sigv4, topics
from notifier.localiot.config import stage_policy
from notifier.localiot.server import LocalIoT

from .iot_keys import PREFIX, ROOT_KEYS, emulator_options, iot, iot_data_client, sign_as_of, vend  # noqa: F401 (iot: fixture)
from .live import free_port
from .mqtt_client import Client

ROOT = Path(__file__).resolve().parent.parent
KEY_ID, SECRET = ROOT_KEYS
REGION = "us-east-1"
POSTS_FILTER = f"{PREFIX}/posts/+/comments"
NOT_AUTHORIZED = 5  # CONNACK return code
SUBACK_FAILURE = 0x80


def user_topic(user_id: int) -> str:
    return f"{PREFIX}/users/{user_id}/notifications"


@pytest.fixture(scope="module")
def iot_data(iot):
    return iot_data_client(iot, ROOT_KEYS)


@pytest.fixture
def connect(iot):
    """connect(user_id, transport=...) -> a connected Client with freshly vended keys; closed after the test."""
    made = []

    def make(user_id: int = 42, *, transport="tcp", client_id=None, clean=True, keys=None):
        keys = keys or vend(iot, root=ROOT_KEYS, user_id=user_id, client_id=client_id)
        if transport == "websockets":
            client = Client.over_websocket(keys.url, keys.client_id, clean=clean)
        else:
            client = Client.over_tcp(iot.mqtt_port, keys.url, keys.client_id, clean=clean)
        made.append(client)
        assert client.connect() == "Success"
        client.keys = keys
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
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(b"\x10" + encoded_length + body)
        connack = b""
        while len(connack) < 4:
            chunk = sock.recv(4 - len(connack))
            if not chunk:
                break
            connack += chunk
    assert connack[:2] == b"\x20\x02", f"not a CONNACK: {connack!r}"
    return connack[3]


def upgrade_status(iot, url: str) -> int:
    """The HTTP status of a WebSocket upgrade to this URL's path and query (101 = upgraded)."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection("127.0.0.1", iot.ws_port, timeout=30)
    try:
        connection.request("GET", f"{parts.path}?{parts.query}" if parts.query else parts.path, headers={
            "Host": parts.netloc or f"127.0.0.1:{iot.ws_port}",
            "Upgrade": "websocket",
            "Connection": "Upgrade",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Protocol": "mqtt",
        })
        return connection.getresponse().status
    finally:
        connection.close()


def with_param(url: str, name: str, value: str) -> str:
    """The URL with one query parameter replaced (the signature is not recomputed)."""
    base, query = url.split("?", 1)
    pairs = [pair.split("=", 1) for pair in query.split("&")]
    return base + "?" + "&".join(f"{k}={quote(value, safe='-_.~') if k == name else v}" for k, v in pairs)


def signed_headers(url: str, body: bytes, *, method="POST", key_id=KEY_ID, secret=SECRET, token=None) -> dict:
    """Headers of a request signed the way botocore signs iot-data calls."""
    request = AWSRequest(method=method, url=url, data=body)
    SigV4Auth(Credentials(key_id, secret, token), "iotdata", REGION).add_auth(request)
    return dict(request.headers.items())


def raw_http(iot, method: str, target: str, body: bytes = b"", headers: dict | None = None):
    """(status, headers, parsed JSON body) of one raw HTTP request to the emulator."""
    connection = http.client.HTTPConnection("127.0.0.1", iot.http_port, timeout=30)
    try:
        connection.request(method, target, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.headers, json.loads(response.read() or b"null")
    finally:
        connection.close()


def error_of(exc_info) -> tuple[int, str]:
    response = exc_info.value.response
    return response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Code"]


def session_keys_client(iot, keys, service="iot-data"):
    return boto3.client(
        service, endpoint_url=iot.http_url, region_name=REGION, aws_access_key_id=keys.access_key_id,
        aws_secret_access_key=keys.secret_access_key, aws_session_token=keys.session_token,
    )


def wait_for(condition, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


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


@pytest.mark.parametrize("topic", ["", "a/+", "a/#", "$aws/x", "a/b/c/d/e/f/g/h/i", "x" * 257, "a\x00b"])
def test_publish_topic_errors(topic):
    assert topics.publish_topic_error(topic)


# --- SigV4 ----------------------------------------------------------------------------------------


def _resolve(key_id, token):
    if key_id != KEY_ID or token:
        raise sigv4.SignatureError("unknown key", "InvalidClientTokenId")
    return "root", SECRET


def _signed(target="/topics/a%2Fb?qos=1", body=b"hi", **kwargs):
    headers = signed_headers(f"http://127.0.0.1:9/{target.lstrip('/')}", body, **kwargs)
    return {"method": "POST", "target": target, "headers": list(headers.items()) + [("Host", "127.0.0.1:9")], "body": body}


def _verify(request, **overrides):
    return sigv4.verify_request(**({"resolve": _resolve, "region": REGION} | request | overrides))


def test_sigv4_accepts_what_botocore_signs():
    assert _verify(_signed()) == "root"
    assert _verify(_signed(), now=time.time() + 290) == "root"


@pytest.mark.parametrize(
    "change, code",
    [
        ({"body": b"changed"}, "SignatureDoesNotMatch"),
        ({"target": "/topics/a%2Fc?qos=1"}, "SignatureDoesNotMatch"),
        ({"target": "/topics/a%2Fb?qos=0"}, "SignatureDoesNotMatch"),
        ({"secret": "wrong"}, "SignatureDoesNotMatch"),
        ({"key_id": "AKIDOTHER"}, "InvalidClientTokenId"),
        ({"region": "eu-west-1"}, "SignatureDoesNotMatch"),
        ({"service": "sts"}, "SignatureDoesNotMatch"),
        ({"now": 301}, "SignatureDoesNotMatch"),  # seconds after signing
        ({"now": -301}, "SignatureDoesNotMatch"),
    ],
)
def test_sigv4_refuses(change, code):
    signing = {k: change[k] for k in ("secret", "key_id") if k in change}
    request = _signed(**signing)
    for name in ("body", "target"):
        if name in change:
            request[name] = change[name]
    overrides = {k: change[k] for k in ("region", "service") if k in change}
    if "now" in change:
        overrides["now"] = time.time() + change["now"]
    with pytest.raises(sigv4.SignatureError) as exc_info:
        _verify(request, **overrides)
    assert exc_info.value.code == code


def test_sigv4_refuses_a_content_hash_that_is_not_the_body():
    request = _signed()
    request["headers"].append(("X-Amz-Content-SHA256", hashlib.sha256(b"other").hexdigest()))
    with pytest.raises(sigv4.SignatureError):
        _verify(request)


def test_sigv4_says_what_is_missing():
    with pytest.raises(sigv4.SignatureError) as exc_info:
        _verify({"method": "POST", "target": "/", "headers": [("Host", "x")], "body": b""})
    assert (exc_info.value.code, exc_info.value.status) == ("MissingAuthenticationToken", 403)
    with pytest.raises(sigv4.SignatureError) as exc_info:
        _verify({"method": "POST", "target": "/", "headers": [("Host", "x"), ("Authorization", "AWS4-HMAC-SHA256 x")], "body": b""})
    assert (exc_info.value.code, exc_info.value.status) == ("IncompleteSignature", 400)


def _presigned(now=None, expires=900, region=REGION, secret=SECRET, token=None):
    now = now or datetime.datetime.now(datetime.timezone.utc)
    url = presign_wss_url(endpoint="127.0.0.1:9", region=region, access_key_id=KEY_ID, secret_access_key=secret,
                          session_token=token, now=now, expires=expires, scheme="ws")
    parts = urlsplit(url)
    return {"method": "GET", "path": parts.path, "query": parts.query, "headers": [("Host", "127.0.0.1:9")]}


def _verify_presigned(request, **overrides):
    return sigv4.verify_presigned(**({"resolve": _resolve, "region": REGION, "service": "iotdevicegateway"} | request | overrides))


def test_presigned_urls_are_verified_as_iot_core_does():
    assert _verify_presigned(_presigned()) == "root"
    past = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=600)
    assert _verify_presigned(_presigned(now=past, expires=900)) == "root"  # still inside X-Amz-Expires
    for request in (
        _presigned(now=past, expires=300),  # expired
        _presigned(now=datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=6)),  # future
        _presigned(region="eu-west-1"),
        _presigned(secret="wrong"),
        _presigned() | {"headers": [("Host", "127.0.0.1:10")]},  # signed for another host
    ):
        with pytest.raises(sigv4.SignatureError):
            _verify_presigned(request)
    with pytest.raises(sigv4.SignatureError):
        _verify_presigned(_presigned(), service="iotdata")  # scoped to the gateway, checked as another service


def test_the_session_token_is_not_part_of_the_signed_query():
    """AWS IoT appends X-Amz-Security-Token after signing; a token inside the signature fails."""
    seen = []

    def resolve(key_id, token):
        seen.append(token)
        return "session", SECRET

    request = _presigned(token="opaque+token/==")
    assert _verify_presigned(request, resolve=resolve) == "session"
    assert seen == ["opaque+token/=="]


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


def test_the_publish_leaves_for_subscribers_before_the_http_answer(iot, iot_data, connect, monkeypatch):
    """The push is on the subscriber's socket before Herald's Publish call returns, not queued
    behind the HTTP answer for a later turn of the emulator's event loop."""
    from amqtt.mqtt.protocol.handler import ProtocolHandler

    from notifier.localiot.publish_api import PublishServer

    events = []
    send_packet, respond = ProtocolHandler._send_packet, PublishServer._respond

    async def recording_send(self, packet):
        if getattr(getattr(packet, "payload", None), "data", None) == b"ordered":
            events.append("mqtt publish written")
        return await send_packet(self, packet)

    async def recording_respond(self, writer, response, keep_alive):
        events.append("http answered")
        return await respond(self, writer, response, keep_alive)

    client = connect(42)
    assert client.subscribe(user_topic(42), qos=1) == 1
    monkeypatch.setattr(ProtocolHandler, "_send_packet", recording_send)
    monkeypatch.setattr(PublishServer, "_respond", recording_respond)
    iot_data.publish(topic=user_topic(42), qos=1, payload=b"ordered")
    assert client.next_message().payload == b"ordered"
    assert events == ["mqtt publish written", "http answered"]


def test_finished_deliveries_do_not_pile_up(iot, iot_data, connect):
    client = connect(42)
    assert client.subscribe(user_topic(42), qos=1) == 1
    for n in range(30):
        iot_data.publish(topic=user_topic(42), qos=1, payload=f"n={n}".encode())
        assert client.next_message().payload == f"n={n}".encode()
    # Each delivery reaps the finished ones before it: at most the last one or two are left.
    assert len(iot.broker._tasks_queue) <= 2


def test_public_post_comments_reach_subscribers_of_that_post_only(iot_data, connect):
    reader = connect(42)
    assert reader.subscribe(f"{PREFIX}/posts/17/comments", qos=0) == 0
    iot_data.publish(topic=f"{PREFIX}/posts/18/comments", qos=1, payload=b"other post")
    iot_data.publish(topic=f"{PREFIX}/posts/17/comments", qos=1, payload=b"this post")
    message = reader.next_message()
    # Delivered at min(publish QoS 1, granted QoS 0).
    assert (message.topic, message.payload, message.qos) == (f"{PREFIX}/posts/17/comments", b"this post", 0)
    reader.assert_nothing_arrives()


@pytest.mark.parametrize("transport", ["tcp", "websockets"])
def test_subscriptions_outside_the_session_policy_get_suback_0x80(connect, transport):
    client = connect(42, transport=transport)
    codes = {
        topic_filter: client.subscribe(topic_filter, qos=1)
        for topic_filter in [
            user_topic(42),
            f"{PREFIX}/posts/17/comments",
            POSTS_FILTER,
            user_topic(43),  # another user's topic: the role allows it, the session policy does not
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


def test_a_session_policy_narrower_than_the_role_decides(iot, iot_data, connect):
    """The rights are role policy AND session policy: the role allows every user's topics and the
    posts filter; a session policy naming only this user's notifications allows only those."""
    client_id = new_client_id(42)
    arn = f"arn:aws:iot:{REGION}:{ACCOUNT}"
    narrow = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "iot:Connect", "Resource": f"{arn}:client/{client_id}"},
        {"Effect": "Allow", "Action": ["iot:Subscribe", "iot:Receive"],
         "Resource": [f"{arn}:topicfilter/{user_topic(42)}", f"{arn}:topic/{user_topic(42)}"]},
        # Wider than the role: the role still bounds it.
        {"Effect": "Allow", "Action": "iot:Subscribe", "Resource": f"{arn}:topicfilter/other/#"},
    ]}
    client = connect(42, keys=vend(iot, root=ROOT_KEYS, user_id=42, client_id=client_id, policy=narrow))
    assert client.subscribe(user_topic(42)) == 1
    assert client.subscribe(POSTS_FILTER) == SUBACK_FAILURE  # the role would allow it
    assert client.subscribe("other/#") == SUBACK_FAILURE  # the session policy allows it, the role does not
    iot_data.publish(topic=user_topic(42), qos=1, payload=b"mine")
    assert client.next_message().payload == b"mine"


def test_an_explicit_deny_in_the_session_policy_wins(iot, iot_data, connect):
    client_id = new_client_id(42)
    arn = f"arn:aws:iot:{REGION}:{ACCOUNT}"
    policy = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "iot:*", "Resource": "*"},
        {"Effect": "Deny", "Action": "iot:Receive", "Resource": f"{arn}:topic/{PREFIX}/posts/13/comments"},
    ]}
    client = connect(42, keys=vend(iot, root=ROOT_KEYS, user_id=42, client_id=client_id, policy=policy))
    assert client.subscribe(POSTS_FILTER) == 1
    iot_data.publish(topic=f"{PREFIX}/posts/13/comments", qos=1, payload=b"denied")
    iot_data.publish(topic=f"{PREFIX}/posts/14/comments", qos=1, payload=b"allowed")
    assert client.next_message().payload == b"allowed"  # RECEIVE refused: silently not delivered
    client.assert_nothing_arrives()


def _expired_session_url(iot) -> tuple[str, str]:
    """(client id, URL) from keys this account issued that expired a second ago."""
    from notifier.aws.policies import dumps, session_policy

    client_id = new_client_id(42)
    policy = dumps(session_policy(region=REGION, account=ACCOUNT, prefix=PREFIX, client_id=client_id, user_id=42))
    issued = iot.account.sessions.issue(
        role_arn=ROLE_ARN, session_name="herald-42", policy=policy, duration=900, now=time.time() - 901
    )
    url = presign_wss_url(endpoint=iot.ws_endpoint, region=REGION, access_key_id=issued.access_key_id,
                          secret_access_key=issued.secret_access_key, session_token=issued.session_token,
                          now=datetime.datetime.now(datetime.timezone.utc), expires=900, scheme="ws")
    return client_id, url


def _refused_urls(iot, keys) -> dict[str, str]:
    now = datetime.datetime.now(datetime.timezone.utc)
    signature = urlsplit(keys.url).query.split("X-Amz-Signature=")[1].split("&")[0]
    tampered = signature[:-1] + ("0" if signature[-1] != "0" else "1")
    return {
        "tampered signature": with_param(keys.url, "X-Amz-Signature", tampered),
        "expired URL": keys.presign(iot, now=now - datetime.timedelta(seconds=120), expires=60),
        "not yet valid": keys.presign(iot, now=now + datetime.timedelta(minutes=6)),
        "tampered token": with_param(keys.url, "X-Amz-Security-Token", keys.session_token[:-8] + "AAAAAAA="),
        "no token": keys.url.split("&X-Amz-Security-Token=")[0],
        "unknown key": with_param(keys.url, "X-Amz-Credential",
                                  urlsplit(keys.url).query.split("X-Amz-Credential=")[1].split("&")[0]
                                  .replace("%2F", "/").replace(keys.access_key_id, "ASIA" + "Q" * 16)),
        "wrong region": presign_wss_url(endpoint=iot.ws_endpoint, region="eu-west-1", access_key_id=keys.access_key_id,
                                        secret_access_key=keys.secret_access_key, session_token=keys.session_token,
                                        now=now, expires=900, scheme="ws"),
        "wrong secret": presign_wss_url(endpoint=iot.ws_endpoint, region=REGION, access_key_id=keys.access_key_id,
                                        secret_access_key="x" * 40, session_token=keys.session_token,
                                        now=now, expires=900, scheme="ws"),
        "expired session": _expired_session_url(iot)[1],
        "no signature at all": f"ws://{iot.ws_endpoint}/mqtt",
    }


def test_the_websocket_upgrade_is_refused_with_403_before_any_mqtt(iot):
    keys = vend(iot, root=ROOT_KEYS, user_id=42)
    assert upgrade_status(iot, keys.url) == 101
    statuses = {case: upgrade_status(iot, url) for case, url in _refused_urls(iot, keys).items()}
    assert statuses == {case: 403 for case in statuses}


def test_paho_cannot_open_a_websocket_with_a_tampered_url(iot):
    keys = vend(iot, root=ROOT_KEYS, user_id=42)
    client = Client.over_websocket(_refused_urls(iot, keys)["tampered signature"], keys.client_id)
    try:
        with pytest.raises(Exception, match="(?i)handshake|upgrade|403"):
            client.connect()
    finally:
        client.close()


def test_the_websocket_is_served_on_the_mqtt_path_only(iot):
    keys = vend(iot, root=ROOT_KEYS, user_id=42)
    assert upgrade_status(iot, keys.url.replace("/mqtt?", "/not-mqtt?")) == 404


@pytest.mark.parametrize("case", [
    "tampered signature", "expired URL", "not yet valid", "tampered token", "no token", "unknown key",
    "wrong region", "wrong secret", "expired session", "no signature at all",
])
def test_a_tcp_connect_with_a_bad_presigned_url_gets_connack_5(iot, case):
    keys = vend(iot, root=ROOT_KEYS, user_id=42)
    url = _refused_urls(iot, keys)[case]
    assert raw_connect(iot.mqtt_port, keys.client_id, username="42", password=url) == NOT_AUTHORIZED
    # The same client id with the valid URL still gets in: the refusal was about the credentials.
    assert raw_connect(iot.mqtt_port, keys.client_id, username="42", password=keys.url) == 0


@pytest.mark.parametrize("case", ["other client id", "no password", "no credentials", "not a URL", "will message"])
def test_connect_is_refused_with_connack_5(iot, case):
    keys = vend(iot, root=ROOT_KEYS, user_id=42)
    client_id, kwargs = keys.client_id, {"username": "42", "password": keys.url}
    if case == "other client id":
        client_id = new_client_id(42)  # the session policy allows iot:Connect as the vended id only
    elif case == "no password":
        kwargs = {"username": "42"}
    elif case == "no credentials":
        kwargs = {}
    elif case == "not a URL":
        kwargs["password"] = "hunter2"
    elif case == "will message":
        # amqtt publishes wills (retained too) without topic checks: a will must not get in.
        kwargs["will"] = (user_topic(43), b"planted", True)
    assert raw_connect(iot.mqtt_port, client_id, **kwargs) == NOT_AUTHORIZED
    assert raw_connect(iot.mqtt_port, keys.client_id, username="42", password=keys.url) == 0


def test_a_websocket_client_with_another_client_id_is_closed(iot):
    """The URL is valid, but iot:Connect allows only the vended client id: CONNACK 0x05, closed."""
    keys = vend(iot, root=ROOT_KEYS, user_id=42)
    client = Client.over_websocket(keys.url, new_client_id(42))
    try:
        assert client.connect() == "Not authorized"
        assert client.disconnected.wait(30)
    finally:
        client.close()


@pytest.mark.parametrize("transport", ["tcp", "websockets"])
def test_a_client_publish_disconnects_the_client_and_reaches_nobody(iot, iot_data, connect, transport):
    receiver = connect(42)
    assert receiver.subscribe(user_topic(42)) == 1
    for qos, retain in [(0, False), (1, True)]:
        # A second connection of the same user: its policy covers the topic for receiving, so only
        # the missing iot:Publish stands between it and the receiver.
        publisher = connect(42, transport=transport)
        publisher.paho.publish(user_topic(42), f"planted qos={qos} retain={retain}".encode(), qos=qos, retain=retain)
        assert publisher.disconnected.wait(30), "AWS IoT disconnects a client on an unauthorized publish"
    receiver.assert_nothing_arrives()
    assert receiver.paho.is_connected()

    later = connect(42)
    assert later.subscribe(user_topic(42)) == 1
    later.assert_nothing_arrives()
    assert iot.broker.retained_messages == {}

    # Both subscriptions were live all along: a server publish reaches both.
    iot_data.publish(topic=user_topic(42), qos=1, payload=b"from the server")
    assert receiver.next_message().payload == b"from the server"
    assert later.next_message().payload == b"from the server"


@pytest.mark.parametrize("attacker_clean_session", [True, False])
@pytest.mark.parametrize("attacker_password", ["forged", "own valid keys", None])
def test_session_takeover_with_bad_credentials_fails(iot, iot_data, connect, attacker_clean_session, attacker_password):
    victim = connect(42, clean=attacker_clean_session)
    victim_id = victim.client_id
    assert victim.subscribe(user_topic(42)) == 1

    password = attacker_password
    if attacker_password == "own valid keys":
        password = vend(iot, root=ROOT_KEYS, user_id=43).url  # valid, but for another client id
    elif attacker_password == "forged":
        password = with_param(victim.keys.url, "X-Amz-Signature", "0" * 64)
    for _ in range(2):
        code = raw_connect(iot.mqtt_port, victim_id, username="43", password=password, clean=attacker_clean_session)
        assert code == NOT_AUTHORIZED

    assert not victim.disconnected.wait(0.2), "the victim was disconnected"
    assert victim.paho.is_connected()
    iot_data.publish(topic=user_topic(42), qos=1, payload=b"still yours")
    message = victim.next_message()
    assert (message.topic, message.payload) == (user_topic(42), b"still yours")


def test_vended_keys_outlive_an_emulator_restart_with_the_same_root_keys():
    """AWS never forgets the keys it issued: nor does the emulator (the session token carries them)."""
    ports = {"mqtt_port": free_port(), "ws_port": free_port(), "http_port": free_port()}
    first = LocalIoT(**emulator_options(**ports)).start_in_thread()
    try:
        keys = vend(first.iot, root=ROOT_KEYS, user_id=42)
    finally:
        first.stop()
    second = LocalIoT(**emulator_options(**ports)).start_in_thread()
    try:
        for client in (Client.over_websocket(keys.url, keys.client_id),
                       Client.over_tcp(second.iot.mqtt_port, keys.url, keys.client_id)):
            try:
                assert client.connect() == "Success"
                assert client.subscribe(user_topic(42)) == 1
                iot_data_client(second.iot, ROOT_KEYS).publish(topic=user_topic(42), qos=1, payload=b"after restart")
                assert client.next_message().payload == b"after restart"
            finally:
                client.close()
    finally:
        second.stop()
    # Another account (other root keys) does not know them.
    third = LocalIoT(**emulator_options(root_secret_access_key="another-root-secret-000000000000000000", **ports))
    running = third.start_in_thread()
    try:
        assert upgrade_status(running.iot, keys.url) == 403
    finally:
        running.stop()


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
        iot_data_client(iot, (key_id, secret)).publish(topic=user_topic(42), qos=1, payload=b"x")
    assert error_of(exc_info) == (403, "ForbiddenException")
    client.assert_nothing_arrives()


@pytest.mark.parametrize("topic", [
    "herald/prod/users/42/notifications",  # another stage's topics
    "herald/dev/users/42/other",
    "elsewhere",
])
def test_an_http_publish_outside_the_functions_policy_is_forbidden(iot, connect, topic):
    """The root keys carry the dev stage's Lambda policy: iot:Publish on its two topic patterns only."""
    with pytest.raises(ClientError) as exc_info:
        iot_data_client(iot, ROOT_KEYS).publish(topic=topic, qos=1, payload=b"x")
    assert error_of(exc_info) == (403, "ForbiddenException")
    assert "iot:Publish" in exc_info.value.response["Error"]["Message"]


def test_browser_keys_cannot_publish_over_http(iot, connect):
    client = connect(42)
    assert client.subscribe(user_topic(42)) == 1
    with pytest.raises(ClientError) as exc_info:
        session_keys_client(iot, client.keys).publish(topic=user_topic(42), qos=1, payload=b"x")
    assert error_of(exc_info) == (403, "ForbiddenException")
    client.assert_nothing_arrives()


def test_publish_signed_too_long_ago_is_forbidden(iot, monkeypatch):
    sign_as_of(monkeypatch, datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=6))
    with pytest.raises(ClientError) as exc_info:
        iot_data_client(iot, ROOT_KEYS).publish(topic=user_topic(42), qos=1, payload=b"x")
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
    status, headers, _ = raw_http(iot, "POST", "/connections/herald-u1-x")
    assert (status, headers["x-amzn-ErrorType"]) == (405, "MethodNotAllowedException")


def test_huge_body_is_refused_unread(iot):
    with socket.create_connection(("127.0.0.1", iot.http_port), timeout=30) as sock:
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


def test_the_publish_rate_is_a_token_bucket_on_the_clock_it_is_given():
    from notifier.localiot.publish_api import PublishRate

    now = [0.0]
    bucket = PublishRate(4, clock=lambda: now[0])  # bursts of one second's worth
    assert [bucket.take() for _ in range(5)] == [True] * 4 + [False]
    now[0] += 0.25
    assert [bucket.take(), bucket.take()] == [True, False]
    now[0] += 60  # a long pause refills the burst, never more
    assert [bucket.take() for _ in range(5)] == [True] * 4 + [False]

    slow = PublishRate(0.5, clock=lambda: now[0])  # under one a second: still one publish at a time
    assert [slow.take(), slow.take()] == [True, False]
    now[0] += 1.5
    assert not slow.take()
    now[0] += 0.5
    assert slow.take()

    bursty = PublishRate(1, burst=3, clock=lambda: now[0])
    assert [bursty.take() for _ in range(4)] == [True] * 3 + [False]
    with pytest.raises(ValueError):
        PublishRate(1, burst=0.5)


# --- DeleteConnection -----------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["tcp", "websockets"])
def test_delete_connection_closes_a_live_socket_at_once(iot, iot_data, connect, transport):
    client = connect(42, transport=transport)
    bystander = connect(42)
    assert client.subscribe(user_topic(42)) == 1
    assert bystander.subscribe(user_topic(42)) == 1
    response = iot_data.delete_connection(clientId=client.client_id)
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert client.disconnected.wait(30)
    iot_data.publish(topic=user_topic(42), qos=1, payload=b"after")
    assert bystander.next_message().payload == b"after"
    client.assert_nothing_arrives()
    # Gone now: AWS answers 404 for a client that is not connected.
    with pytest.raises(ClientError) as exc_info:
        iot_data.delete_connection(clientId=client.client_id)
    assert error_of(exc_info) == (404, "ResourceNotFoundException")


def test_delete_connection_of_an_unknown_client_is_404(iot_data):
    with pytest.raises(ClientError) as exc_info:
        iot_data.delete_connection(clientId=new_client_id(42))
    assert error_of(exc_info) == (404, "ResourceNotFoundException")


def test_delete_connection_needs_iot_delete_connection(iot, connect):
    victim = connect(42)
    # Browser keys (role and session policy have no iot:DeleteConnection).
    with pytest.raises(ClientError) as exc_info:
        session_keys_client(iot, connect(43).keys).delete_connection(clientId=victim.client_id)
    assert error_of(exc_info) == (403, "ForbiddenException")
    # Root keys, but a client id outside the Lambda policy's client/herald-u* (checked before existence).
    with pytest.raises(ClientError) as exc_info:
        iot_data_client(iot, ROOT_KEYS).delete_connection(clientId="someone-else")
    assert error_of(exc_info) == (403, "ForbiddenException")
    assert not victim.disconnected.wait(0.3)
    assert victim.paho.is_connected()


def test_delete_connection_is_refused_to_a_function_without_the_permission():
    policy = stage_policy("dev")
    policy["Statement"] = [s for s in policy["Statement"] if s["Action"] != "iot:DeleteConnection"]
    running = LocalIoT(**emulator_options(root_policy=policy)).start_in_thread()
    try:
        keys = vend(running.iot, root=ROOT_KEYS, user_id=42)
        client = Client.over_tcp(running.iot.mqtt_port, keys.url, keys.client_id)
        try:
            assert client.connect() == "Success"
            with pytest.raises(ClientError) as exc_info:
                iot_data_client(running.iot, ROOT_KEYS).delete_connection(clientId=keys.client_id)
            assert error_of(exc_info) == (403, "ForbiddenException")
            assert not client.disconnected.wait(0.3)
        finally:
            client.close()
    finally:
        running.stop()


@pytest.mark.parametrize("clean_session", [False, True])
def test_delete_connection_clean_session_decides_whether_a_persistent_session_survives(
    iot, iot_data, connect, clean_session
):
    keys = vend(iot, root=ROOT_KEYS, user_id=42)
    client = connect(42, keys=keys, clean=False)
    assert client.subscribe(user_topic(42)) == 1
    iot_data.delete_connection(clientId=keys.client_id, cleanSession=clean_session)
    assert client.disconnected.wait(30)
    session = iot.broker.sessions.get(keys.client_id)
    assert wait_for(lambda: (iot.broker.sessions.get(keys.client_id) is None) == clean_session or (
        session is not None and session[0].transitions.state != "connected" and not clean_session
    ))
    iot_data.publish(topic=user_topic(42), qos=1, payload=b"while away")
    again = connect(42, keys=keys, clean=False)
    if clean_session:
        again.assert_nothing_arrives()  # subscriptions and queue went with the session
    else:
        assert again.next_message(timeout=30).payload == b"while away"


# --- construction ---------------------------------------------------------------------------------


def test_a_failed_start_leaves_nothing_bound():
    mqtt_port = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        iot = LocalIoT(**emulator_options(mqtt_port=mqtt_port, ws_port=taken.getsockname()[1]))
        with pytest.raises(Exception, match="address already in use"):
            iot.start_in_thread()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", mqtt_port))  # the MQTT listener that did bind was closed again


def test_port_1883_is_refused():
    with pytest.raises(ValueError):
        LocalIoT(**emulator_options(mqtt_port=1883))


@pytest.mark.parametrize("bad", [
    {"root_policy": {"Statement": []}},
    {"roles": {ROLE_ARN: {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "iot:*"}]}}},
    {"account": "12345"},
    {"root_secret_access_key": ""},
])
def test_bad_construction_arguments_are_refused(bad):
    with pytest.raises(ValueError):
        LocalIoT(**emulator_options(**bad))


# --- the management command -------------------------------------------------------------------------


def test_runlocaliot_serves_the_settings_account_and_stops_on_sigterm():
    from notifier.aws.local import root_credentials

    for _ in range(5):
        # A free port may be taken again before the emulator binds it (another process's outgoing
        # connection gets it as its local port): then the emulator exits saying so, and it is
        # started again on other ports.
        ports = {"LOCALIOT_MQTT_PORT": free_port(), "LOCALIOT_WS_PORT": free_port(), "LOCALIOT_HTTP_PORT": free_port()}
        env = os.environ | {name: str(port) for name, port in ports.items()} | {"LOCALIOT_HOST": "127.0.0.1"}
        process = subprocess.Popen(
            [sys.executable, "manage.py", "runlocaliot"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )
        line = process.stdout.readline()  # printed once all three listeners are bound
        if line:
            break
        failure = process.stderr.read()  # it exited
        process.wait(timeout=60)
        if "address already in use" not in failure:
            break
    try:
        for port in ports.values():
            assert f":{port}" in line, line or failure

        class Running:  # what tests/iot_keys.py needs to know about an emulator
            http_url = f"http://127.0.0.1:{ports['LOCALIOT_HTTP_PORT']}"
            ws_endpoint = f"127.0.0.1:{ports['LOCALIOT_WS_PORT']}"
            region = REGION

        root = root_credentials()  # the settings' keys: SECRET_KEY is shared through the environment
        keys = vend(Running, root=root, user_id=42)
        client = Client.over_websocket(keys.url, keys.client_id)
        try:
            assert client.connect() == "Success"
            assert client.subscribe(user_topic(42)) == 1
            iot_data_client(Running, root).publish(topic=user_topic(42), qos=1, payload=b"hi")
            assert client.next_message().payload == b"hi"
        finally:
            client.close()

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()
        process.stderr.close()


# --- what the web process may import ---------------------------------------------------------------


def test_config_sts_and_policy_need_no_amqtt():
    code = (
        "import sys\n"
        "import notifier.localiot.config, notifier.localiot.sts, notifier.localiot.policy\n"
        "import notifier.localiot.accounts, notifier.localiot.sessions, notifier.localiot.sigv4\n"
        "assert 'amqtt' not in sys.modules, 'amqtt was imported'\n"
        "from django.conf import settings\n"
        "assert not settings.configured\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr


def test_the_web_path_never_imports_the_emulator():
    code = (
        "import sys, django\n"
        "django.setup()\n"
        "import config.urls, config.wsgi, notifier.api, notifier.views, notifier.aws.issuer, notifier.push.publisher\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('notifier.localiot') or m.startswith('amqtt'))\n"
        "assert not loaded, loaded\n"
    )
    env = os.environ | {"DJANGO_SETTINGS_MODULE": "config.settings"}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
