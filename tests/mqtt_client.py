"""A paho MQTT test client whose callbacks land in queues a test can wait on."""
import queue
import threading
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
import pytest

QUIET = 0.4  # how long "nothing arrives" is watched for
# How long a CONNACK, SUBACK or an expected message is waited for: each returns as soon as it
# arrives, so the wait is generous for a loaded machine and costs nothing otherwise.
REPLY_TIMEOUT = 30.0
MESSAGE_TIMEOUT = 10.0


class Client:
    """A paho MQTT 3.1.1 client whose callbacks land in queues the test can wait on.

    Connect with a presigned URL as production clients do: `Client.over_websocket(url, client_id)`
    opens the URL itself; `Client.over_tcp(port, url, client_id)` sends it as the CONNECT password.
    """

    def __init__(
        self, port: int, client_id: str, password: str | None, *, transport="tcp", username="42", clean=True,
        path: str = "/mqtt",
    ):
        self.port = port
        self.client_id = client_id
        self.messages: queue.Queue = queue.Queue()
        self.subacks: queue.Queue = queue.Queue()
        self.connacks: queue.Queue = queue.Queue()
        self.disconnected = threading.Event()
        self.paho = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=clean,
            transport=transport,
            reconnect_on_failure=False,
        )
        if transport == "websockets":
            self.paho.ws_set_options(path=path)
        if username is not None or password is not None:
            self.paho.username_pw_set(username, password)
        self.paho.on_connect = lambda c, u, flags, rc, props: self.connacks.put(rc)
        self.paho.on_subscribe = lambda c, u, mid, rcs, props: self.subacks.put([rc.value for rc in rcs])
        self.paho.on_message = lambda c, u, msg: self.messages.put(msg)
        self.paho.on_disconnect = lambda *args: self.disconnected.set()

    @classmethod
    def over_websocket(cls, url: str, client_id: str, *, clean=True) -> "Client":
        """A client that opens this presigned ws:// URL (path and query included), as a browser does."""
        parts = urlsplit(url)
        return cls(parts.port, client_id, None, transport="websockets", username=None, clean=clean,
                   path=f"{parts.path}?{parts.query}")

    @classmethod
    def over_tcp(cls, port: int, url: str, client_id: str, *, clean=True) -> "Client":
        """A TCP client whose CONNECT password is the presigned URL (the username is ignored)."""
        return cls(port, client_id, url, transport="tcp", username="ignored", clean=clean)

    def connect(self):
        """The CONNACK reason code paho reports (Success, or Not authorized for CONNACK 0x05)."""
        self.paho.connect("127.0.0.1", self.port, keepalive=30)
        self.paho.loop_start()
        return self.connacks.get(timeout=REPLY_TIMEOUT)

    def subscribe(self, topic_filter: str, qos: int = 1) -> int:
        self.paho.subscribe(topic_filter, qos)
        (code,) = self.subacks.get(timeout=REPLY_TIMEOUT)
        return code

    def next_message(self, timeout: float = MESSAGE_TIMEOUT):
        return self.messages.get(timeout=timeout)

    def assert_nothing_arrives(self, quiet: float = QUIET):
        with pytest.raises(queue.Empty):
            message = self.messages.get(timeout=quiet)
            pytest.fail(f"unexpected message on {message.topic}: {message.payload!r}")

    def close(self):
        self.paho.disconnect()
        self.paho.loop_stop()
