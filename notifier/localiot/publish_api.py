"""The emulator's HTTP API: AWS IoT's data plane (Publish, DeleteConnection) and STS, on asyncio streams.

    POST   /topics/{url-encoded topic}?qos=0|1      body = payload         iot-data Publish
    DELETE /connections/{url-encoded client id}?cleanSession=&preventWillMessage=
                                                                           iot-data DeleteConnection
    POST   /   Action=AssumeRole&...                                       STS (notifier.localiot.sts)
    /push/...                                                              a local Web Push service
                                                                           (notifier.localiot.webpush;
                                                                           VAPID, not SigV4)

is all Herald calls, so that is all this serves; boto3's `iot-data` and `sts` clients with
`endpoint_url` pointing here work unchanged. Every call is SigV4-signed and judged against the
SIGNING identity's IAM policies (notifier.localiot.accounts): the root key pair carries the stage's
Lambda policy, STS sessions their role and session policies. Status codes and error shapes are
AWS's (for iot-data: JSON `{"message": ...}` plus the `x-amzn-ErrorType` header botocore reads the
error code from; for STS: its XML), so `ClientError.response["Error"]["Code"]` and the HTTP status
are what production would give:

    403 ForbiddenException              missing, malformed or wrong SigV4 signature, stale date,
                                        unknown or expired keys, or a call the caller's policies do
                                        not allow (iot:Publish on topic/{topic}, iot:DeleteConnection
                                        on client/{clientId})
    400 InvalidRequestException         invalid topic or client id, qos not 0 or 1, bad request
    413 RequestEntityTooLargeException  payload over 128 KB
    429 ThrottlingException             over `max_publish_rate` publishes/s (off unless set: AWS
                                        throttles an account past its publish limit, and this lets
                                        Herald's back-off be tried locally)
    404 ResourceNotFoundException       DeleteConnection for a client that is not connected; any
                                        other path
    405 MethodNotAllowedException       another method on /topics/... or /connections/...
    503 ServiceUnavailableException     at the connection cap with no idle connection to close
                                        (Retry-After: 1; botocore retries it)

A small hand-written HTTP/1.1 server rather than a web framework: it needs three routes, keep-alive
(botocore pools connections) and Content-Length bodies, and the emulator then needs no dependency
beyond amqtt. Chunked request bodies are refused (botocore always sends Content-Length).

Every Herald process keeps its botocore pools' connections open between requests, so most open
connections are idle. At the connection cap a new connection therefore closes the connection that
has been idle longest (botocore's pool hands out its most recently used connection first, and
finds a closed one before using it), as a load balancer does; a publisher is never refused for
sockets nobody is using. Only when every connection is in the middle of a request is the new one
answered 503 with Retry-After, which botocore retries, rather than dropped.
"""
import asyncio
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from email.utils import formatdate
from http import HTTPStatus
from urllib.parse import parse_qs, unquote

from . import gate, sts, topics
from .webpush import PREFIX as PUSH_PREFIX
from .webpush import LocalPushService
from .accounts import Account, Identity
from .sigv4 import SignatureError, verify_request

log = logging.getLogger(__name__)

MAX_PAYLOAD_BYTES = 128 * 1024  # AWS IoT's message size limit
# Bodies up to this size are read so the signature can be checked before the size is judged;
# anything bigger is refused unread.
MAX_BODY_READ = 1024 * 1024
MAX_HEADER_BYTES = 32 * 1024
IDLE_TIMEOUT = 60.0
READ_TIMEOUT = 30.0
# A connection past the cap has this long to send the request it is answered 503 to.
OVERFLOW_READ_TIMEOUT = 5.0
RETRY_AFTER_SECONDS = 1
TOPICS_PREFIX = "/topics/"
CONNECTIONS_PREFIX = "/connections/"
MAX_CLIENT_ID_CHARS = 128

Deliver = Callable[[str, bytes, int], Awaitable[None]]
# disconnect(client_id, clean_session) -> whether that client was connected
Disconnect = Callable[[str, bool], Awaitable[bool]]


