"""Connection hardening in front of amqtt: a connection cap, a CONNECT deadline and packet framing.

amqtt 0.12.1 trusts its peers: it waits forever for a CONNECT, buffers packets of any announced
size (up to MQTT's 256 MB), keeps a connection open after a malformed remaining length, has no
limit on concurrent connections and answers an MQTT 5 CONNECT with an unhandled OSError. A laptop
tool that a stray client can wedge is still a bug, so every MQTT connection (TCP and WebSocket)
goes through this module before amqtt sees it:

* ConnectionLimiter caps concurrent connections; an MQTT connection over the cap is closed at once
  and reported in one rate-limited log line with the number refused. (The HTTP API uses one too,
  but closes its oldest idle keep-alive connection first: see notifier.localiot.publish_api.)
* FramedReader sits between amqtt and the socket and hands amqtt whole packets only. It reads each
  fixed header itself and refuses, before reading any of the body, a packet whose remaining length
  is malformed (a continuation bit on the 4th length byte) or over MAX_PACKET_BYTES (AWS IoT's
  128 KB message limit); the connection is then closed and amqtt sees a plain end of stream.
* admit_first_packet() reads the first packet under a deadline, insists that it is a CONNECT and
  refuses anything but MQTT 3.1.1 with CONNACK 0x01 (unacceptable protocol version), logged in one
  line, before amqtt is involved.

fit_connection_caps() makes room for both caps in the process's open-files limit, or shrinks them
to fit it.

Nothing here imports amqtt: the reader only needs an object with amqtt's `read(n)` contract.
"""
import asyncio
import errno
import logging
import resource
import time
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

# AWS IoT Core's message size limit. Client packets are CONNECT, SUBSCRIBE, PING..., all far smaller.
MAX_PACKET_BYTES = 128 * 1024
CONNECT_TIMEOUT = 10.0
MAX_CONNECTIONS = 1000

# The HTTP API's publishers are Herald's processes, and botocore keeps every connection of a
# client's pool open between requests (keep-alive). A realistic local setup is 8 web workers and 2
# task workers; each process has two iot-data publisher clients (urgent and patient) pooling
# PUSH_CONCURRENCY + 8 connections each (notifier.push.publisher), two DeleteConnection clients of
# 8 (notifier.live_clients) and an STS client with botocore's default pool of 10.
LOCAL_PROCESSES = 8 + 2
PUSH_CONCURRENCY = 8  # settings.PUSH_CONCURRENCY's default
# Twice what those processes hold with every pool full, so a few more processes (a shell, a
# benchmark) fit as well before idle connections have to be closed.
HTTP_CAP_MARGIN = 2


def pooled_http_connections(push_concurrency: int = PUSH_CONCURRENCY, processes: int = LOCAL_PROCESSES) -> int:
    """The HTTP connections `processes` Herald processes keep open with all their pools full."""
    per_process = 2 * (push_concurrency + 8) + 2 * 8 + 10
    return processes * per_process


def http_connection_cap(push_concurrency: int = PUSH_CONCURRENCY) -> int:
    """The HTTP API's connection cap for Herald's processes at this PUSH_CONCURRENCY, with margin."""
    return HTTP_CAP_MARGIN * pooled_http_connections(push_concurrency)


# 1,160 with the default PUSH_CONCURRENCY: the 580 connections of ten processes' full pools, twice.
MAX_HTTP_CONNECTIONS = http_connection_cap()
# Connections past the HTTP cap when none is idle are kept just long enough to read their request
# and answer 503 with Retry-After (which botocore retries); more than this many at once are closed.
HTTP_OVERFLOW = 32
# asyncio accepts up to this many connections per listener in one go (its default backlog) before
# any of them reaches a connection handler that could refuse it.
ACCEPT_BURST = 100
# Descriptors kept free beyond the two caps: HTTP's overflow, an accept burst on each of the three
# listeners, and the listeners, Python and Django themselves.
DESCRIPTOR_RESERVE = HTTP_OVERFLOW + 3 * ACCEPT_BURST + 64
REFUSAL_LOG_INTERVAL = 5.0

CONNECT = 1
MQTT_311_LEVEL = 4
# CONNACK, remaining length 2, no session present, return code 0x01: unacceptable protocol version.
CONNACK_UNACCEPTABLE_PROTOCOL = b"\x20\x02\x00\x01"

# accept() errors meaning "out of descriptors or memory": retried after a pause, never in a loop.
ACCEPT_RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


class PacketRefused(Exception):
    """A packet that is not accepted (too big, malformed, unexpected); the connection is closed."""


