"""The local IoT emulator cannot be wedged by misbehaving clients (notifier/localiot/gate.py).

The checks talk to a real emulator over real sockets (in this process, or `manage.py runlocaliot`
as a subprocess), with the limits turned down so they run fast: a 0.5 s CONNECT deadline, a cap of
5 connections, a small `ulimit -n`. Two small checks drive the log rate limiting directly.

They must hold on a slow, loaded machine: they wait on conditions, and where a check is about
"at once" or "promptly" it is made against an emulator whose own timeouts are far longer than the
generous deadline, so only the behaviour under test can meet it.
"""
import logging
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from django.test import override_settings

from notifier.aws.policies import new_client_id
from notifier.localiot import gate
from notifier.localiot.server import LocalIoT

from .iot_keys import ROOT_KEYS, Keys, emulator_options, vend
from .live import free_port
from .mqtt_client import Client

ROOT = Path(__file__).resolve().parent.parent
TOPIC = "herald/dev/users/42/notifications"
CONNECT_TIMEOUT = 0.5
# For checks of what happens at once: a CONNECT deadline no slow machine gets near, so "closed at
# once" cannot be the deadline at work.
LONG_CONNECT_TIMEOUT = 120.0
PROMPTLY = 30.0  # far below LONG_CONNECT_TIMEOUT and the HTTP API's 60 s idle timeout
CONNACK_ACCEPTED = b"\x20\x02\x00\x00"
CONNACK_BAD_PROTOCOL = b"\x20\x02\x00\x01"
PINGREQ, PINGRESP = b"\xc0\x00", b"\xd0\x00"


def _start(**limits):
    return LocalIoT(**emulator_options(**limits)).start_in_thread()


@pytest.fixture(scope="module")
def iot():
    running = _start(connect_timeout=CONNECT_TIMEOUT)
    try:
        yield running.iot
    finally:
        running.stop()


@pytest.fixture(scope="module")
def patient_iot():
    """An emulator that waits LONG_CONNECT_TIMEOUT for a CONNECT: what it closes within PROMPTLY
    it closes at once."""
    running = _start(connect_timeout=LONG_CONNECT_TIMEOUT)
    try:
        yield running.iot
    finally:
        running.stop()


# --- raw MQTT ---------------------------------------------------------------------------------------


def _string(value: bytes) -> bytes:
    return struct.pack("!H", len(value)) + value


def _remaining_length(length: int) -> bytes:
    encoded = b""
    while True:
        byte, length = length % 128, length // 128
        encoded += bytes([byte | (0x80 if length else 0)])
        if not length:
            return encoded


def _packet(first_byte: int, body: bytes) -> bytes:
    return bytes([first_byte]) + _remaining_length(len(body)) + body


def connect_packet(keys: Keys | None = None, *, level: int = 4, keepalive: int = 30) -> bytes:
    """A CONNECT with these vended keys' client id and presigned URL as password (or made-up ones)."""
    client_id = keys.client_id if keys else new_client_id(42)
    password = keys.url if keys else "ws://127.0.0.1:1/mqtt?no-credentials"
    properties = b"\x00" if level == 5 else b""  # MQTT 5 adds an (empty) property list
    body = _string(b"MQTT") + bytes([level, 0x80 | 0x40 | 0x02]) + struct.pack("!H", keepalive) + properties
    body += _string(client_id.encode()) + _string(b"42") + _string(password.encode())
    return _packet(0x10, body)


def publish_packet(remaining_length: int) -> bytes:
    """A QoS 0 PUBLISH to TOPIC whose remaining length is exactly `remaining_length`."""
    topic = _string(TOPIC.encode())
    return _packet(0x30, topic + b"x" * (remaining_length - len(topic)))


def open_socket(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=PROMPTLY)  # a guard against a hang only


