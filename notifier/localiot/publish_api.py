"""The emulator's HTTP API: AWS IoT's data plane (Publish, DeleteConnection) and STS, on asyncio streams.

    POST   /topics/{url-encoded topic}?qos=0|1      body = payload         iot-data Publish
    DELETE /connections/{url-encoded client id}?cleanSession=&preventWillMessage=
                                                                           iot-data DeleteConnection
    POST   /   Action=AssumeRole&...                                       STS (notifier.localiot.sts)

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

A small hand-written HTTP/1.1 server rather than a web framework: it needs three routes, keep-alive
(botocore pools connections) and Content-Length bodies, and the emulator then needs no dependency
beyond amqtt. Chunked request bodies are refused (botocore always sends Content-Length).
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
TOPICS_PREFIX = "/topics/"
CONNECTIONS_PREFIX = "/connections/"
MAX_CLIENT_ID_CHARS = 128

Deliver = Callable[[str, bytes, int], Awaitable[None]]
# disconnect(client_id, clean_session) -> whether that client was connected
Disconnect = Callable[[str, bool], Awaitable[bool]]


class HttpError(Exception):
    """An iot-data error answer in AWS's shape: status, x-amzn-ErrorType and {"message": ...}."""

    def __init__(self, status: int, code: str, message: str, *, close: bool = False):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.close = close


class _Response:
    def __init__(self, status: int, body: bytes = b"", content_type: str = "application/json", error_code: str | None = None):
        self.status = status
        self.body = body
        self.content_type = content_type
        self.error_code = error_code

    @classmethod
    def json(cls, status: int, body: dict, error_code: str | None = None) -> "_Response":
        return cls(status, json.dumps(body).encode(), "application/json", error_code)


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
    """A token bucket: `rate` publishes a second, bursts of up to one second's worth."""

    def __init__(self, rate: float, clock=time.monotonic):
        if not rate > 0:
            raise ValueError("max_publish_rate must be positive.")
        self.rate = rate
        self._clock = clock
        self._tokens = rate
        self._at = clock()

    def take(self) -> bool:
        now = self._clock()
        self._tokens = min(self.rate, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


class PublishServer:
    """Answers signed iot-data (Publish, DeleteConnection) and STS requests for one local account.

    Publishes go to `deliver`, DeleteConnection to `disconnect`. `throttled` counts the publishes
    refused with 429 (see `max_publish_rate`).
    """

    def __init__(
        self,
        *,
        account: Account,
        deliver: Deliver,
        disconnect: Disconnect,
        max_connections: int = gate.MAX_HTTP_CONNECTIONS,
        max_publish_rate: float | None = None,
    ):
        # Connections over the cap are closed at once (one rate-limited log line), so idle
        # sockets cannot use up the process's file descriptors.
        self.limiter = gate.ConnectionLimiter(max_connections, kind="HTTP")
        self.account = account
        self._deliver = deliver
        self._disconnect = disconnect
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.StreamWriter] = set()
        self.max_publish_rate = max_publish_rate
        self.throttled = 0

    @property
    def max_publish_rate(self) -> float | None:
        return self._rate.rate if self._rate else None

    @max_publish_rate.setter
    def max_publish_rate(self, rate: float | None) -> None:
        self._rate = PublishRate(rate) if rate else None

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

    async def _serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.limiter.try_acquire():
            writer.transport.abort()
            return
        self._connections.add(writer)
        try:
            keep_alive = True
            while keep_alive:
                try:
                    request = await asyncio.wait_for(self._read_head(reader), IDLE_TIMEOUT)
                except (asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError):
                    return
                if request is None:
                    return
                try:
                    await self._read_body(request, reader, writer)
                    response = await self._handle(request)
                    keep_alive = request.keep_alive
                except HttpError as exc:
                    response = _Response.json(exc.status, {"message": exc.message}, exc.code)
                    keep_alive = request.keep_alive and not exc.close
                await self._respond(writer, response, keep_alive)
        except (asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            pass
        except Exception:
            log.exception("HTTP connection failed")
        except asyncio.CancelledError:
            pass  # only at exit (Python 3.11's start_server would log a cancelled task as an error)
        finally:
            self.limiter.release()
            self._connections.discard(writer)
            writer.close()

    async def _read_head(self, reader: asyncio.StreamReader) -> _Request | None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            if not exc.partial.strip():
                return None  # the client closed an idle keep-alive connection
            raise
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
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + response.body)
        await writer.drain()
