"""Publishers push one message to one MQTT topic.

There is one real publisher, IotDataPublisher: boto3's `iot-data` Publish, the same code against
AWS IoT Core and against the local emulator (which speaks the same HTTP API). The class used is
settings.NOTIFIER_PUBLISHER, loaded once per process.

A failed publish raises PublishError, which says whether trying again can help: an oversized
payload or an invalid topic will fail the same way forever (permanent), a refused connection or
a throttle (HTTP 429, which slows the process's publishing down) may not.

Batches of messages go through notifier.push.batch (concurrency, rate limit, breaker), using the
publisher's `gate`.
"""
import functools
import logging
import threading

from django.conf import settings
from django.utils.module_loading import import_string

from .gate import Gate

log = logging.getLogger(__name__)

# AWS IoT status codes that will not change on retry: bad request / topic, payload too large.
PERMANENT_STATUS = {400, 413}


# ... and the one that says "slow down".
THROTTLED_STATUS = 429


class PublishError(Exception):
    def __init__(self, message: str, *, permanent: bool = False, throttled: bool = False):
        super().__init__(message)
        self.permanent = permanent
        self.throttled = throttled


class Publisher:
    """Base class: subclasses implement publish() and raise PublishError on failure.

    `urgent` marks a publish made on behalf of a request: one attempt within a short time budget
    (settings.PUSH_URGENT_TIMEOUT), because a request must not wait on a slow broker; whatever
    fails is retried later by deliver_pending. Background work publishes patiently.
    """

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, urgent: bool = False) -> None:
        raise NotImplementedError

    @functools.cached_property
    def gate(self):
        """This publisher's concurrency, rate limit and breaker, shared by every batch in the process."""
        return Gate.from_settings()


class IotDataPublisher(Publisher):
    """boto3 iot-data Publish with two clients per process, created on first use:
    - patient (background work, deliver_pending): botocore's standard retry mode, 2 s to connect,
      5 s to read; its connection pool has room for every concurrent publish (PUSH_CONCURRENCY,
      plus the threads that publish their own batches), so no publish waits for or discards a
      connection;
    - urgent (after a request's commit): one attempt, the connect and read timeouts splitting
      PUSH_URGENT_TIMEOUT (300 ms by default), so the request's latency does not depend on the
      broker's health.
    """

    def __init__(self):
        self._clients = {}
        self._lock = threading.Lock()  # boto3's default session is not safe to build clients from concurrently

    def _client(self, urgent: bool):
        client = self._clients.get(urgent)
        if client is None:
            with self._lock:
                client = self._clients.get(urgent) or self._make_client(urgent)
                self._clients[urgent] = client
        return client

    @property
    def client(self):
        """The patient client (its endpoint and config are what operators and tests inspect)."""
        return self._client(False)

    def _make_client(self, urgent: bool):
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError, ClientError

        from ..aws.clients import make_client

        pool = settings.PUSH_CONCURRENCY + 8
        if urgent:
            half = settings.PUSH_URGENT_TIMEOUT / 2
            config = Config(retries={"total_max_attempts": 1}, connect_timeout=half, read_timeout=half,
                            tcp_keepalive=True, max_pool_connections=pool)
        else:
            config = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=2, read_timeout=5,
                            tcp_keepalive=True, max_pool_connections=pool)
        try:
            return make_client("iot-data", settings.AWS_REGION, config=config)
        except (BotoCoreError, ClientError) as exc:  # the data endpoint could not be discovered
            raise PublishError(f"IoT data endpoint unknown: {exc}") from exc

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, urgent: bool = False) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        client = self._client(urgent)
        try:
            client.publish(topic=topic, qos=qos, payload=payload)
        except ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            message = exc.response.get("Error", {}).get("Message") or str(exc)
            raise PublishError(f"HTTP {status}: {message}", permanent=status in PERMANENT_STATUS,
                               throttled=status == THROTTLED_STATUS) from exc
        except BotoCoreError as exc:
            raise PublishError(str(exc)) from exc


@functools.lru_cache(maxsize=None)
def _load(path: str) -> Publisher:
    return import_string(path)()


def get_publisher() -> Publisher:
    """The process-wide publisher named by settings.NOTIFIER_PUBLISHER (created on first use)."""
    return _load(settings.NOTIFIER_PUBLISHER)