def wait_for(condition, timeout: float = PROMPTLY) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def read_until_closed(sock: socket.socket, within: float) -> bytes:
    """Everything the server sends until it closes the connection; fails if it is still open after `within` s."""
    deadline = time.monotonic() + within
    received = b""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            pytest.fail(f"the connection is still open after {within} s (received {received!r})")
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(65536)
        except (socket.timeout, TimeoutError):
            pytest.fail(f"the connection is still open after {within} s (received {received!r})")
        except ConnectionResetError:
            return received
        if not chunk:
            return received
        received += chunk


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def connected_socket(iot, *, keepalive: int = 30, keys: Keys | None = None) -> socket.socket:
    """A raw TCP socket with an accepted MQTT 3.1.1 session (keys vended by this emulator's STS)."""
    packet = connect_packet(keys or vend(iot, root=ROOT_KEYS), keepalive=keepalive)  # before the CONNECT deadline starts
    sock = open_socket(iot.mqtt_port)
    sock.sendall(packet)
    assert recv_exactly(sock, 4) == CONNACK_ACCEPTED
    return sock


def assert_alive(sock: socket.socket) -> None:
    sock.sendall(PINGREQ)
    assert recv_exactly(sock, 2) == PINGRESP


def assert_serving(iot, keys: Keys | None = None) -> None:
    with connected_socket(iot, keys=keys) as sock:
        assert_alive(sock)


# --- 1. a deadline for the CONNECT ----------------------------------------------------------------


def test_sockets_that_send_nothing_are_closed_after_the_connect_timeout(iot):
    """amqtt alone would wait for their CONNECT forever."""
    sockets = [open_socket(iot.mqtt_port) for _ in range(50)]
    try:
        started = time.monotonic()
        for sock in sockets:
            assert read_until_closed(sock, within=PROMPTLY) == b""
        assert time.monotonic() - started < PROMPTLY
    finally:
        for sock in sockets:
            sock.close()
    assert_serving(iot)


@pytest.mark.parametrize(
    "partial",
    [
        pytest.param(b"\x10", id="half-a-fixed-header"),
        pytest.param(b"\x10\x64" + b"\x00\x04MQTT", id="a-CONNECT-body-cut-short"),
    ],
)
def test_an_incomplete_connect_is_closed_after_the_connect_timeout(iot, partial):
    with open_socket(iot.mqtt_port) as sock:
        sock.sendall(partial)
        started = time.monotonic()
        assert read_until_closed(sock, within=PROMPTLY) == b""
        assert time.monotonic() - started >= CONNECT_TIMEOUT * 0.8  # the deadline, not an early refusal


def test_the_connect_timeout_also_applies_to_websocket_clients(iot):
    with open_socket(iot.ws_port) as sock:  # not even the HTTP upgrade
        assert read_until_closed(sock, within=PROMPTLY) == b""
    import websockets.sync.client

    url = vend(iot, root=ROOT_KEYS).url
    with websockets.sync.client.connect(url, subprotocols=["mqtt"], open_timeout=PROMPTLY) as ws:
        started = time.monotonic()  # handshake done, no CONNECT sent
        with pytest.raises(websockets.ConnectionClosed):
            ws.recv(timeout=PROMPTLY)
        assert time.monotonic() - started < PROMPTLY


def test_a_connected_client_is_not_subject_to_the_connect_timeout(iot):
    with connected_socket(iot) as sock:
        time.sleep(CONNECT_TIMEOUT * 2)
        assert_alive(sock)


# --- 2. no packet over 128 KB ---------------------------------------------------------------------


def test_a_connect_announcing_256_mb_is_refused_without_waiting(patient_iot):
    with open_socket(patient_iot.mqtt_port) as sock:
        sock.sendall(b"\x10\xff\xff\xff\x7f")  # remaining length 268,435,455
        assert read_until_closed(sock, within=PROMPTLY) == b""  # refused at once, not timed out


def test_a_publish_over_128_kb_closes_the_connection_before_its_body_is_read(iot):
    with connected_socket(iot) as sock:
        # 200 MB announced, 64 KB of it sent: the fixed header alone must get the connection closed.
        sock.sendall(b"\x30" + _remaining_length(200 * 1024 * 1024) + b"\x00\x05hello" + b"x" * 65536)
        assert read_until_closed(sock, within=PROMPTLY) == b""
    assert_serving(iot)


def subscribe_packet(remaining_length: int) -> bytes:
    """A SUBSCRIBE (packet id 1) of two long filters whose remaining length is exactly `remaining_length`."""
    first = 65535  # the longest MQTT string
    second = remaining_length - 2 - (2 + first + 1) - (2 + 1)
    body = b"\x00\x01" + _string(b"x" * first) + b"\x01" + _string(b"y" * second) + b"\x01"
    return _packet(0x82, body)