class RateLimitedLog:
    """Log a recurring event at most once per `interval` seconds, with how often it happened."""

    def __init__(
        self, logger: logging.Logger, level: int, message: str, interval: float = REFUSAL_LOG_INTERVAL,
        *, clock: Callable[[], float] = time.monotonic,
    ):
        self._logger = logger
        self._level = level
        self._message = message  # formatted with count=..., plus any keyword arguments
        self._interval = interval
        self._clock = clock
        self._count = 0
        self._total = 0
        self._last = float("-inf")

    @property
    def total(self) -> int:
        return self._total

    def hit(self, **details) -> None:
        self._count += 1
        self._total += 1
        now = self._clock()
        if now - self._last >= self._interval:
            self._last = now
            self._logger.log(self._level, self._message.format(count=self._count, **details))
            self._count = 0


class ConnectionLimiter:
    """Counts open connections across listeners; refuses new ones over `max_connections`."""

    def __init__(
        self, max_connections: int = MAX_CONNECTIONS, *, kind: str = "MQTT", log_interval: float = REFUSAL_LOG_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ):
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1.")
        self.max_connections = max_connections
        self.open = 0
        self._refusals = RateLimitedLog(
            log,
            logging.WARNING,
            kind + " connection limit of {limit} reached: refused {count} connection(s) since the last report "
            "(the emulator is meant for a handful of local clients).",
            log_interval,
            clock=clock,
        )

    @property
    def refused(self) -> int:
        return self._refusals.total

    @property
    def full(self) -> bool:
        return self.open >= self.max_connections

    def try_acquire(self) -> bool:
        if self.open >= self.max_connections:
            self._refusals.hit(limit=self.max_connections)
            return False
        self.open += 1
        return True

    def release(self) -> None:
        self.open = max(0, self.open - 1)


class FramedReader:
    """amqtt's ReaderAdapter contract over another one, handing out whole, checked packets only.

    `inner.read(n)` returns n bytes, fewer at end of stream, or raises IncompleteReadError /
    ConnectionError (amqtt's stream and WebSocket adapters do all of these). A refused packet calls
    `abort` (which must close the connection at once) and reads as end of stream from then on.
    """

    def __init__(
        self,
        inner,
        *,
        peer: str,
        abort: Callable[[], None],
        max_packet_bytes: int = MAX_PACKET_BYTES,
    ):
        self._inner = inner
        self.peer = peer
        self._abort = abort
        self._max_packet_bytes = max_packet_bytes
        self._buffer = bytearray()
        self._header = bytearray()
        self._closed = False
        # Who the WebSocket upgrade authenticated (a TCP client is authenticated by its CONNECT).
        self.identity = None

    async def _read_exactly(self, n: int) -> bytes:
        try:
            data = await self._inner.read(n)
        except asyncio.IncompleteReadError as exc:
            data = exc.partial
        except (ConnectionError, OSError):
            data = b""
        return data or b""

    async def read_packet(self) -> bytes | None:
        """The next whole packet; None at end of stream. Raises PacketRefused (connection not closed yet).

        Safe to cancel (amqtt reads under a keep-alive timeout): the fixed header read so far is
        kept for the next call, and the body is read in one `read` (asyncio's readexactly, which
        consumes nothing until it can return everything).
        """
        header = self._header
        while len(header) < 2 or header[-1] & 0x80:
            if len(header) == 5:
                raise PacketRefused(f"malformed remaining length {header[1:].hex()} (continuation bit on the 4th byte)")
            byte = await self._read_exactly(1)
            if not byte:
                return None  # the peer left, maybe inside a fixed header: just an end of stream
            header += byte
        length = sum((byte & 0x7F) << (7 * position) for position, byte in enumerate(header[1:]))
        if length > self._max_packet_bytes:
            raise PacketRefused(
                f"packet type {header[0] >> 4} of {length} bytes is over the {self._max_packet_bytes} byte limit"
            )
        body = await self._read_exactly(length) if length else b""
        self._header = bytearray()
        if len(body) < length:
            return None
        return bytes(header) + body

    def refuse(self, reason: str) -> None:
        """Close the connection for `reason` (one log line); reads return end of stream afterwards."""
        if not self._closed:
            self._closed = True
            log.info("Closed MQTT connection from %s: %s.", self.peer, reason)
            self._abort()

    def stop_reading(self) -> None:
        """Read as end of stream from now on, leaving the connection for the owner to close."""
        self._closed = True

    def unread(self, packet: bytes) -> None:
        self._buffer[:0] = packet

    async def read(self, n: int = -1) -> bytes:
        if n < 0:
            raise ValueError("FramedReader reads a given number of bytes only.")
        while len(self._buffer) < n and not self._closed:
            try:
                packet = await self.read_packet()
            except PacketRefused as exc:
                self.refuse(str(exc))
                break
            if packet is None:
                break
            self._buffer += packet
        data = bytes(self._buffer[:n])
        del self._buffer[:n]
        return data

    def feed_eof(self) -> None:
        self._inner.feed_eof()


def _connect_protocol(packet: bytes) -> tuple[str | None, int | None]:
    """(protocol name, protocol level) of a CONNECT packet, None where it is unreadable."""
    header_size = 1
    while packet[header_size] & 0x80:
        header_size += 1
    body = packet[header_size + 1:]
    if len(body) < 2:
        return None, None
    name_length = int.from_bytes(body[:2], "big")
    if len(body) < 2 + name_length + 1:
        return None, None
    try:
        name = body[2:2 + name_length].decode("utf-8")
    except UnicodeDecodeError:
        return None, None
    return name, body[2 + name_length]


