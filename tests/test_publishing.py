"""Publishing batches: concurrency, the rate limit and its back-off on 429, the breaker."""
import threading
import time

import pytest

from notifier.push import batch as batching, gate
from notifier.push.batch import publish_all
from notifier.push.gate import Breaker, Gate, RateLimiter
from notifier.push.publisher import Publisher, PublishError


class FakeClock:
    def __init__(self):
        self.now = 100.0
        self.slept = []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.slept.append(seconds)
        self.now += seconds


class ScriptedPublisher(Publisher):
    """Publishes after `delay` seconds, failing the publishes `fail(n, topic)` returns an error for;
    records the most publishes that were in flight at once."""

    def __init__(self, *, delay=0.0, fail=None, concurrency=4, rate=100_000.0, breaker=5.0):
        self.delay = delay
        self.fail = fail or (lambda n, topic: None)
        self.calls = 0
        self.sent = []
        self.in_flight = 0
        self.most_in_flight = 0
        self.threads = set()
        self._lock = threading.Lock()
        self.gate = Gate(concurrency, rate, breaker)

    def publish(self, topic, payload, *, qos=1, urgent=False):
        with self._lock:
            self.calls += 1
            n = self.calls
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            self.threads.add(threading.current_thread().name)
        try:
            time.sleep(self.delay)
            error = self.fail(n, topic)
            if error:
                raise error
            with self._lock:
                self.sent.append(topic)
        finally:
            with self._lock:
                self.in_flight -= 1


def batch(n, start=0):
    return [(i, f"t/{i}", b"{}") for i in range(start, start + n)]


# -- the rate limiter ------------------------------------------------------------------------------

def limiter(rate, burst=0.0):
    clock = FakeClock()
    return RateLimiter(rate, burst=burst, clock=clock, sleep=clock.sleep), clock


def test_the_limiter_spaces_publishes_evenly():
    lim, clock = limiter(100)
    start = clock.now
    for _ in range(50):
        assert lim.acquire()
    # 50 slots at 10 ms: the first at once, the last 490 ms later.
    assert clock.now - start == pytest.approx(0.49)


def test_an_idle_limiter_allows_only_a_small_burst():
    lim, clock = limiter(100, burst=0.05)
    clock.now += 60  # idle for a minute
    start = clock.now
    for _ in range(10):
        lim.acquire()
    # 5 slots of credit (50 ms at 100/s), then one every 10 ms again.
    assert clock.now - start == pytest.approx(0.04)


def test_an_urgent_publish_does_not_wait_past_its_budget():
    lim, clock = limiter(10)
    assert lim.acquire(max_wait=0.05)  # the first slot is now
    assert not lim.acquire(max_wait=0.05)  # the next is 100 ms away
    assert clock.slept == []
    assert lim.acquire(max_wait=0.2)  # and no slot was taken by the refusal
    assert clock.slept == [pytest.approx(0.1)]


def test_throttling_halves_the_rate_which_climbs_back_over_the_recovery_time():
    lim, clock = limiter(1000)
    lim.throttled()
    assert lim.rate() == 500
    lim.throttled()
    assert lim.rate() == 250
    clock.now += gate.RECOVERY / 2
    assert lim.rate() == pytest.approx(625)
    clock.now += gate.RECOVERY
    assert lim.rate() == 1000
    for _ in range(20):
        lim.throttled()
    assert lim.rate() == gate.MIN_RATE  # never stops altogether


def test_the_breaker_opens_on_a_failure_rate_not_on_one_slow_reply():
    clock = FakeClock()
    breaker = Breaker(1, clock=clock, window=10, min_failures=3, rate=0.5)
    breaker.failure()  # one timeout on a busy machine
    assert breaker.allow() and not breaker.is_open()
    for _ in range(6):
        breaker.success()
    breaker.failure()
    breaker.failure()  # 3 failures in 9 outcomes: a third, under the rate
    assert breaker.allow()
    clock.now += 11  # the window moves on: the old outcomes no longer count
    for _ in range(3):
        breaker.failure()
    assert breaker.is_open() and not breaker.allow()


def test_the_breaker_probes_once_half_open_and_a_success_closes_it():
    clock = FakeClock()
    breaker = Breaker(1, clock=clock)
    breaker.trip()
    assert not breaker.allow()
    clock.now += 1.01
    assert breaker.allow()  # the probe
    assert not breaker.allow()  # one probe at a time
    breaker.failure()  # the probe failed: open again for its time
    clock.now += 0.5
    assert not breaker.allow()
    clock.now += 0.6
    assert breaker.allow()
    breaker.success()
    assert breaker.allow() and breaker.allow() and not breaker.is_open()


def test_a_probe_that_never_reports_frees_its_slot():
    clock = FakeClock()
    breaker = Breaker(1, clock=clock)
    breaker.trip()
    clock.now += 1.01
    assert breaker.allow() and not breaker.allow()
    clock.now += 1.01
    assert breaker.allow()


# -- publish_all -----------------------------------------------------------------------------------

