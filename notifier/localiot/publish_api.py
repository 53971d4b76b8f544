"""AWS IoT's data-plane Publish over HTTP, on plain asyncio streams.

    POST /topics/{url-encoded topic}?qos=0|1      body = payload

is all Herald's publisher calls, so that is all this serves; boto3's `iot-data` client with
`endpoint_url` pointing here works unchanged. Status codes and error shapes are AWS's (JSON
`{"message": ...}` plus the `x-amzn-ErrorType` header botocore reads the error code from), so
`ClientError.response["Error"]["Code"]` and the HTTP status are what production would give:

    403 ForbiddenException              missing, malformed or wrong SigV4 signature, stale date
    400 InvalidRequestException         invalid topic, qos not 0 or 1, bad request
    413 RequestEntityTooLargeException  payload over 128 KB
    429 ThrottlingException             over `max_publish_rate` publishes/s (off unless set: AWS
                                        throttles an account past its publish limit, and this lets
                                        Herald's back-off be tried locally)
    404 ResourceNotFoundException       any other path
    405 MethodNotAllowedException       any other method on /topics/...

A small hand-written HTTP/1.1 server rather than a web framework: it needs one route, keep-alive
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

from . import gate, topics
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

Deliver = Callable[[str, bytes, int], Awaitable[None]]


class HttpError(Exception):
    """An error answer in AWS's shape: status, x-amzn-ErrorType and {"message": ...}."""

    def __init__(self, status: int, code: str, message: str, *, close: bool = False):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.close = close


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
    """Answers iot-data Publish requests signed with one key pair and hands messages to `deliver`.

    `throttled` counts the publishes refused with 429 (see `max_publish_rate`)."""

    def __init__(
        self,
        *,
        access_key_id: str,
        secret_access_key: str,
        deliver: Deliver,
        max_connections: int = gate.MAX_HTTP_CONNECTIONS,
        max_publish_rate: float | None = None,
    ):
        if not access_key_id or not secret_access_key:
            raise ValueError("An access key id and a secret access key are required.")
        # Connections over the cap are closed at once (one rate-limited log line), so idle
        # sockets cannot use up the process's file descriptors.
        self.limiter = gate.ConnectionLimiter(max_connections, kind="HTTP")
        self._access_key_id = access_key_id
        self._secret_access_key = secret_access_key
        self._deliver = deliver
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
                    status, body, error_code = await self._handle(request)
                    keep_alive = request.keep_alive
                except HttpError as exc:
                    status, body, error_code = exc.status, {"message": exc.message}, exc.code
                    keep_alive = request.keep_alive and not exc.close
                await self._respond(writer, status, body, error_code, keep_alive)
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

    async def _handle(self, request: _Request) -> tuple[int, dict, str | None]:
        path, _, query = request.target.partition("?")
        if not path.startswith(TOPICS_PREFIX):
            raise HttpError(404, "ResourceNotFoundException", f"No resource at {path[:200]}.")
        if request.method != "POST":
            raise HttpError(405, "MethodNotAllowedException", f"Method {request.method[:20]} is not allowed on /topics/.")
        try:
            verify_request(
                method=request.method,
                target=request.target,
                headers=request.headers,
                body=request.body,
                access_key_id=self._access_key_id,
                secret_access_key=self._secret_access_key,
            )
        except SignatureError as exc:
            raise HttpError(403, "ForbiddenException", str(exc)) from None

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
        return 200, {"message": "OK", "traceId": str(uuid.uuid4())}, None

    async def _respond(
        self, writer: asyncio.StreamWriter, status: int, body: dict, error_code: str | None, keep_alive: bool
    ) -> None:
        payload = json.dumps(body).encode()
        lines = [
            f"HTTP/1.1 {status} {HTTPStatus(status).phrase}",
            "Content-Type: application/json",
            f"Content-Length: {len(payload)}",
            f"Date: {formatdate(usegmt=True)}",
            f"x-amzn-RequestId: {uuid.uuid4()}",
            f"Connection: {'keep-alive' if keep_alive else 'close'}",
        ]
        if error_code:
            lines.append(f"x-amzn-ErrorType: {error_code}")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload)
        await writer.drain()