def test_packets_up_to_128_kb_are_accepted_one_byte_more_is_not(iot):
    limit = gate.MAX_PACKET_BYTES
    assert limit == 128 * 1024
    with connected_socket(iot) as sock:
        sock.sendall(subscribe_packet(limit))  # read whole, then judged: both filters refused
        assert recv_exactly(sock, 6) == b"\x90\x04\x00\x01\x80\x80"
        assert_alive(sock)
    with connected_socket(iot) as sock:
        sock.sendall(subscribe_packet(limit + 1))
        assert read_until_closed(sock, within=PROMPTLY) == b""


def test_a_websocket_message_over_128_kb_closes_the_connection(iot):
    import websockets.sync.client

    keys = vend(iot, root=ROOT_KEYS)
    with websockets.sync.client.connect(keys.url, subprotocols=["mqtt"], open_timeout=PROMPTLY) as ws:
        ws.send(connect_packet(keys))
        assert ws.recv(timeout=PROMPTLY) == CONNACK_ACCEPTED
        ws.send(publish_packet(gate.MAX_PACKET_BYTES + 1024))
        with pytest.raises(websockets.ConnectionClosed):
            ws.recv(timeout=PROMPTLY)


def test_a_packet_split_across_the_keepalive_read_timeout_is_not_lost(iot):
    """amqtt reads each packet under a keep-alive timeout that cancels the read: nothing may be lost."""
    with connected_socket(iot, keepalive=1) as sock:
        packet = _packet(0x82, b"\x00\x01" + _string(b"x" * 995) + b"\x01")  # a SUBSCRIBE of 1,000 bytes
        sock.sendall(packet[:500])
        time.sleep(1.3)
        sock.sendall(packet[500:])
        sock.sendall(PINGREQ[:1])
        time.sleep(1.3)
        sock.sendall(PINGREQ[1:])
        assert recv_exactly(sock, 5) == b"\x90\x03\x00\x01\x80"  # its SUBACK (the filter is refused)
        assert recv_exactly(sock, 2) == PINGRESP


# --- 3. malformed packets -------------------------------------------------------------------------


def test_a_malformed_remaining_length_closes_the_connection(patient_iot):
    with connected_socket(patient_iot) as sock:
        sock.sendall(b"\x30\xff\xff\xff\xff\x01")  # continuation bit on the 4th length byte
        assert read_until_closed(sock, within=PROMPTLY) == b""
    with open_socket(patient_iot.mqtt_port) as sock:  # the same as the very first packet
        sock.sendall(b"\x10\x80\x80\x80\x80\x01")
        assert read_until_closed(sock, within=PROMPTLY) == b""  # at once, not at the CONNECT deadline
    assert_serving(patient_iot)


def test_a_first_packet_that_is_not_a_connect_closes_the_connection(patient_iot):
    with open_socket(patient_iot.mqtt_port) as sock:
        sock.sendall(PINGREQ)
        assert read_until_closed(sock, within=PROMPTLY) == b""  # at once, not at the CONNECT deadline


# --- 4. MQTT 5 ------------------------------------------------------------------------------------


def test_an_mqtt5_connect_gets_connack_0x01_and_one_clear_log_line(iot, caplog):
    caplog.set_level(logging.INFO)
    with open_socket(iot.mqtt_port) as sock:
        sock.sendall(connect_packet(level=5))
        assert read_until_closed(sock, within=PROMPTLY) == CONNACK_BAD_PROTOCOL
    assert wait_for(lambda: any("MQTT 5" in r.getMessage() for r in caplog.records))  # the emulator's thread logs it
    refusals = [r for r in caplog.records if "MQTT 5" in r.getMessage()]
    assert len(refusals) == 1, caplog.text
    assert refusals[0].levelno == logging.WARNING
    assert "3.1.1" in refusals[0].getMessage()
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR], caplog.text
    assert_serving(iot)


def test_an_mqtt5_connect_over_websocket_gets_connack_0x01_too(iot):
    import websockets.sync.client

    url = vend(iot, root=ROOT_KEYS).url
    with websockets.sync.client.connect(url, subprotocols=["mqtt"], open_timeout=PROMPTLY) as ws:
        ws.send(connect_packet(level=5))
        assert ws.recv(timeout=PROMPTLY) == CONNACK_BAD_PROTOCOL
        with pytest.raises(websockets.ConnectionClosed):
            ws.recv(timeout=PROMPTLY)


