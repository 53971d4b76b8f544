"""The emulator serves every publisher a realistic local setup opens, over real sockets.

8 web workers and 2 task workers each keep two iot-data publisher clients (urgent and patient)
whose botocore pools hold PUSH_CONCURRENCY + 8 keep-alive connections open between requests, plus
the DeleteConnection and STS clients' pools. Here those ten processes' connections are opened
against one emulator with its default caps: the publisher pools filled by as many publishes in
flight at once as the pools hold (the emulator holds each publish until all are in flight, so each
pool must open every connection it has), the other pools as idle keep-alive sockets. Then several
threads publish through the full pools. Every publish must succeed at its one attempt and reach an
MQTT subscriber; no connection may be refused or closed to make room.
"""
import asyncio
import random
import socket
import threading
import time

import boto3
import pytest
from botocore.config import Config

from notifier.localiot import gate

from .iot_keys import PREFIX, ROOT_KEYS, iot, vend  # noqa: F401 (iot: fixture)
from .mqtt_client import Client

PROCESSES = gate.LOCAL_PROCESSES  # 8 web workers + 2 task workers
PUBLISHER_CLIENTS = 2  # urgent and patient, per process
POOL = gate.PUSH_CONCURRENCY + 8  # each publisher client's max_pool_connections
# Per process: two DeleteConnection clients of 8 connections and an STS client of botocore's 10.
OTHER_POOLED = 2 * 8 + 10
TOPIC = f"{PREFIX}/users/42/notifications"
DEADLINE = 240.0  # generous: 320 threads signing on a loaded two-core machine


def wait_for(condition, timeout: float = DEADLINE) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def publisher_client(iot):
    """A client like Herald's urgent publisher (one attempt: any refusal is a failure here), with
    timeouts that leave room for a loaded machine."""
    return boto3.client(
        "iot-data", endpoint_url=iot.http_url, region_name=iot.region, aws_access_key_id=ROOT_KEYS[0],
        aws_secret_access_key=ROOT_KEYS[1],
        config=Config(retries={"total_max_attempts": 1}, connect_timeout=30, read_timeout=DEADLINE + 60,
                      tcp_keepalive=True, max_pool_connections=POOL),
    )


class HeldDelivery:
    """Holds every publish inside the emulator until `count` are in flight at once, then lets them
    all through: each botocore pool then has to open all of its connections."""

    def __init__(self, deliver, count: int):
        self._deliver = deliver
        self.count = count
        self.in_flight = 0
        self._loop = None
        self._release = None

    async def __call__(self, topic, payload, qos):
        if self._release is None:
            self._loop, self._release = asyncio.get_running_loop(), asyncio.Event()
        self.in_flight += 1
        if self.in_flight >= self.count:
            self._release.set()
        await self._release.wait()
        return await self._deliver(topic, payload, qos)

    def release(self) -> None:
        if self._release is not None:
            self._loop.call_soon_threadsafe(self._release.set)


def idle_keep_alive_socket(iot) -> socket.socket:
    """A connection that has had one answer and is kept open for the next request, as a pool keeps it."""
    sock = socket.create_connection(("127.0.0.1", iot.http_port), timeout=DEADLINE)
    sock.sendall(b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n")
    answer = b""
    while b"\r\n\r\n" not in answer or not answer.endswith(b"}"):
        chunk = sock.recv(4096)
        assert chunk, f"closed after {answer!r}"
        answer += chunk
    assert answer.startswith(b"HTTP/1.1 404") and b"Connection: keep-alive" in answer
    return sock


def test_ten_processes_full_pools_are_served_without_a_refusal(iot, monkeypatch):
    api = iot.publish_api
    assert api.limiter.max_connections >= PROCESSES * (PUBLISHER_CLIENTS * POOL + OTHER_POOLED)
    refused, evicted = api.limiter.refused, api.evicted
    keys = vend(iot, root=ROOT_KEYS, user_id=42)
    subscriber = Client.over_tcp(iot.mqtt_port, keys.url, keys.client_id)
    clients, others, sent, errors = [], [], [], []
    held = HeldDelivery(iot.broker.deliver, PROCESSES * PUBLISHER_CLIENTS * POOL)
    try:
        assert subscriber.connect() == "Success"
        assert subscriber.subscribe(TOPIC) == 1
        clients = [publisher_client(iot) for _ in range(PROCESSES * PUBLISHER_CLIENTS)]
        monkeypatch.setattr(iot.broker, "deliver", held)

        def publish(client, payload: bytes) -> None:
            try:
                client.publish(topic=TOPIC, qos=1, payload=payload)
            except Exception as exc:  # noqa: BLE001 - every failure is reported below
                errors.append(f"{payload!r}: {exc!r}")

        fill = []
        for c, client in enumerate(clients):
            for t in range(POOL):
                payload = f"fill {c}.{t}".encode()
                sent.append(payload)
                fill.append(threading.Thread(target=publish, args=(client, payload)))
        for thread in fill:
            thread.start()
        all_in_flight = wait_for(lambda: held.in_flight >= held.count or bool(errors))
        held.release()
        for thread in fill:
            thread.join(DEADLINE)
        assert all_in_flight and not errors, errors[:5]
        # Every pool is full and its connections stay open, idle, for the next publishes.
        assert wait_for(lambda: api.idle_connections >= held.count, 30)

        # The same processes' DeleteConnection and STS pools, open and idle as well.
        others = [idle_keep_alive_socket(iot) for _ in range(PROCESSES * OTHER_POOLED)]
        assert api.limiter.open >= PROCESSES * (PUBLISHER_CLIENTS * POOL + OTHER_POOLED)

        # Several threads publish through the full pools at once.
        def publish_many(lane: int) -> None:
            picker = random.Random(lane)
            for n in range(40):
                payload = f"lane {lane}.{n}".encode()
                sent.append(payload)
                publish(picker.choice(clients), payload)

        lanes = [threading.Thread(target=publish_many, args=(lane,)) for lane in range(8)]
        for thread in lanes:
            thread.start()
        for thread in lanes:
            thread.join(DEADLINE)
        assert not errors, errors[:5]

        received = set()
        deadline = time.monotonic() + DEADLINE
        while len(received) < len(sent) and time.monotonic() < deadline:
            try:
                received.add(subscriber.next_message(timeout=1).payload)
            except Exception:  # queue.Empty: keep waiting until the deadline
                pass
        assert received == set(sent), f"{len(set(sent) - received)} of {len(sent)} publishes never arrived"
        assert (api.limiter.refused - refused, api.evicted - evicted) == (0, 0)  # none refused, none closed
        for sock in others:  # and the idle ones were left open
            sock.setblocking(False)
            with pytest.raises(BlockingIOError):
                sock.recv(1)
    finally:
        held.release()
        subscriber.close()
        for sock in others:
            sock.close()
        for client in clients:
            client.close()
