"""A publisher's process-wide guards: how many publishes run at once, how fast, and a breaker.

Kept apart from the batches that use them (notifier.push.batch) so the publisher can own its gate
without importing the batch code: imports run publisher -> gate and batch -> publisher, gate.
"""
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from django.conf import settings

RECOVERY = 10.0  # seconds for a throttled rate to climb back to the configured one
MIN_RATE = 1.0


class RateLimiter:
    """Publishes per second for the whole process, evenly spaced (a small burst allowed), with
    multiplicative decrease on throttling and a linear climb back (AIMD)."""

    def __init__(self, rate: float, burst: float = 0.05, clock=time.monotonic, sleep=time.sleep):
        self.max_rate = float(rate)
        self.burst = burst  # seconds of credit an idle limiter keeps
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next = clock()
        self._floor = self.max_rate  # the rate right after the last throttle
        self._throttled_at = None

    def rate(self, now: float | None = None) -> float:
        if self._throttled_at is None:
            return self.max_rate
        now = self._clock() if now is None else now
        climbed = (now - self._throttled_at) / RECOVERY * (self.max_rate - self._floor)
        return min(self.max_rate, self._floor + climbed)

    def acquire(self, max_wait: float | None = None) -> bool:
        """Wait for this publish's slot; False (and no slot taken) if that is over max_wait away."""
        with self._lock:
            now = self._clock()
            slot = max(self._next, now - self.burst)
            if max_wait is not None and slot - now > max_wait:
                return False
            self._next = slot + 1.0 / self.rate(now)
        if slot > now:
            self._sleep(slot - now)
        return True

    def throttled(self) -> None:
        """The broker said 429: halve the rate and pause one new interval before the next slot."""
        with self._lock:
            now = self._clock()
            self._floor = max(MIN_RATE, self.rate(now) / 2)
            self._throttled_at = now
            self._next = max(self._next, now + 1.0 / self._floor)


class Breaker:
    """Open for `seconds` after a failure that says the broker cannot be reached."""

    def __init__(self, seconds: float, clock=time.monotonic):
        self.seconds = seconds
        self._clock = clock
        self._open_until = 0.0

    def is_open(self) -> bool:
        return self._clock() < self._open_until

    def trip(self) -> None:
        self._open_until = self._clock() + self.seconds

    def reset(self) -> None:
        self._open_until = 0.0


class Gate:
    """A publisher's process-wide concurrency, rate and breaker (see the module docstring)."""

    def __init__(self, concurrency: int, rate: float, breaker_seconds: float):
        self.concurrency = concurrency
        self.limiter = RateLimiter(rate)
        self.breaker = Breaker(breaker_seconds)
        self._pool = None
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls) -> "Gate":
        return cls(settings.PUSH_CONCURRENCY, settings.PUSH_RATE_LIMIT, settings.PUSH_BREAKER_SECONDS)

    def pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.concurrency - 1, thread_name_prefix="herald-push")
            return self._pool
