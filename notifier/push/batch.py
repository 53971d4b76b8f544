"""Publishing a batch of messages: side by side, within a rate, and stopping early when the broker
is down.

Why: AWS IoT Core is a network hop away from Lambda, milliseconds per Publish. One publish at a
time, a post to 10,000 followers would take minutes to push while the account allows 20,000
publishes a second. So a batch is published by several threads at once through the publisher's
one client (boto3 clients are thread-safe; IotDataPublisher sizes botocore's connection pool to
match), and three process-wide guards keep that from turning into abuse:

- concurrency (settings.PUSH_CONCURRENCY): at most that many publishes of a batch in flight. The
  calling thread publishes too and the rest come from a shared pool, so a batch always moves even
  when the pool is busy with another one (a request's few pushes never queue behind a fan-out);
- a rate (settings.PUSH_RATE_LIMIT publishes/s per process; Lambda's fan-out parallelism is capped
  too, see taskqueue) that stays well inside the account's limit by design, and halves when AWS
  throttles anyway (HTTP 429), recovering over RECOVERY seconds. A throttled message is published
  again later in the same batch (up to THROTTLE_RETRIES times) and only then left for
  deliver_pending: throttling slows a fan-out down but loses nothing;
- a breaker (gate.Breaker): a failure that may pass but is not a throttle (broker unreachable,
  timed out) stops its batch (every other publish would wait out its own timeouts); when such
  failures become a rate, not one slow reply, batches in this process stop trying for
  PUSH_BREAKER_SECONDS and then send one half-open probe. What a batch did not publish stays owed
  and is handed to the retry queue at once (notifier.delivery), so a skipped push is retried
  within a second, not left waiting for the next scheduled run. Retries of owed pushes (`probe`)
  always try: they are how the process finds out that the broker is back, and a success closes
  the breaker.

Outcomes come back per message, for delivery._record to write in a few statements.
"""
import logging
import threading
from collections import deque
from dataclasses import dataclass, field

from django.conf import settings

from .gate import Gate
from .publisher import PublishError

log = logging.getLogger(__name__)

THROTTLE_RETRIES = 3


@dataclass
class Outcome:
    """What happened to each message of a batch, by key: delivered, retry later, failed for good."""

    delivered: list = field(default_factory=list)
    retry: dict = field(default_factory=dict)
    failed: dict = field(default_factory=dict)
    throttled: int = 0  # how many 429s the batch met (each one slowed the rate down)


def publish_all(publisher, messages: list[tuple[object, str, bytes]], *, urgent: bool = False,
                probe: bool = False) -> Outcome:
    """Publish (key, topic, payload) messages; returns each key's outcome.

    Urgent batches (a request's) wait at most PUSH_URGENT_TIMEOUT for a rate slot; what does not
    get one is left owed, like any other publish that may pass.
    """
    gate = publisher.gate
    outcome = Outcome()
    if not probe and not gate.breaker.allow():
        for key, _, _ in messages:
            outcome.retry[key] = "not attempted: the broker could not be reached moments ago"
        return outcome
    batch = _Batch(publisher, gate, messages, outcome, urgent)
    lanes = min(gate.concurrency, len(messages)) - 1
    futures = [gate.pool().submit(batch.run) for _ in range(lanes)]
    batch.run()
    for future in futures:  # the queue is empty: lanes still waiting for a thread are not needed
        if not future.cancel():
            future.result()
    return outcome


class _Batch:
    """One batch's queue, shared by its lanes (the calling thread and up to concurrency-1 pool
    threads); each lane takes the next message until the queue is empty or the batch stops."""

    def __init__(self, publisher, gate: Gate, messages, outcome: Outcome, urgent: bool):
        self.publisher = publisher
        self.gate = gate
        self.outcome = outcome
        self.urgent = urgent
        self.max_wait = settings.PUSH_URGENT_TIMEOUT if urgent else None
        self.queue = deque((key, topic, payload, 0) for key, topic, payload in messages)
        self.lock = threading.Lock()
        self.stopped = None  # why the batch stopped, once it has

    def _next(self):
        with self.lock:
            if not self.queue:
                return None
            if self.stopped:  # the rest is not attempted
                while self.queue:
                    key = self.queue.popleft()[0]
                    self.outcome.retry[key] = f"not attempted: {self.stopped}"
                return None
            return self.queue.popleft()

    def run(self) -> None:
        while (item := self._next()) is not None:
            key, topic, payload, throttles = item
            if not self.gate.limiter.acquire(self.max_wait):
                with self.lock:
                    self.outcome.retry[key] = "not attempted: over the publish rate limit"
                continue
            try:
                self.publisher.publish(topic, payload, urgent=self.urgent)
            except PublishError as exc:
                self._failed(item, exc)
            else:
                self.gate.breaker.success()
                with self.lock:
                    self.outcome.delivered.append(key)

    def _failed(self, item, exc: PublishError) -> None:
        key, topic, payload, throttles = item
        error = str(exc)[:300]
        with self.lock:
            if exc.permanent:  # the broker answered: it is up
                self.outcome.failed[key] = error
                self.gate.breaker.success()
            elif exc.throttled:
                self.outcome.throttled += 1
                self.gate.limiter.throttled()
                if throttles < THROTTLE_RETRIES:
                    self.queue.append((key, topic, payload, throttles + 1))
                else:
                    self.outcome.retry[key] = error
            else:
                self.outcome.retry[key] = error
                self.gate.breaker.failure()
                if not self.stopped:
                    self.stopped = f"an earlier push in the batch failed ({error})"
                    log.warning("push failed; the batch stops and its owed pushes are retried shortly: %s", exc)
