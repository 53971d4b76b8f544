"""An in-memory publisher for tests: records what would have been pushed, or fails on demand."""
import json

from notifier.publishers import Publisher, PublishError


class MemoryPublisher(Publisher):
    def __init__(self):
        self.sent: list[tuple[str, dict]] = []
        self.fail: PublishError | None = None
        self.urgent: list[bool] = []  # per sent message: was it published as urgent?

    def publish(self, topic, payload, *, qos=1, urgent=False):
        if self.fail is not None:
            raise self.fail
        self.sent.append((topic, json.loads(payload.decode("utf-8"))))
        self.urgent.append(urgent)

    def messages(self, topic=None, type=None):
        return [m for t, m in self.sent if (topic is None or t == topic) and (type is None or m["type"] == type)]