def test_an_mqtt5_client_library_is_refused_cleanly(iot):
    import paho.mqtt.client as mqtt

    codes = []
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id="v5", protocol=mqtt.MQTTv5, reconnect_on_failure=False
    )
    client.on_connect = lambda c, u, flags, rc, props: codes.append(rc)
    client.connect("127.0.0.1", iot.mqtt_port)
    deadline = time.monotonic() + PROMPTLY
    while not codes and time.monotonic() < deadline:
        client.loop(timeout=0.1)
    client.disconnect()
    # paho reads MQTT 3.1.1's return code 1 as MQTT 5's "unspecified error" (0x80): refused either way.
    assert codes and codes[0].is_failure


# --- 5. a cap on connections ----------------------------------------------------------------------


def test_connections_over_the_cap_are_closed_at_once_and_logged_sparingly(caplog):
    caplog.set_level(logging.INFO)
    running = _start(max_connections=5, connect_timeout=LONG_CONNECT_TIMEOUT)
    iot = running.iot
    held = []
    try:
        held = [open_socket(iot.mqtt_port) for _ in range(3)]
        held += [connected_socket(iot) for _ in range(2)]  # idle or not, all count
        assert wait_for(lambda: iot.broker.limiter.open == 5)

        started = time.monotonic()
        for port in [iot.mqtt_port] * 20 + [iot.ws_port] * 5:
            with open_socket(port) as sock:
                assert read_until_closed(sock, within=PROMPTLY) == b""  # at once, not at the CONNECT deadline
        elapsed = time.monotonic() - started
        assert iot.broker.limiter.refused == 25
        reports = [r for r in caplog.records if "MQTT connection limit of 5 reached" in r.getMessage()]
        # Rate limited: 25 refusals make one line (another per REFUSAL_LOG_INTERVAL a slow machine took).
        assert 1 <= len(reports) <= 1 + elapsed // gate.REFUSAL_LOG_INTERVAL, caplog.text
        assert "refused 1 connection" in reports[0].getMessage()
        for sock in held[3:]:
            assert_alive(sock)  # the admitted connections were not disturbed

        for sock in held:
            sock.close()
        held = []
        assert wait_for(lambda: iot.broker.limiter.open == 0)
        assert_serving(iot)  # recovered: room for new clients again
        keys = vend(iot, root=ROOT_KEYS)
        client = Client.over_websocket(keys.url, new_client_id(42))
        try:
            assert client.connect() != "Success"  # another client id: refused by iot:Connect, so it was admitted
        finally:
            client.close()
    finally:
        for sock in held:
            sock.close()
        running.stop()


def _http_request(sock: socket.socket, *, keep_alive: bool = True) -> bytes:
    """One request on an open socket; the status line and headers of its answer (a 404, body read)."""
    sock.sendall(b"GET /nowhere HTTP/1.1\r\nHost: x\r\n" + (b"" if keep_alive else b"Connection: close\r\n") + b"\r\n")
    return _http_answer(sock)


def _http_answer(sock: socket.socket) -> bytes:
    """The status line and headers of the next answer on this socket (its body read and dropped)."""
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        assert chunk, f"closed after {head!r}"
        head += chunk
    head, _, body = head.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    recv_exactly(sock, length - len(body))
    return head