async def admit_first_packet(
    reader: FramedReader, *, write: Callable[[bytes], Awaitable[None]], connect_timeout: float
) -> bool:
    """Read the first packet within `connect_timeout`; True if it is an MQTT 3.1.1 CONNECT.

    The CONNECT is put back for amqtt to read. Otherwise False is returned, and the connection is
    already aborted, except after a CONNACK 0x01 for a CONNECT of another MQTT version: that one is
    left for the caller to close gracefully, so the CONNACK is not lost to a reset.
    """
    try:
        packet = await asyncio.wait_for(reader.read_packet(), connect_timeout)
    except asyncio.TimeoutError:
        reader.refuse(f"no complete CONNECT within {connect_timeout:g} s")
        return False
    except PacketRefused as exc:
        reader.refuse(str(exc))
        return False
    if packet is None:
        reader.refuse("closed before CONNECT")
        return False
    if packet[0] >> 4 != CONNECT:
        reader.refuse(f"first packet has type {packet[0] >> 4}, not CONNECT")
        return False
    name, level = _connect_protocol(packet)
    if name in ("MQTT", "MQIsdp") and level != MQTT_311_LEVEL:
        version = {3: "MQTT 3.1", 5: "MQTT 5"}.get(level, f"protocol level {level}")
        log.warning(
            "Refused MQTT client at %s: it speaks %s, this emulator (like Herald's clients) speaks MQTT 3.1.1 only. "
            "Sent CONNACK 0x01 (unacceptable protocol version).",
            reader.peer,
            version,
        )
        try:
            await asyncio.wait_for(write(CONNACK_UNACCEPTABLE_PROTOCOL), 1.0)
        except Exception:  # the peer is gone already, or does not read: closed either way
            pass
        reader.stop_reading()  # not aborted: the caller's graceful close lets the CONNACK arrive
        return False
    # Anything else (a bad protocol name, ...) is amqtt's to judge, as before.
    reader.unread(packet)
    return True


def split_descriptors(open_files: int, max_connections: int, max_http_connections: int) -> tuple[int, int]:
    """(MQTT cap, HTTP cap) that fit `open_files` descriptors: what is left after DESCRIPTOR_RESERVE,
    shared in proportion to the caps asked for (at least one connection each)."""
    needed = max_connections + max_http_connections
    available = open_files - DESCRIPTOR_RESERVE
    if available >= needed:
        return max_connections, max_http_connections
    available = max(2, available)
    http = min(max_http_connections, max(1, round(available * max_http_connections / needed)))
    return max(1, available - http), http


def fit_connection_caps(max_connections: int, max_http_connections: int) -> tuple[int, int]:
    """Raise the soft open-files limit so both caps fit; (MQTT cap, HTTP cap) that actually fit.

    With the default soft limit of 1,024 descriptors, 1,000 MQTT connections and the HTTP pools of
    ten Herald processes would not fit beside the listeners and Python itself, and running out of
    descriptors is exactly what makes accept() fail in a loop. Where the hard limit forbids the
    room, both caps shrink (with a warning) rather than letting accept() fail.
    """
    needed = max_connections + max_http_connections + DESCRIPTOR_RESERVE
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (OSError, ValueError):  # pragma: no cover - platform dependent
        return max_connections, max_http_connections
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (OSError, ValueError):
            pass
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return max_connections, max_http_connections
    mqtt, http = split_descriptors(soft, max_connections, max_http_connections)
    log.warning(
        "Only %d open files allowed (ulimit -n): capping MQTT connections at %d instead of %d "
        "and HTTP connections at %d instead of %d.",
        soft,
        mqtt,
        max_connections,
        http,
        max_http_connections,
    )
    return mqtt, http


def install_accept_error_handler(loop: asyncio.AbstractEventLoop) -> None:
    """Report accept() running out of descriptors once per few seconds instead of on every retry.

    asyncio (3.11) already pauses a listener for a second after such an error, but it logs a
    traceback for each failed accept, up to a hundred a second per listener.
    """
    previous = loop.get_exception_handler()
    if getattr(previous, "_localiot_accept_errors", False):
        return
    report = RateLimitedLog(
        log,
        logging.ERROR,
        "accept() failed {count} time(s) for lack of resources ({error}); retrying after a pause. "
        "Too many open connections?",
    )

    def handler(loop, context):
        exception = context.get("exception")
        if (
            isinstance(exception, OSError)
            and exception.errno in ACCEPT_RESOURCE_ERRNOS
            and str(context.get("message", "")).startswith("socket.accept()")
        ):
            report.hit(error=exception.strerror or exception)
            return
        if previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    handler._localiot_accept_errors = True
    loop.set_exception_handler(handler)
