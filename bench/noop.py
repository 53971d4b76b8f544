"""A publisher that publishes nothing: for benchmarks that measure storing, not pushing.

    NOTIFIER_PUBLISHER=bench.noop.NoopPublisher

Everything around the publish still runs (the outbox rows are written, the push loop builds and
encodes every message, delivered rows are deleted); only the network call is skipped.
"""
from notifier.push.publisher import Publisher


class NoopPublisher(Publisher):
    def publish(self, topic: str, payload: bytes, *, qos: int = 1, urgent: bool = False) -> None:
        return None