def test_the_http_api_makes_room_by_closing_its_longest_idle_connection(caplog):
    """At its own cap (3 here) the HTTP API closes the keep-alive connection idle longest, as a
    load balancer does; only when none is idle is a new one answered 503 with Retry-After."""
    caplog.set_level(logging.INFO)
    running = _start(max_http_connections=3)
    iot = running.iot
    api = iot.publish_api
    held = []
    try:
        keys = vend(iot, root=ROOT_KEYS)  # from STS, on the HTTP port, before it is full
        assert wait_for(lambda: api.limiter.open == 0)  # STS's pooled connection went with its client
        held = [open_socket(iot.http_port) for _ in range(3)]
        for sock in held:
            assert _http_request(sock).startswith(b"HTTP/1.1 404")  # now idle keep-alive connections
        assert wait_for(lambda: api.limiter.open == 3)

        with open_socket(iot.http_port) as sock:  # a fourth: the longest idle one makes room
            assert _http_request(sock, keep_alive=False).startswith(b"HTTP/1.1 404")
        assert read_until_closed(held[0], within=PROMPTLY) == b""
        for sock in held[1:]:
            assert _http_request(sock).startswith(b"HTTP/1.1 404")  # the others were left alone
        assert api.evicted == 1 and api.limiter.refused == 0
        assert_serving(iot, keys)  # MQTT has its own, separate cap

        # Three connections in the middle of a request: none is idle, so a fourth is refused, with
        # an answer botocore retries rather than a dropped socket.
        for sock in held:
            sock.close()
        assert wait_for(lambda: api.limiter.open == 0)
        held = [open_socket(iot.http_port) for _ in range(3)]
        for sock in held:
            sock.sendall(b"GET /nowhere HTTP/1.1\r\n")
        assert wait_for(lambda: api.limiter.open == 3 and api.idle_connections == 0)
        with open_socket(iot.http_port) as sock:
            head = _http_request(sock)
            assert head.startswith(b"HTTP/1.1 503 "), head
            assert b"\r\nRetry-After: 1" in head and b"x-amzn-ErrorType: ServiceUnavailableException" in head
            assert b"Connection: close" in head
            assert read_until_closed(sock, within=PROMPTLY) == b""
        assert api.limiter.refused == 1

        import boto3
        from botocore.config import Config
        from botocore.exceptions import ClientError

        patient = boto3.client(
            "iot-data", endpoint_url=iot.http_url, region_name=iot.region, aws_access_key_id=ROOT_KEYS[0],
            aws_secret_access_key=ROOT_KEYS[1],
            config=Config(retries={"mode": "standard", "max_attempts": 3}),  # Herald's patient publisher's
        )
        with pytest.raises(ClientError) as raised:
            patient.publish(topic=TOPIC, qos=1, payload=b"x")
        response = raised.value.response
        assert (response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Code"]) == (
            503, "ServiceUnavailableException"
        )
        assert response["ResponseMetadata"]["RetryAttempts"] == 3  # botocore retried it (max_attempts retries)

        held[0].sendall(b"Host: x\r\n\r\n")  # one request ends: its connection is idle again
        assert _http_answer(held[0]).startswith(b"HTTP/1.1 404")
        assert patient.publish(topic=TOPIC, qos=1, payload=b"x")["ResponseMetadata"]["HTTPStatusCode"] == 200
        patient.close()
        messages = [r.getMessage() for r in caplog.records]
        assert [m for m in messages if "HTTP connection limit of 3 reached: refused" in m], messages
        assert [m for m in messages if "HTTP connection limit of 3 reached: closed 1 idle" in m], messages
    finally:
        for sock in held:
            sock.close()
        running.stop()


def test_refusal_reports_count_what_was_suppressed(caplog):
    caplog.set_level(logging.WARNING, logger="notifier.localiot")
    now = [100.0]
    limiter = gate.ConnectionLimiter(1, log_interval=0.5, clock=lambda: now[0])
    assert limiter.try_acquire()
    for _ in range(10):
        assert not limiter.try_acquire()
    now[0] += 0.25
    assert not limiter.try_acquire()  # still inside the interval: counted, not logged
    now[0] += 0.25
    assert not limiter.try_acquire()
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2
    assert "refused 1 connection" in messages[0]
    assert "refused 11 connection" in messages[1]  # 10 suppressed + this one
    limiter.release()
    assert limiter.try_acquire()


def test_accept_errors_for_lack_of_descriptors_are_reported_once_per_interval(caplog):
    """asyncio (3.11) logs a traceback per failed accept(), up to ~100 a second per listener."""
    import asyncio
    import errno

    caplog.set_level(logging.INFO)
    loop = asyncio.new_event_loop()
    try:
        gate.install_accept_error_handler(loop)
        gate.install_accept_error_handler(loop)  # idempotent
        for _ in range(500):
            loop.call_exception_handler(
                {
                    "message": "socket.accept() out of system resource",
                    "exception": OSError(errno.EMFILE, "Too many open files"),
                }
            )
    finally:
        loop.close()
    assert len(caplog.records) == 1
    assert "accept() failed 1 time" in caplog.records[0].getMessage()
    assert not caplog.records[0].exc_info


