"""A publisher's process-wide guards: how many publishes run at once, how fast, and a breaker.

Kept apart from the batches that use them (notifier.push.batch) so the publisher can own its gate
without importing the batch code: imports run publisher -> gate and batch -> publisher, gate.
"""
import threading
import time
from collections import deque
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
    """Stops a process from spending every publish's timeout on a broker that is down, without
    letting one slow reply stop pushing.

    - closed: publishes go; each outcome is recorded. It opens when, within the last `window`
      seconds, at least `min_failures` publishes failed and they were at least `rate` of all
      outcomes: a failure rate, not one publish that timed out on a busy machine.
    - open: batches are not attempted (their pushes stay owed and go to the retry queue at once)
      for `seconds`.
    - half-open: after that, the next batch is let through as the probe (one at a time); its first
      success closes the breaker, a failure opens it for another `seconds`.

    Retries of owed pushes (`probe`, see batch.publish_all) always try, so a retry that finds the
    broker back closes the breaker in this process at once. Per process on purpose: it guards this
    process's own waiting on its own connections, and a shared one would let one bad container
    stop every other.
    """

    def __init__(self, seconds: float, clock=time.monotonic, *, window: float = 10.0, min_failures: int = 3,
                 rate: float = 0.5):
        self.seconds = seconds
        self.window = window
        self.min_failures = min_failures
        self.rate = rate
        self._clock = clock
        self._lock = threading.Lock()
        self._outcomes = deque()  # (time, ok) within the window, oldest first
        self._open_until = None  # set while open or half-open
        self._probe_until = 0.0  # a half-open probe is out until then

    def is_open(self) -> bool:
        """Open and not yet due for a probe."""
        with self._lock:
            return self._open_until is not None and self._clock() < self._open_until

    def allow(self) -> bool:
        """May a batch go now? Always when closed; when open, only as the one half-open probe."""
        with self._lock:
            if self._open_until is None or self.seconds <= 0:  # closed, or no breaker at all
                return True
            now = self._clock()
            if now < self._open_until or now < self._probe_until:
                return False
            self._probe_until = now + max(self.seconds, 0.1)  # a probe that never reports frees its slot
            return True

    def success(self) -> None:
        with self._lock:
            if self._open_until is not None:
                self._close()
            else:
                self._note(True)

    def failure(self) -> None:
        with self._lock:
            if self._open_until is not None:  # the probe failed, or a retry in the open state did
                self._open()
                return
            self._note(False)
            failures = sum(1 for _, ok in self._outcomes if not ok)
            if failures >= self.min_failures and failures >= self.rate * len(self._outcomes):
                self._open()

    def trip(self) -> None:
        """Open now (for operators and tests)."""
        with self._lock:
            self._open()

    def reset(self) -> None:
        with self._lock:
            self._close()

    def _note(self, ok: bool) -> None:
        now = self._clock()
        self._outcomes.append((now, ok))
        while self._outcomes and self._outcomes[0][0] < now - self.window:
            self._outcomes.popleft()

    def _open(self) -> None:
        self._open_until = self._clock() + self.seconds
        self._probe_until = 0.0
        self._outcomes.clear()

    def _close(self) -> None:
        self._open_until = None
        self._probe_until = 0.0
        self._outcomes.clear()


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
