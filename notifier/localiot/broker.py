"""The amqtt Broker, with small overrides that make it behave like AWS IoT where it matters.

Every MQTT connection, TCP or WebSocket, also goes through notifier.localiot.gate first: a cap on
concurrent connections, a deadline for the CONNECT, MQTT 3.1.1 only, and no packet over 128 KB.

Authentication is IoT Core's SigV4, with one credential for every kind of client:

* WebSocket: the upgrade request's URL is a SigV4-presigned `/mqtt?X-Amz-…` URL for service
  `iotdevicegateway` (notifier.aws.presign, what browsers get). It is verified before the
  upgrade; an unknown key, expired session, wrong scope, expired URL or bad signature gets HTTP
  403 and no MQTT at all. The CONNECT's username and password are ignored, as on AWS.
* TCP (where AWS would use X.509 client certificates): the CONNECT's password is such a presigned
  `ws://host:port/mqtt?X-Amz-…` URL, verified exactly as the WebSocket one with the Host taken
  from the URL; the username is ignored. A refusal gets CONNACK 0x05.

Then `iot:Connect` on `client/{client id}` is judged against the caller's policies, before any
session is touched; SUBSCRIBE, RECEIVE and PUBLISH are judged by notifier.localiot.plugins.
A CONNECT with a will message is refused: amqtt publishes wills without any topic check, and
Herald's clients have no use for one. Nothing is ever retained (see HeraldBroker.retain_message).
"""
import asyncio
import logging
from functools import partial
from http import HTTPStatus

import websockets
from amqtt.adapters import (
    ReaderAdapter,
    StreamReaderAdapter,
    StreamWriterAdapter,
    WebSocketsReader,
    WebSocketsWriter,
    WriterAdapter,
)
from amqtt.broker import Broker
from amqtt.contexts import Action, ListenerType
from amqtt.errors import AMQTTError, MQTTError, NoDataError
from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler
from amqtt.session import Session
from amqtt.utils import format_client_message, gen_client_id
from websockets.asyncio.server import ServerConnection

from . import gate
from .accounts import Account, Identity
from .plugins import GRANT, Grant
from .sigv4 import SignatureError, verify_presigned

log = logging.getLogger(__name__)

WS_PATH = "/mqtt"
# The signing name of AWS IoT's MQTT-over-WebSocket gateway.
WS_SERVICE = "iotdevicegateway"
# How long DeleteConnection waits for amqtt to register a dropped client before cleaning its session.
DISCONNECT_WAIT = 2.0
# AWS IoT Core supports QoS 0 and 1 only.
MAX_QOS = 1
# How long shutdown waits for amqtt to say goodbye to its clients before dropping the connections:
# a client that does not read would otherwise hold it up forever (amqtt drains before closing).
SHUTDOWN_TIMEOUT = 2.0
# A WebSocket message carries one MQTT packet: the packet limit plus the largest fixed header.
WS_MAX_MESSAGE_BYTES = gate.MAX_PACKET_BYTES + 5


class NotAuthorized(AMQTTError):
    """A CONNECT was refused with CONNACK 0x05 before any session was touched."""