# --- the management command: file descriptors and SIGTERM -----------------------------------------

COMMAND_SECRET_KEY = "localiot-hardening-test-secret-key"



def _runlocaliot(ports: dict, *, open_files: int | None = None, **settings_env: str) -> subprocess.Popen:
    """`manage.py runlocaliot` on the given ports, optionally with `ulimit -n open_files`; returns once it serves."""
    env = os.environ | {name: str(port) for name, port in ports.items()}
    env |= {"LOCALIOT_HOST": "127.0.0.1", "DEBUG": "1", "SECRET_KEY": COMMAND_SECRET_KEY, **settings_env}

    def limit_open_files():
        if open_files is not None:
            import resource

            resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, open_files))

    process = subprocess.Popen(
        [sys.executable, "manage.py", "runlocaliot"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=limit_open_files,
    )
    line = process.stdout.readline()  # printed once all three listeners are bound
    if "Local IoT emulator" not in line:
        process.kill()
        pytest.fail(line + process.stderr.read())
    return process


def command_keys(ports: dict) -> Keys:
    """Keys vended by the command's own STS, signed with the root keys its SECRET_KEY gives."""
    from notifier.aws.local import root_credentials

    class Running:  # what tests/iot_keys.py needs to know about an emulator
        http_url = f"http://127.0.0.1:{ports['LOCALIOT_HTTP_PORT']}"
        ws_endpoint = f"127.0.0.1:{ports['LOCALIOT_WS_PORT']}"
        region = "us-east-1"

    with override_settings(SECRET_KEY=COMMAND_SECRET_KEY):
        root = root_credentials()
    return vend(Running, root=root)


def serves_again(ports: dict, within: float = PROMPTLY) -> bool:
    """Whether the command accepts an MQTT client again (vended keys, CONNACK 0) within `within` s."""
    deadline = time.monotonic() + within
    keys = None
    while time.monotonic() < deadline:
        try:
            keys = keys or command_keys(ports)  # STS shares the command's process and its descriptors
            with open_socket(ports["LOCALIOT_MQTT_PORT"]) as sock:
                sock.sendall(connect_packet(keys))
                if recv_exactly(sock, 4) == CONNACK_ACCEPTED:
                    return True
        except Exception:  # refused while it recovers: try again
            pass
        time.sleep(0.2)
    return False


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.kill()
        process.wait()
    process.stdout.close()
    process.stderr.close()


def test_runlocaliot_with_few_file_descriptors_caps_connections_instead_of_failing_accept():
    """With `ulimit -n 500` both caps shrink to fit: 150 idle sockets never make accept() fail."""
    ports = {"LOCALIOT_MQTT_PORT": free_port(), "LOCALIOT_WS_PORT": free_port(), "LOCALIOT_HTTP_PORT": free_port()}
    # No admitted socket reaches its CONNECT deadline while they are counted, however slow the machine.
    process = _runlocaliot(ports, open_files=500, LOCALIOT_CONNECT_TIMEOUT=str(LONG_CONNECT_TIMEOUT),
                           PUSH_CONCURRENCY="8")
    http_asked = gate.http_connection_cap(8)
    cap, http_cap = gate.split_descriptors(500, gate.MAX_CONNECTIONS, http_asked)
    sockets = []
    try:
        port = ports["LOCALIOT_MQTT_PORT"]
        sockets = [open_socket(port) for _ in range(150)]
        for sock in sockets:
            sock.setblocking(False)
        still_open = set(sockets)

        def settled() -> bool:  # the ones over the cap closed; once closed, a socket stays closed
            for sock in list(still_open):
                try:
                    if sock.recv(1) == b"":
                        still_open.discard(sock)
                except BlockingIOError:
                    pass
                except ConnectionResetError:
                    still_open.discard(sock)
            return len(still_open) <= cap

        assert wait_for(settled)
        assert len(still_open) == cap  # the rest were closed at once
        for sock in sockets:
            sock.close()
        sockets = []
        assert serves_again(ports)  # still serving

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=PROMPTLY) == 0
        stderr = process.stderr.read()
        assert (
            f"capping MQTT connections at {cap} instead of 1000 and HTTP connections at {http_cap} instead of "
            f"{http_asked}"
        ) in stderr, stderr
        assert "MQTT connection limit of" in stderr, stderr
        assert "accept()" not in stderr and "Traceback" not in stderr, stderr
    finally:
        for sock in sockets:
            sock.close()
        _stop(process)


