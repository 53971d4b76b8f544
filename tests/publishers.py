"""An in-memory publisher for tests: records what would have been pushed, or fails on demand."""
import json
import threading

from notifier.push.publisher import Publisher, PublishError


class MemoryPublisher(Publisher):
    """Thread-safe: batches publish from several threads (notifier.push.batch)."""

    def __init__(self):
        self._lock = threading.Lock()
        self.reset()

    def reset(self):
        """Forget what was sent, stop failing, and start from a fresh gate (rate, breaker)."""
        self.sent: list[tuple[str, dict]] = []
        self.fail: PublishError | None = None
        self.urgent: list[bool] = []  # per sent message: was it published as urgent?
        self.__dict__.pop("gate", None)

    def publish(self, topic, payload, *, qos=1, urgent=False):
        if self.fail is not None:
            raise self.fail
        with self._lock:
            self.sent.append((topic, json.loads(payload.decode("utf-8"))))
            self.urgent.append(urgent)

    def messages(self, topic=None, type=None):
        return [m for t, m in self.sent if (topic is None or t == topic) and (type is None or m["type"] == type)]