class HeraldBroker(Broker):
    """amqtt's Broker with authentication and iot:Connect moved ahead of session takeover.

    In amqtt 0.12.1, `_initialize_client_session` deletes the existing session of the CONNECT's
    client id (clean session) or adopts it and overwrites its credentials (persistent session),
    and `_handle_client_session` then stops the connected client using that id, all before the
    auth plugins' verdict is acted on. A CONNECT that fails authentication still empties a
    victim's subscriptions or kicks the victim off. Here the CONNECT is authenticated and its
    `iot:Connect` on `client/{client id}` judged first, on the freshly parsed session, and a
    refused client gets CONNACK 0x05 and is closed without looking at the broker's sessions at
    all. Only then does amqtt's own bookkeeping run (the remainder of `_initialize_client_session`
    is amqtt's code, except that an adopted persistent session takes the new connection's Grant).
    amqtt authenticates again in `_handle_client_session`; GrantAuthPlugin just confirms it.

    Herald's session policies allow iot:Connect as one literal client id with a random part, so
    even a client with valid keys of its own cannot aim at someone else's session.

    Connections are admitted by notifier.localiot.gate before amqtt sees them (see that module):
    `limiter` caps concurrent connections over both listeners, `connect_timeout` bounds the wait
    for a CONNECT (and for the WebSocket handshake), `max_packet_bytes` bounds every packet.
    """

    def __init__(
        self,
        config,
        *,
        account: Account,
        limiter: gate.ConnectionLimiter | None = None,
        connect_timeout: float = gate.CONNECT_TIMEOUT,
        max_packet_bytes: int = gate.MAX_PACKET_BYTES,
    ):
        super().__init__(config)
        self.account = account
        self.limiter = limiter or gate.ConnectionLimiter()
        self.connect_timeout = connect_timeout
        self.max_packet_bytes = max_packet_bytes
        # Every open MQTT connection (TCP and WebSocket), and those amqtt has not been handed yet
        # (waiting for their CONNECT or WebSocket handshake): shutdown drops those first.
        self._transports: set[asyncio.BaseTransport] = set()
        self._unadmitted: set[asyncio.BaseTransport] = set()
        self._unadmitted_tasks: set[asyncio.Task] = set()

    async def stream_connected(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, listener_name: str
    ) -> None:
        """A TCP connection: capped, CONNECT within the deadline, then amqtt on checked packets."""
        transport = writer.transport
        if not self.limiter.try_acquire():
            transport.abort()
            return
        task = asyncio.current_task()
        self._transports.add(transport)
        self._unadmitted.add(transport)
        self._unadmitted_tasks.add(task)
        try:
            framed = gate.FramedReader(
                StreamReaderAdapter(reader),
                peer=_peer(writer.get_extra_info("peername")),
                abort=transport.abort,
                max_packet_bytes=self.max_packet_bytes,
            )

            async def write(data: bytes) -> None:
                writer.write(data)
                await writer.drain()

            admitted = await gate.admit_first_packet(framed, write=write, connect_timeout=self.connect_timeout)
            self._unadmitted.discard(transport)
            self._unadmitted_tasks.discard(task)
            if admitted:
                await self._client_connected(listener_name, framed, StreamWriterAdapter(writer))
        except asyncio.CancelledError:
            # Only at exit. Python 3.11's start_server logs a cancelled connection task as an error.
            pass
        finally:
            self.limiter.release()
            self._transports.discard(transport)
            self._unadmitted.discard(transport)
            self._unadmitted_tasks.discard(task)
            if not transport.is_closing():
                transport.close()

    async def ws_connected(self, websocket: ServerConnection, listener_name: str) -> None:
        """A WebSocket connection (already counted by _CappedServerConnection): as stream_connected."""
        framed = gate.FramedReader(
            WebSocketsReader(websocket),
            peer=_peer(websocket.remote_address),
            abort=websocket.transport.abort,
            max_packet_bytes=self.max_packet_bytes,
        )
        framed.identity = getattr(websocket, "herald_identity", None)  # verified at the upgrade
        admitted = await gate.admit_first_packet(framed, write=websocket.send, connect_timeout=self.connect_timeout)
        self._unadmitted.discard(websocket.transport)
        if admitted:
            await self._client_connected(listener_name, framed, WebSocketsWriter(websocket))

    async def shutdown(self) -> None:
        """amqtt's shutdown, bounded in time; whatever is still connected afterwards is dropped.

        Connections amqtt has not been handed yet are dropped first: amqtt does not know them, and
        websockets would otherwise wait for their opening handshakes to time out.
        """
        for transport in list(self._unadmitted):
            transport.abort()
        if self._unadmitted_tasks:
            await asyncio.wait(list(self._unadmitted_tasks), timeout=1)
        try:
            await asyncio.wait_for(super().shutdown(), SHUTDOWN_TIMEOUT)
        except asyncio.TimeoutError:
            log.warning(
                "The broker did not shut down within %g s: dropping the remaining connections.", SHUTDOWN_TIMEOUT
            )
            for server in self._servers.values():
                if server.instance is not None:
                    server.instance.close()
        finally:
            for transport in list(self._transports):
                transport.abort()
            self._transports.clear()

    async def _initialize_client_session(
        self, reader: ReaderAdapter, writer: WriterAdapter, remote_address: str, remote_port: int
    ) -> tuple[BrokerProtocolHandler, Session]:
        try:
            handler, client_session = await BrokerProtocolHandler.init_from_connect(reader, writer, self.plugins_manager)
        except MQTTError as exc:
            await writer.close()
            raise MQTTError(exc) from exc
        except (AMQTTError, NoDataError) as exc:
            raise AMQTTError(exc) from exc

        # The fix: refuse before anything below can touch another client's session.
        grant = self._admit(client_session, reader)
        if grant is None:
            handler.attach(client_session, reader, writer)
            await handler.mqtt_connack_authorize(False)
            await writer.close()
            raise NotAuthorized(
                f"{format_client_message(address=remote_address, port=remote_port)} refused: not authorized"
            )
        client_session.attributes[GRANT] = grant

        # From here on: amqtt 0.12.1's Broker._initialize_client_session, unchanged.
        if client_session.clean_session:
            # Delete existing session and create a new one
            if client_session.client_id is not None and client_session.client_id != "":
                await self._delete_session(client_session.client_id)
            else:
                client_session.client_id = gen_client_id()
            client_session.parent = 0
        # Get session from cache
        elif client_session.client_id in self._sessions:
            existing_client_session, _ = self._sessions[client_session.client_id]
            existing_client_session.will_flag = client_session.will_flag
            existing_client_session.will_message = client_session.will_message
            existing_client_session.will_topic = client_session.will_topic
            existing_client_session.will_qos = client_session.will_qos
            existing_client_session.keep_alive = client_session.keep_alive
            existing_client_session.username = client_session.username
            existing_client_session.password = client_session.password
            existing_client_session.attributes[GRANT] = grant  # this connection's rights, not the last one's
            client_session = existing_client_session
            client_session.parent = 1
        else:
            client_session.parent = 0

        timeout_disconnect_delay = self.config.get("timeout-disconnect-delay", 0)
        if client_session.keep_alive > 0 and isinstance(timeout_disconnect_delay, int):
            client_session.keep_alive += timeout_disconnect_delay
        return handler, client_session

    def _admit(self, session: Session, reader: ReaderAdapter) -> Grant | None:
        """The Grant of an authenticated CONNECT allowed iot:Connect as its client id, else None (logged)."""
        peer = getattr(reader, "peer", "?")
        client_id = session.client_id or ""
        if session.will_flag:
            log.info("Refused %s from %s: will messages are not allowed.", client_id, peer)
            return None
        identity = getattr(reader, "identity", None)
        if identity is None:  # TCP: the password is a presigned URL
            try:
                identity = self.verify_url(session.password)
            except SignatureError as exc:
                log.info("Refused %s from %s: %s (%s).", client_id, peer, exc.code, exc.message)
                return None
        if identity.expired():
            log.info("Refused %s from %s: its credentials have expired.", client_id, peer)
            return None
        grant = Grant(
            account=self.account,
            identity=identity,
            client_id=client_id,
            disconnect=getattr(reader, "refuse", lambda reason: None),
        )
        if not grant.allows("iot:Connect", "client", client_id):
            return None
        return grant

    def verify_url(self, url, *, headers: list[tuple[str, str]] | None = None) -> Identity:
        """The identity that presigned this `ws://host/mqtt?X-Amz-…` URL; SignatureError otherwise.

        `headers` are the WebSocket upgrade's; without them (a TCP CONNECT's password) the Host is
        the URL's own.
        """
        if isinstance(url, bytes):
            url = url.decode("utf-8", "replace")
        if not isinstance(url, str) or not url:
            raise SignatureError("Missing Authentication Token", "MissingAuthenticationToken")
        if headers is None:
            scheme, sep, rest = url.partition("://")
            if not sep or scheme not in ("ws", "wss"):
                raise SignatureError("The password must be a presigned ws:// or wss:// URL.", "IncompleteSignature")
            host, _, target = rest.partition("/")
            headers = [("host", host)]
            target = "/" + target
        else:
            target = url
        path, _, query = target.partition("?")
        if path != WS_PATH:
            raise SignatureError(f"The presigned URL must be for {WS_PATH}.", "IncompleteSignature")
        return verify_presigned(
            method="GET", path=path, query=query, headers=headers, resolve=self.account.resolve,
            region=self.account.region, service=WS_SERVICE,
        )

    async def retain_message(self, source_session, topic_name, data, qos=None) -> None:
        """Never retain: a retained message would reach later subscribers without a RECEIVE check.

        Client publishes are refused anyway and wills are not accepted; this keeps it true whatever
        a policy allows.
        """
        log.info("Not retaining a message on %r: the emulator never retains.", topic_name)

    async def deliver(self, topic: str, data: bytes, qos: int | None = None) -> int:
        """Hand a message to every subscriber allowed to receive it, now; returns how many.

        What amqtt's broadcast loop does for each message (the same RECEIVE check, the same
        queueing for a disconnected persistent session, one `mqtt_publish` task per subscriber,
        reaped by that loop), minus its queue: amqtt puts the message on a queue that a task
        created per message drains on a later turn of the event loop, after the HTTP Publish has
        been answered, which costs a push a few milliseconds on a busy machine. Here each
        subscriber's PUBLISH is written to its socket before this returns (the tasks get one
        turn of the loop to do it), so the push leaves ahead of the HTTP answer. `qos` None keeps
        each subscription's granted QoS; 0 forces QoS 0.
        """
        self._reap()
        broadcast = {"session": None, "topic": topic, "data": data}
        if qos is not None:
            broadcast["qos"] = qos
        started = 0
        for a_filter, subscriptions in list(self._subscriptions.items()):
            if not self._matches(topic, a_filter):
                continue
            for target_session, sub_qos in list(subscriptions):
                message_qos = broadcast.get("qos", sub_qos)
                if not await self._topic_filtering(target_session, topic=topic, action=Action.RECEIVE):
                    continue
                connected = target_session.transitions.state == "connected"
                if not connected and not target_session.clean_session and message_qos in (1, 2) \
                        and not target_session.is_anonymous:
                    await self._retain_broadcast_message(broadcast, message_qos, target_session)
                    continue
                handler = self._get_handler(target_session) if connected else None
                if handler:
                    self._tasks_queue.append(asyncio.ensure_future(
                        handler.mqtt_publish(topic, data, message_qos, retain=False)))
                    started += 1
        if started:
            await asyncio.sleep(0)  # each task's first step writes its PUBLISH
        return started

    def _reap(self) -> None:
        """Drop finished PUBLISH tasks from the front of the queue amqtt cancels at shutdown (its
        broadcast loop, which used to, now only wakes for client publishes), reporting failures."""
        tasks = self._tasks_queue
        while tasks and tasks[0].done():
            task = tasks.popleft()
            if not task.cancelled() and task.exception() is not None:
                log.warning("A PUBLISH to a subscriber failed: %r", task.exception())

    async def delete_connection(self, client_id: str, clean_session: bool) -> bool:
        """iot-data DeleteConnection: drop that client's connection now; False if it is not connected.

        With `clean_session`, a persistent session's subscriptions and queued messages go too (a
        clean session ends with its connection anyway).
        """
        entry = self._sessions.get(client_id)
        if entry is None or entry[0].transitions.state != "connected":
            return False
        session = entry[0]
        grant = session.attributes.get(GRANT)
        if grant is None:
            return False
        grant.disconnect("closed by DeleteConnection")
        if clean_session and not session.clean_session:
            deadline = asyncio.get_running_loop().time() + DISCONNECT_WAIT
            while session.transitions.state == "connected" and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.01)
            current = self._sessions.get(client_id)
            if current is not None and current[0] is session and session.transitions.state != "connected":
                await self._delete_session(client_id)
        return True

    async def add_subscription(self, subscription: tuple[str, int], session: Session) -> int:
        """Grant at most QoS 1, as AWS IoT does (it has no QoS 2)."""
        topic_filter, qos = subscription
        return await super().add_subscription((topic_filter, min(qos, MAX_QOS)), session)

    async def _create_server_instance(self, listener_name, listener_type, address, port, ssl_context):
        """amqtt's WebSocket server answers on any path; AWS IoT's (and MQTT.js's default) is /mqtt.

        WebSocket-level pings are off: MQTT's own keep-alive (PINGREQ) already checks the peer,
        and paho-mqtt's WebSocket client silently dropped about a second of messages around each
        of the server's 20-second pings (measured: 43 of 1,000 pushes lost, 0 with pings off).
        """
        if listener_type != ListenerType.WS:
            return await super()._create_server_instance(listener_name, listener_type, address, port, ssl_context)
        return await websockets.serve(
            partial(self.ws_connected, listener_name=listener_name),
            address,
            port,
            ssl=ssl_context,
            subprotocols=[websockets.Subprotocol("mqtt")],
            process_request=self._check_upgrade,
            ping_interval=None,
            # A client that never answers the close frame (awscrt's) must not hold up shutdown.
            close_timeout=1,
            # The same limits as on TCP: a deadline for the opening handshake (the CONNECT gets its
            # own in ws_connected), no message over the packet limit, the shared connection cap.
            open_timeout=self.connect_timeout,
            max_size=WS_MAX_MESSAGE_BYTES,
            create_connection=_capped_connection_class(self.limiter, self._transports, self._unadmitted),
        )

    def _check_upgrade(self, connection: ServerConnection, request):
        """Before the WebSocket upgrade: the path must be /mqtt and its query a valid SigV4 presign.

        A refusal is plain HTTP (404 for another path, 403 for any credential problem), so a
        client with bad credentials never gets as far as MQTT, as with IoT Core. The verified
        identity rides on the connection to ws_connected.
        """
        path = request.path.split("?", 1)[0]
        if path != WS_PATH:
            return connection.respond(HTTPStatus.NOT_FOUND, f"MQTT over WebSocket is served at {WS_PATH}\n")
        try:
            identity = self.verify_url(request.path, headers=list(request.headers.raw_items()))
        except SignatureError as exc:
            log.info(
                "Refused WebSocket upgrade from %s (Host %r): %s (%s).",
                _peer(connection.remote_address), request.headers.get("Host"), exc.code, exc.message,
            )
            return connection.respond(HTTPStatus.FORBIDDEN, f"{exc.code}: {exc.message}\n")
        connection.herald_identity = identity
        return None

    async def close_listeners(self) -> None:
        """Close the listeners a failed start() left open (amqtt leaves them bound)."""
        for server in self._servers.values():
            await server.close_instance()
        self._servers.clear()

    def bound_port(self, listener_name: str) -> int:
        """The port a listener actually bound (the real one when configured with port 0)."""
        # amqtt keeps its servers in a private dict and has no public accessor for them.
        return self._servers[listener_name].instance.sockets[0].getsockname()[1]


