"""The amqtt Broker, with three small overrides that make it behave like AWS IoT where it matters."""
import logging
from functools import partial
from http import HTTPStatus

import websockets
from amqtt.adapters import ReaderAdapter, WriterAdapter
from amqtt.broker import Broker
from amqtt.contexts import ListenerType
from amqtt.errors import AMQTTError, MQTTError, NoDataError
from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler
from amqtt.session import Session
from amqtt.utils import format_client_message, gen_client_id

log = logging.getLogger(__name__)

WS_PATH = "/mqtt"
# AWS IoT Core supports QoS 0 and 1 only.
MAX_QOS = 1


class NotAuthorized(AMQTTError):
    """A CONNECT was refused with CONNACK 0x05 before any session was touched."""


class HeraldBroker(Broker):
    """amqtt's Broker with authentication moved ahead of session takeover.

    In amqtt 0.12.1, `_initialize_client_session` deletes the existing session of the CONNECT's
    client id (clean session) or adopts it and overwrites its credentials (persistent session),
    and `_handle_client_session` then stops the connected client using that id, all before the
    auth plugins' verdict is acted on. A CONNECT that fails authentication still empties a
    victim's subscriptions or kicks the victim off. Here the CONNECT is authenticated first, on
    the freshly parsed session, and a refused client gets CONNACK 0x05 and is closed without
    looking at the broker's sessions at all. Only then does amqtt's own bookkeeping run (the
    remainder of `_initialize_client_session` is amqtt's code, unchanged). amqtt authenticates
    again in `_handle_client_session`, on the session it ends up using; that second check is
    redundant but harmless, and it puts the token claims on that session.

    Client ids are also unguessable (tokens.new_client_id) and bound to the token, so even a
    client with a valid token of its own cannot aim at someone else's session.
    """

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
        if not await self._authenticate(client_session, None):
            handler.attach(client_session, reader, writer)
            await handler.mqtt_connack_authorize(False)
            await writer.close()
            raise NotAuthorized(
                f"{format_client_message(address=remote_address, port=remote_port)} refused: not authorized"
            )

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
            client_session = existing_client_session
            client_session.parent = 1
        else:
            client_session.parent = 0

        timeout_disconnect_delay = self.config.get("timeout-disconnect-delay", 0)
        if client_session.keep_alive > 0 and isinstance(timeout_disconnect_delay, int):
            client_session.keep_alive += timeout_disconnect_delay
        return handler, client_session

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
            process_request=_only_mqtt_path,
            ping_interval=None,
            # A client that never answers the close frame (awscrt's) must not hold up shutdown.
            close_timeout=1,
        )

    async def close_listeners(self) -> None:
        """Close the listeners a failed start() left open (amqtt leaves them bound)."""
        for server in self._servers.values():
            await server.close_instance()
        self._servers.clear()

    def bound_port(self, listener_name: str) -> int:
        """The port a listener actually bound (the real one when configured with port 0)."""
        # amqtt keeps its servers in a private dict and has no public accessor for them.
        return self._servers[listener_name].instance.sockets[0].getsockname()[1]


def _only_mqtt_path(connection, request):
    if request.path.split("?", 1)[0] != WS_PATH:
        return connection.respond(HTTPStatus.NOT_FOUND, f"MQTT over WebSocket is served at {WS_PATH}\n")
    return None
