"""LocalIoT: the emulator's three listeners (MQTT/TCP, MQTT/WebSocket, HTTP API) as one service.

Everything is passed in as plain arguments (no Django settings here), so tests can start one on
free ports with their own keys; `python manage.py runlocaliot` passes the project's settings
through notifier.localiot.config.options_from_settings().
"""
import asyncio
import logging
import threading

from collections.abc import Mapping

from . import gate
from .accounts import Account
from .broker import WS_PATH, HeraldBroker
from .publish_api import PublishServer
from .webpush import PREFIX as PUSH_PREFIX
from .webpush import LocalPushService

log = logging.getLogger(__name__)

# How long a disconnected persistent (clean session = false) session keeps its subscriptions and
# queued QoS 1 messages: AWS IoT's default persistent session expiry.
SESSION_EXPIRY_SECONDS = 3600
FORBIDDEN_PORT = 1883  # a system MQTT broker may own it

MQTT_LISTENER = "default"  # amqtt requires a listener named "default"
WS_LISTENER = "ws"


def _bind(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class LocalIoT:
    """The local AWS IoT emulator: one AWS account's IoT Core and STS.

    The account (notifier.localiot.accounts) is `account` in `region`, reached with the root key
    pair `root_access_key_id` / `root_secret_access_key`, whose IAM policy is `root_policy` (an
    IAM policy document; Herald passes the stage's Lambda permissions). `roles` maps each role
    ARN that STS may hand out sessions for to that role's policy document. Every MQTT client and
    HTTP call is authenticated with SigV4 against these keys and the sessions STS issued, and
    judged against the caller's policies, as IoT Core and STS would.

    Port 0 picks a free port; the bound ports are reported by the properties once started. Use a
    literal address for `host` with port 0 ("localhost" may bind IPv4 and IPv6 on different ports).

    Limits on MQTT clients (TCP and WebSocket alike, see notifier.localiot.gate):
    `connect_timeout` seconds to send a complete CONNECT after connecting, `max_connections`
    concurrent connections over both listeners (more are closed at once), and `max_packet_bytes`
    per packet (AWS IoT's 128 KB message limit; a bigger packet closes the connection). The HTTP
    API has its own cap, `max_http_connections` (by default twice the keep-alive pools of 8 web and
    2 task workers, gate.MAX_HTTP_CONNECTIONS); at the cap a new connection closes the oldest idle
    keep-alive one, as a load balancer does, and only when none is idle is it answered 503 with
    Retry-After (botocore retries that). The API answers 429 past `max_publish_rate` publishes a
    second (unset: no limit; settable while running, see PublishServer.limit_publishes). The soft
    open-files limit is raised to fit both caps where the hard limit allows; otherwise both caps are
    lowered to fit (with a warning).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        mqtt_port: int = 0,
        ws_port: int = 0,
        http_port: int = 0,
        root_access_key_id: str,
        root_secret_access_key: str,
        region: str = "us-east-1",
        account: str,
        root_policy: Mapping,
        roles: Mapping[str, Mapping],
        connect_timeout: float = gate.CONNECT_TIMEOUT,
        max_connections: int = gate.MAX_CONNECTIONS,
        max_packet_bytes: int = gate.MAX_PACKET_BYTES,
        max_http_connections: int = gate.MAX_HTTP_CONNECTIONS,
        max_publish_rate: float | None = None,
    ):
        for name, port in (("mqtt_port", mqtt_port), ("ws_port", ws_port), ("http_port", http_port)):
            if port == FORBIDDEN_PORT:
                raise ValueError(f"{name} must not be {FORBIDDEN_PORT}: a system MQTT broker may own that port.")
        self.account = Account(
            root_access_key_id=root_access_key_id,
            root_secret_access_key=root_secret_access_key,
            region=region,
            account=account,
            root_policy=root_policy,
            roles=roles,
        )
        if not connect_timeout > 0:
            raise ValueError("connect_timeout must be positive.")
        if min(max_connections, max_packet_bytes, max_http_connections) < 1:
            raise ValueError("max_connections, max_packet_bytes and max_http_connections must be positive.")
        self.connect_timeout = connect_timeout
        self.max_connections = max_connections
        self.max_packet_bytes = max_packet_bytes
        self.max_http_connections = max_http_connections
        self._max_publish_rate = max_publish_rate
        self.host = host
        self._requested = {"mqtt": mqtt_port, "ws": ws_port, "http": http_port}
        self._broker: HeraldBroker | None = None
        self._http: PublishServer | None = None
        self._ports: dict[str, int] = {}
        # The local Web Push service on the HTTP port (notifier.localiot.webpush).
        self.push_service = LocalPushService()

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind all three listeners; on failure nothing is left running."""
        if self._broker is not None:
            raise RuntimeError("LocalIoT is already running.")
        gate.install_accept_error_handler(asyncio.get_running_loop())
        mqtt_cap, http_cap = gate.fit_connection_caps(self.max_connections, self.max_http_connections)
        limiter = gate.ConnectionLimiter(mqtt_cap)
        broker = HeraldBroker(  # must be created inside the running loop
            self._broker_config(),
            account=self.account,
            limiter=limiter,
            connect_timeout=self.connect_timeout,
            max_packet_bytes=self.max_packet_bytes,
        )
        try:
            await broker.start()
        except BaseException:
            await broker.close_listeners()
            raise
        http = PublishServer(
            account=self.account,
            push_service=self.push_service,
            deliver=self.publish,
            disconnect=self.delete_connection,
            max_connections=http_cap,
            max_publish_rate=self._max_publish_rate,
        )
        self._broker = broker
        try:
            await http.start(self.host, self._requested["http"])
        except BaseException:
            self._broker = None
            await broker.shutdown()
            raise
        self._http = http
        self._ports = {
            "mqtt": broker.bound_port(MQTT_LISTENER),
            "ws": broker.bound_port(WS_LISTENER),
            "http": http.port,
        }
        log.info("Local IoT emulator listening: %s %s %s", self.mqtt_url, self.ws_url, self.http_url)

    async def stop(self) -> None:
        """Close the HTTP side first (no new messages), then the broker."""
        http, broker = self._http, self._broker
        self._http = self._broker = None
        if http is not None:
            await http.stop()
        if broker is not None:
            await broker.shutdown()
        log.info("Local IoT emulator stopped")

    async def publish(self, topic: str, payload: bytes, qos: int) -> None:
        """Deliver a message to the subscribers allowed to receive it (never retained).

        QoS 0 is forced, QoS 1 leaves each subscription's granted QoS in charge (at most 1, see
        HeraldBroker.add_subscription), so every subscriber gets min(publish QoS, granted QoS) as
        MQTT requires.
        """
        if self._broker is None:
            raise RuntimeError("LocalIoT is not running.")
        await self._broker.deliver(topic, payload, 0 if qos == 0 else None)

    async def delete_connection(self, client_id: str, clean_session: bool = False) -> bool:
        """Drop a connected client at once (iot-data DeleteConnection); False if it is not connected."""
        if self._broker is None:
            raise RuntimeError("LocalIoT is not running.")
        return await self._broker.delete_connection(client_id, clean_session)

    def start_in_thread(self, *, timeout: float = 10.0) -> "LocalIoTThread":
        """Run the emulator on its own event loop in a daemon thread (for tests and scripts)."""
        return LocalIoTThread(self, timeout=timeout)

    # -- addresses -------------------------------------------------------------------------------

    def _port(self, name: str) -> int:
        if not self._ports:
            raise RuntimeError("LocalIoT has not been started.")
        return self._ports[name]

    @property
    def mqtt_port(self) -> int:
        return self._port("mqtt")

    @property
    def ws_port(self) -> int:
        return self._port("ws")

    @property
    def http_port(self) -> int:
        return self._port("http")

    @property
    def region(self) -> str:
        return self.account.region

    def _url_host(self) -> str:
        return f"[{self.host}]" if ":" in self.host else self.host

    @property
    def mqtt_url(self) -> str:
        return f"mqtt://{self._url_host()}:{self.mqtt_port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self._url_host()}:{self.ws_port}{WS_PATH}"

    @property
    def ws_endpoint(self) -> str:
        """host:port of the WebSocket listener: what a presigned ws:// URL names (presign_wss_url's endpoint)."""
        return f"{self._url_host()}:{self.ws_port}"

    @property
    def http_url(self) -> str:
        """The boto3 `endpoint_url` for the iot-data and sts clients."""
        return f"http://{self._url_host()}:{self.http_port}"

    @property
    def push_origin(self) -> str:
        """The local Web Push service's origin (for WEB_PUSH_EXTRA_ORIGINS)."""
        return self.http_url

    def push_endpoint(self, token: str | None = None) -> str:
        """A subscription endpoint on the local Web Push service (any token works)."""
        return f"{self.http_url}{PUSH_PREFIX}{token or self.push_service.new_token()}"

    @property
    def publish_api(self) -> PublishServer:
        """The HTTP API (its `max_publish_rate` can be changed while it runs)."""
        if self._http is None:
            raise RuntimeError("LocalIoT is not running.")
        return self._http

    @property
    def broker(self) -> HeraldBroker:
        """The running amqtt broker (for inspection in tests)."""
        if self._broker is None:
            raise RuntimeError("LocalIoT is not running.")
        return self._broker

    def _broker_config(self) -> dict:
        return {
            "listeners": {
                MQTT_LISTENER: {"type": "tcp", "bind": _bind(self.host, self._requested["mqtt"])},
                WS_LISTENER: {"type": "ws", "bind": _bind(self.host, self._requested["ws"])},
            },
            "session_expiry_interval": SESSION_EXPIRY_SECONDS,
            # Replaces amqtt's default plugins, so anonymous access and $SYS topics are off.
            "plugins": {
                "notifier.localiot.plugins.GrantAuthPlugin": {},
                "notifier.localiot.plugins.PolicyTopicPlugin": {},
            },
        }


class LocalIoTThread:
    """A LocalIoT running in a background thread; stop() shuts it down and joins the thread."""

    def __init__(self, iot: LocalIoT, *, timeout: float = 10.0):
        self.iot = iot
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_requested: asyncio.Event | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="localiot", daemon=True)
        self._thread.start()
        if not self._started.wait(timeout):
            raise TimeoutError("The local IoT emulator did not start in time.")
        if self._error is not None:
            self._thread.join(timeout)
            raise self._error

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop_requested = asyncio.Event()
        try:
            await self.iot.start()
        except BaseException as exc:  # reported to the starting thread
            self._error = exc
            self._started.set()
            return
        self._started.set()
        try:
            await self._stop_requested.wait()
        finally:
            await self.iot.stop()

    def stop(self, timeout: float = 10.0) -> None:
        if self._thread.is_alive() and self._loop is not None and self._stop_requested is not None:
            try:
                self._loop.call_soon_threadsafe(self._stop_requested.set)
            except RuntimeError:  # the loop already closed
                pass
        self._thread.join(timeout)

    def __enter__(self) -> LocalIoT:
        return self.iot

    def __exit__(self, *exc_info) -> None:
        self.stop()