def test_a_batch_is_published_side_by_side_up_to_the_concurrency():
    pub = ScriptedPublisher(delay=0.02, concurrency=4)
    outcome = publish_all(pub, batch(40))
    assert sorted(outcome.delivered) == list(range(40)) and not outcome.retry and not outcome.failed
    assert pub.most_in_flight == 4
    assert len(pub.threads) == 4 and threading.current_thread().name in pub.threads  # the caller is a lane


def test_a_batch_moves_even_while_the_pool_is_busy_with_another():
    release = threading.Event()
    pub = ScriptedPublisher(concurrency=3)
    pub.fail = lambda n, topic: None if topic != "t/block" else (release.wait(5) and None)
    big = threading.Thread(target=publish_all, args=(pub, [(i, "t/block", b"") for i in range(3)]))
    big.start()
    deadline = time.monotonic() + 5
    while pub.in_flight < 3 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert pub.in_flight == 3  # both pool threads and that caller are blocked
    try:
        outcome = publish_all(pub, batch(5))  # a request's few pushes: the caller publishes them
        assert sorted(outcome.delivered) == list(range(5))
    finally:
        release.set()
        big.join(5)


def test_permanent_failures_are_recorded_and_the_batch_goes_on():
    pub = ScriptedPublisher(fail=lambda n, topic: PublishError("HTTP 413", permanent=True) if topic == "t/3" else None)
    outcome = publish_all(pub, batch(10))
    assert outcome.failed == {3: "HTTP 413"}
    assert sorted(outcome.delivered) == [0, 1, 2, 4, 5, 6, 7, 8, 9]


def test_throttled_publishes_slow_down_and_are_published_again_in_the_batch():
    pub = ScriptedPublisher(fail=lambda n, topic: PublishError("HTTP 429", throttled=True) if n <= 6 else None,
                            rate=10_000)
    outcome = publish_all(pub, batch(30))
    assert sorted(outcome.delivered) == list(range(30)) and not outcome.retry
    assert outcome.throttled == 6
    assert pub.gate.limiter.rate() < 10_000  # lowered, climbing back
    assert not pub.gate.breaker.is_open()  # a throttle is not an outage


def test_a_publish_throttled_again_and_again_is_left_owed_not_lost():
    pub = ScriptedPublisher(fail=lambda n, topic: PublishError("HTTP 429", throttled=True) if topic == "t/2" else None)
    outcome = publish_all(pub, batch(5))
    assert outcome.retry == {2: "HTTP 429"}
    assert sorted(outcome.delivered) == [0, 1, 3, 4]
    assert outcome.throttled == batching.THROTTLE_RETRIES + 1


def test_an_outage_stops_the_batch_and_repeated_failures_open_the_breaker():
    down = PublishError("connection refused")
    pub = ScriptedPublisher(concurrency=1, fail=lambda n, topic: down)
    outcome = publish_all(pub, batch(10))
    assert pub.calls == 1 and outcome.delivered == []
    assert outcome.retry[0] == "connection refused"
    assert set(outcome.retry) == set(range(10))
    assert outcome.retry[5].startswith("not attempted")
    assert not pub.gate.breaker.is_open()  # one failure is not a failure rate

    publish_all(pub, batch(2, start=10))
    publish_all(pub, batch(2, start=20))
    assert pub.calls == 3 and pub.gate.breaker.is_open()
    # While the breaker is open, new batches do not try at all...
    outcome = publish_all(pub, batch(3, start=30))
    assert pub.calls == 3 and set(outcome.retry) == {30, 31, 32}
    # ... but a retry of owed pushes does (it is how the process learns the broker is back), and
    # its success closes the breaker.
    pub.fail = lambda n, topic: None
    outcome = publish_all(pub, batch(3, start=40), probe=True)
    assert sorted(outcome.delivered) == [40, 41, 42]
    assert not pub.gate.breaker.is_open()
    assert sorted(publish_all(pub, batch(2, start=50)).delivered) == [50, 51]


def test_after_its_time_the_breaker_lets_one_batch_probe_and_its_success_closes_it():
    clock = FakeClock()
    pub = ScriptedPublisher(concurrency=1, fail=lambda n, topic: PublishError("timed out"))
    pub.gate.breaker = Breaker(1, clock=clock)
    for start in (0, 10, 20):
        publish_all(pub, batch(1, start=start))
    assert pub.gate.breaker.is_open()
    pub.fail = lambda n, topic: None
    assert publish_all(pub, batch(1, start=30)).delivered == []  # still open: not tried
    clock.now += 1.01
    assert publish_all(pub, batch(2, start=40)).delivered == [40, 41]  # the probe went, and closed it
    assert publish_all(pub, batch(1, start=50)).delivered == [50]


def test_the_gate_comes_from_settings(settings):
    settings.PUSH_CONCURRENCY = 3
    settings.PUSH_RATE_LIMIT = 250
    settings.PUSH_BREAKER_SECONDS = 7
    configured = Gate.from_settings()
    assert (configured.concurrency, configured.limiter.max_rate, configured.breaker.seconds) == (3, 250, 7)