def _peer(address) -> str:
    if isinstance(address, (tuple, list)) and len(address) >= 2:
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(address)


def _capped_connection_class(
    limiter: gate.ConnectionLimiter, transports: set, unadmitted: set
) -> type[ServerConnection]:
    """websockets' ServerConnection, counted against `limiter` from accept() to close.

    Counting starts when the TCP connection is made, not after the opening handshake, so idle
    sockets that never send a handshake count too. One over the cap is closed at once, without a
    handshake (and without websockets logging a failed handshake). The transport is listed in
    `transports` while open and in `unadmitted` until ws_connected hands it to amqtt.
    """

    class CappedServerConnection(ServerConnection):
        counted = False

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self.counted = limiter.try_acquire()
            if not self.counted:
                transport.abort()
                return
            transports.add(transport)
            unadmitted.add(transport)

        def connection_lost(self, exc) -> None:
            try:
                super().connection_lost(exc)
            finally:
                transports.discard(self.transport)
                unadmitted.discard(self.transport)
                if self.counted:
                    self.counted = False
                    limiter.release()

        async def handshake(self, *args, **kwargs) -> None:
            if not self.counted:
                return  # left in CONNECTING: websockets' server drops the connection quietly
            try:
                await super().handshake(*args, **kwargs)
            except Exception:
                if self.request is not None:
                    raise
                # Closed before sending its HTTP request (a port probe, or dropped at shutdown):
                # nothing worth websockets' "opening handshake failed" traceback.
                log.info("WebSocket connection from %s closed before its HTTP request.", _peer(self.remote_address))

    return CappedServerConnection