class HttpError(Exception):
    """An iot-data error answer in AWS's shape: status, x-amzn-ErrorType and {"message": ...}."""

    def __init__(self, status: int, code: str, message: str, *, close: bool = False, retry_after: int | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.close = close
        self.retry_after = retry_after


class _Response:
    def __init__(
        self, status: int, body: bytes = b"", content_type: str = "application/json", error_code: str | None = None,
        retry_after: int | str | None = None, headers: dict | None = None,
    ):
        self.status = status
        self.body = body
        self.content_type = content_type
        self.error_code = error_code
        self.retry_after = retry_after
        self.headers = headers or {}

    @classmethod
    def json(cls, status: int, body: dict, error_code: str | None = None, retry_after: int | None = None) -> "_Response":
        return cls(status, json.dumps(body).encode(), "application/json", error_code, retry_after)


class _Connection:
    """One accepted HTTP connection; `counted` while it holds a place under the cap."""

    __slots__ = ("writer", "counted")

    def __init__(self, writer: asyncio.StreamWriter):
        self.writer = writer
        self.counted = False


class _Request:
    def __init__(self, method: str, target: str, version: str, headers: list[tuple[str, str]]):
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers
        self.body = b""

    def header(self, name: str) -> str | None:
        name = name.lower()
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None

    @property
    def keep_alive(self) -> bool:
        connection = (self.header("connection") or "").lower()
        if self.version == "HTTP/1.0":
            return "keep-alive" in connection
        return "close" not in connection


class PublishRate:
    """A token bucket: `rate` publishes a second, bursts of up to `burst` (one second's worth, at
    least one publish, unless given); it starts full.

    `clock` is injectable so that a test of throttling depends on the clock it is given, never on
    how fast the machine sends.
    """

    def __init__(self, rate: float, *, burst: float | None = None, clock=time.monotonic):
        if not rate > 0:
            raise ValueError("max_publish_rate must be positive.")
        burst = max(1.0, rate) if burst is None else burst
        if not burst >= 1:
            raise ValueError("burst must be at least one publish.")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = burst
        self._at = clock()

    def take(self) -> bool:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + max(0.0, now - self._at) * self.rate)
        self._at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