def test_runlocaliot_recovers_from_running_out_of_file_descriptors_with_one_log_line():
    """`ulimit -n 60`: a burst of 150 connections makes accept() fail (asyncio accepts up to 100 at
    once, before any can be refused); that is reported once, not per failure, and service resumes."""
    ports = {"LOCALIOT_MQTT_PORT": free_port(), "LOCALIOT_WS_PORT": free_port(), "LOCALIOT_HTTP_PORT": free_port()}
    process = _runlocaliot(ports, open_files=60)
    sockets = []
    try:
        port = ports["LOCALIOT_MQTT_PORT"]
        sockets = [open_socket(port) for _ in range(150)]
        time.sleep(0.3)  # a moment for the burst to be accepted (or not): nothing is asserted on it
        for sock in sockets:
            sock.close()
        sockets = []
        # asyncio pauses a listener for a second after such an error, then accepts the connections
        # still queued (closed by now, but with a cap of 1 they crowd out a new one for a moment).
        assert serves_again(ports)

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=PROMPTLY) == 0
        stderr = process.stderr.read()
        assert stderr.count("accept() failed") <= 1, stderr
        assert "Traceback" not in stderr and "out of system resource" not in stderr, stderr
    finally:
        for sock in sockets:
            sock.close()
        _stop(process)


def test_runlocaliot_exits_promptly_on_sigterm_with_idle_connections_open():
    """Shutdown closes idle and half-open connections itself: it is over within PROMPTLY, long before
    any of them would time out on its own (a 120 s CONNECT deadline, the HTTP API's 60 s idle timeout)."""
    ports = {"LOCALIOT_MQTT_PORT": free_port(), "LOCALIOT_WS_PORT": free_port(), "LOCALIOT_HTTP_PORT": free_port()}
    process = _runlocaliot(ports, LOCALIOT_CONNECT_TIMEOUT=str(LONG_CONNECT_TIMEOUT))
    sockets = []
    try:
        for name, port in ports.items():
            for _ in range(30 if name == "LOCALIOT_MQTT_PORT" else 10):
                sockets.append(open_socket(port))
        # Half a CONNECT, a connection announcing a huge packet, and a WebSocket upgrade started.
        sockets[0].sendall(b"\x10\x64\x00\x04MQTT")
        sockets[1].sendall(b"\x10\xff\xff\xff\x7f")
        sockets[30].sendall(b"GET /mqtt HTTP/1.1\r\nHost: x\r\n")
        time.sleep(0.3)  # a moment for them to reach the emulator: it must end them whatever they did

        process.send_signal(signal.SIGTERM)
        started = time.monotonic()
        try:
            code = process.wait(timeout=PROMPTLY)
        except subprocess.TimeoutExpired:
            pytest.fail(f"runlocaliot was still running {PROMPTLY} s after SIGTERM")
        assert time.monotonic() - started < PROMPTLY
        assert code == 0, process.stderr.read()
        stderr = process.stderr.read()
        assert "Traceback" not in stderr, stderr
    finally:
        for sock in sockets:
            sock.close()
        _stop(process)


def test_runlocaliot_takes_its_limits_from_settings():
    """LOCALIOT_MAX_CONNECTIONS and LOCALIOT_CONNECT_TIMEOUT reach the command's emulator."""
    ports = {"LOCALIOT_MQTT_PORT": free_port(), "LOCALIOT_WS_PORT": free_port(), "LOCALIOT_HTTP_PORT": free_port()}
    process = _runlocaliot(ports, LOCALIOT_MAX_CONNECTIONS="2", LOCALIOT_CONNECT_TIMEOUT="0.5")
    sockets = []
    try:
        for _ in range(3):
            sockets.append(open_socket(ports["LOCALIOT_MQTT_PORT"]))
        started = time.monotonic()
        assert sockets[2].recv(1) == b""  # over the cap of 2: closed at once
        assert sockets[0].recv(1) == b""  # no CONNECT: closed after the 0.5 s timeout...
        assert time.monotonic() - started < gate.CONNECT_TIMEOUT * 0.8  # ... not the default 10 s one
    finally:
        for sock in sockets:
            sock.close()
        _stop(process)