class PublishServer:
    """Answers signed iot-data (Publish, DeleteConnection) and STS requests for one local account.

    Publishes go to `deliver`, DeleteConnection to `disconnect`. `throttled` counts the publishes
    refused with 429 (see `max_publish_rate`), `evicted` the idle connections closed to make room
    for new ones, `limiter.refused` the connections answered 503 because none was idle.
    """

    def __init__(
        self,
        *,
        account: Account,
        deliver: Deliver,
        disconnect: Disconnect,
        max_connections: int = gate.MAX_HTTP_CONNECTIONS,
        max_publish_rate: float | None = None,
        push_service: LocalPushService | None = None,
    ):
        self.push_service = push_service or LocalPushService()
        # The cap keeps sockets from using up the process's file descriptors; at the cap the
        # longest-idle connection makes room, or the new one is answered 503 (rate-limited logs).
        self.limiter = gate.ConnectionLimiter(max_connections, kind="HTTP")
        self._evictions = gate.RateLimitedLog(
            log,
            logging.INFO,
            "HTTP connection limit of {limit} reached: closed {count} idle keep-alive connection(s) "
            "since the last report to make room.",
        )
        self.account = account
        self._deliver = deliver
        self._disconnect = disconnect
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.StreamWriter] = set()
        # Connections waiting for their next request, longest idle first (dicts keep insertion order).
        self._idle: dict[_Connection, None] = {}
        self._overflow = 0
        self.max_publish_rate = max_publish_rate
        self.throttled = 0

    @property
    def evicted(self) -> int:
        return self._evictions.total

    @property
    def idle_connections(self) -> int:
        """Open connections waiting for their next request (the ones that make room at the cap)."""
        return len(self._idle)

    @property
    def max_publish_rate(self) -> float | None:
        return self._rate.rate if self._rate else None

    @max_publish_rate.setter
    def max_publish_rate(self, rate: float | None) -> None:
        self.limit_publishes(rate)

    def limit_publishes(self, rate: float | None, *, burst: float | None = None, clock=time.monotonic) -> None:
        """Answer 429 past `rate` publishes a second (None: no limit), bursts of `burst`, timed by `clock`."""
        self._rate = PublishRate(rate, burst=burst, clock=clock) if rate else None

    async def start(self, host: str, port: int) -> None:
        self._server = await asyncio.start_server(self._serve_connection, host, port, limit=MAX_HEADER_BYTES)

    @property
    def port(self) -> int:
        return self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        # Idle keep-alive connections would otherwise outlive the server (and, on Python 3.12+,
        # keep wait_closed() waiting).
        for writer in list(self._connections):
            writer.close()
        await self._server.wait_closed()
        self._server = None

    def _make_room(self) -> None:
        """At the cap, close the connection that has been idle longest (its place goes at once)."""
        if not self.limiter.full or not self._idle:
            return
        oldest = next(iter(self._idle))
        del self._idle[oldest]
        oldest.counted = False
        self.limiter.release()
        oldest.writer.close()  # its handler sees an end of stream and leaves
        self._evictions.hit(limit=self.limiter.max_connections)

    async def _serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = _Connection(writer)
        self._make_room()
        if self.limiter.try_acquire():
            connection.counted = True
        elif self._overflow >= gate.HTTP_OVERFLOW:
            writer.transport.abort()
            return
        self._connections.add(writer)
        try:
            if connection.counted:
                await self._serve_requests(connection, reader, writer)
            else:
                self._overflow += 1
                try:
                    await self._refuse_busy(reader, writer)
                finally:
                    self._overflow -= 1
        except (asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            pass
        except Exception:
            log.exception("HTTP connection failed")
        except asyncio.CancelledError:
            pass  # only at exit (Python 3.11's start_server would log a cancelled task as an error)
        finally:
            self._idle.pop(connection, None)
            if connection.counted:
                connection.counted = False
                self.limiter.release()
            self._connections.discard(writer)
            writer.close()

    async def _serve_requests(self, connection: _Connection, reader: asyncio.StreamReader, writer) -> None:
        keep_alive = True
        while keep_alive:
            # Idle (and first to be closed at the cap) until the next request's first byte arrives.
            self._idle[connection] = None
            try:
                first = await asyncio.wait_for(reader.read(1), IDLE_TIMEOUT)
            except (asyncio.TimeoutError, ConnectionError):
                return
            finally:
                self._idle.pop(connection, None)
            if not first or not connection.counted:
                return  # the client closed an idle keep-alive connection, or it made room for another
            request = await asyncio.wait_for(self._read_head(reader, first), READ_TIMEOUT)
            try:
                await self._read_body(request, reader, writer)
                response = await self._handle(request)
                keep_alive = request.keep_alive
            except HttpError as exc:
                response = _Response.json(exc.status, {"message": exc.message}, exc.code, exc.retry_after)
                keep_alive = request.keep_alive and not exc.close
            await self._respond(writer, response, keep_alive)

    async def _refuse_busy(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Past the cap with no idle connection: read the request (so closing does not reset the
        answer away) and answer 503 with Retry-After, which botocore retries."""
        first = await asyncio.wait_for(reader.read(1), OVERFLOW_READ_TIMEOUT)
        if not first:
            return
        request = await asyncio.wait_for(self._read_head(reader, first), OVERFLOW_READ_TIMEOUT)
        try:
            await asyncio.wait_for(self._read_body(request, reader, writer), OVERFLOW_READ_TIMEOUT)
        except HttpError:
            pass  # refused all the same
        message = f"The connection limit of {self.limiter.max_connections} is reached; retry shortly."
        response = _Response.json(503, {"message": message}, "ServiceUnavailableException", RETRY_AFTER_SECONDS)
        await self._respond(writer, response, keep_alive=False)

    async def _read_head(self, reader: asyncio.StreamReader, first: bytes) -> _Request:
        """The request whose first byte, `first`, was read already (a malformed one reads as method "?")."""
        try:
            head = first + await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            return _Request("?", "/", "HTTP/1.1", [("Connection", "close")])  # answered 400 below
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            return _Request("?", "/", "HTTP/1.1", [("Connection", "close")])
        headers = []
        for line in lines[1:]:
            if not line:
                continue
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip():
                return _Request("?", "/", "HTTP/1.1", [("Connection", "close")])
            headers.append((name, value.strip()))
        return _Request(parts[0], parts[1], parts[2], headers)

    async def _read_body(self, request: _Request, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if request.method == "?":
            raise HttpError(400, "InvalidRequestException", "Malformed HTTP request.", close=True)
        if request.header("transfer-encoding") is not None:
            raise HttpError(400, "InvalidRequestException", "Chunked request bodies are not supported.", close=True)
        length_header = request.header("content-length") or "0"
        if not length_header.isdigit():
            raise HttpError(400, "InvalidRequestException", "Invalid Content-Length.", close=True)
        length = int(length_header)
        if length > MAX_BODY_READ:
            raise HttpError(
                413, "RequestEntityTooLargeException", f"Payload exceeds the {MAX_PAYLOAD_BYTES} byte limit.", close=True
            )
        if (request.header("expect") or "").lower() == "100-continue":
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            await writer.drain()
        request.body = await asyncio.wait_for(reader.readexactly(length), READ_TIMEOUT) if length else b""

    async def _handle(self, request: _Request) -> _Response:
        path, _, query = request.target.partition("?")
        if path.startswith(PUSH_PREFIX) or path == PUSH_PREFIX.rstrip("/"):
            return self._push(request, path)
        if path == "/":
            status, body = sts.handle(
                self.account, method=request.method, target=request.target, headers=request.headers, body=request.body
            )
            return _Response(status, body, sts.CONTENT_TYPE)
        if path.startswith(TOPICS_PREFIX):
            if request.method != "POST":
                raise HttpError(405, "MethodNotAllowedException", f"Method {request.method[:20]} is not allowed on /topics/.")
            return await self._publish(request, path, query)
        if path.startswith(CONNECTIONS_PREFIX):
            if request.method != "DELETE":
                raise HttpError(
                    405, "MethodNotAllowedException", f"Method {request.method[:20]} is not allowed on /connections/."
                )
            return await self._delete_connection(request, path, query)
        raise HttpError(404, "ResourceNotFoundException", f"No resource at {path[:200]}.")

    def _push(self, request: _Request, path: str) -> _Response:
        """The local Web Push service: its own authentication (VAPID), not SigV4."""
        host = request.header("host") or f"127.0.0.1:{self.port}"
        status, body, headers = self.push_service.handle(
            request.method, path.rstrip("/") + "/" if path == PUSH_PREFIX.rstrip("/") else path,
            request.header, request.body, f"http://{host}")
        retry_after = headers.pop("Retry-After", None)
        return _Response(status, json.dumps(body).encode() if body else b"", retry_after=retry_after, headers=headers)

    def _caller(self, request: _Request) -> Identity:
        """The identity that signed this iot-data request; 403 ForbiddenException otherwise."""
        now = time.time()
        try:
            return verify_request(
                method=request.method,
                target=request.target,
                headers=request.headers,
                body=request.body,
                resolve=lambda key_id, token: self.account.resolve(key_id, token, now),
                region=self.account.region,
                now=now,
            )
        except SignatureError as exc:
            raise HttpError(403, "ForbiddenException", exc.message) from None

    def _authorize(self, caller: Identity, action: str, resource: str) -> None:
        if not self.account.allowed(caller, action, resource):
            log.info("Refused %s %s on %s.", caller.arn, action, resource)
            raise HttpError(
                403, "ForbiddenException", f"User: {caller.arn} is not authorized to perform: {action} on resource: {resource}"
            )

    async def _publish(self, request: _Request, path: str, query: str) -> _Response:
        caller = self._caller(request)
        try:
            topic = unquote(path[len(TOPICS_PREFIX):], errors="strict")
        except UnicodeDecodeError:
            raise HttpError(400, "InvalidRequestException", "Topic name must be valid UTF-8.") from None
        problem = topics.publish_topic_error(topic)
        if problem:
            raise HttpError(400, "InvalidRequestException", problem)
        qos_values = parse_qs(query, keep_blank_values=True).get("qos", ["0"])
        if len(qos_values) != 1 or qos_values[0] not in ("0", "1"):
            raise HttpError(400, "InvalidRequestException", "qos must be 0 or 1.")
        self._authorize(caller, "iot:Publish", self.account.iot_arn("topic", topic))
        if len(request.body) > MAX_PAYLOAD_BYTES:
            raise HttpError(
                413, "RequestEntityTooLargeException", f"Payload exceeds the {MAX_PAYLOAD_BYTES} byte limit."
            )
        if self._rate is not None and not self._rate.take():
            self.throttled += 1
            raise HttpError(429, "ThrottlingException", "Rate exceeded")
        # `retain` and the MQTT 5 properties are ignored: nothing is ever retained here, so no
        # message can reach a later subscriber without its RECEIVE check.
        await self._deliver(topic, request.body, int(qos_values[0]))
        return _Response.json(200, {"message": "OK", "traceId": str(uuid.uuid4())})

    async def _delete_connection(self, request: _Request, path: str, query: str) -> _Response:
        """iot-data DeleteConnection: authorised by iot:DeleteConnection on client/{clientId}.

        Authorisation comes before existence, so a caller without the right learns nothing about
        who is connected. `preventWillMessage` has nothing to prevent: the emulator refuses
        CONNECTs that carry a will (see notifier.localiot.broker).
        """
        caller = self._caller(request)
        try:
            client_id = unquote(path[len(CONNECTIONS_PREFIX):], errors="strict")
        except UnicodeDecodeError:
            raise HttpError(400, "InvalidRequestException", "Client id must be valid UTF-8.") from None
        if not client_id or client_id.startswith("$") or len(client_id) > MAX_CLIENT_ID_CHARS:
            raise HttpError(400, "InvalidRequestException", "Client id must be 1 to 128 characters, not starting with '$'.")
        flags = parse_qs(query, keep_blank_values=True)
        options = {}
        for name in ("cleanSession", "preventWillMessage"):
            values = flags.get(name, ["false"])
            if len(values) != 1 or values[0].lower() not in ("true", "false"):
                raise HttpError(400, "InvalidRequestException", f"{name} must be true or false.")
            options[name] = values[0].lower() == "true"
        self._authorize(caller, "iot:DeleteConnection", self.account.iot_arn("client", client_id))
        if not await self._disconnect(client_id, options["cleanSession"]):
            raise HttpError(404, "ResourceNotFoundException", f"No connected client with id {client_id[:128]}.")
        log.info("DeleteConnection by %s closed %s.", caller.arn, client_id)
        return _Response(200)

    async def _respond(self, writer: asyncio.StreamWriter, response: _Response, keep_alive: bool) -> None:
        lines = [
            f"HTTP/1.1 {response.status} {HTTPStatus(response.status).phrase}",
            f"Content-Type: {response.content_type}",
            f"Content-Length: {len(response.body)}",
            f"Date: {formatdate(usegmt=True)}",
            f"x-amzn-RequestId: {uuid.uuid4()}",
            f"Connection: {'keep-alive' if keep_alive else 'close'}",
        ]
        if response.error_code:
            lines.append(f"x-amzn-ErrorType: {response.error_code}")
        if response.retry_after is not None:
            lines.append(f"Retry-After: {response.retry_after}")
        lines.extend(f"{name}: {value}" for name, value in response.headers.items())
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + response.body)
        await writer.drain()
