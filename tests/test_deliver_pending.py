"""manage.py deliver_pending: retries with backoff, gives up on permanent errors."""
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from feed import services
from notifier import delivery
from notifier.models import Notification, PendingPush
from notifier.push.publisher import PublishError

from .helpers import make_due, push_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def failed_push(alice, bob, memory_publisher, on_commit):
    memory_publisher.fail = PublishError("connection refused")
    with on_commit():
        services.follow(bob, "alice")
    memory_publisher.fail = None
    return Notification.objects.get(recipient=alice)


def run():
    call_command("deliver_pending", verbosity=0)


def test_backoff_starts_at_half_a_second_and_doubles_up_to_an_hour():
    assert [delivery.backoff(a).total_seconds() for a in (1, 2, 3, 4, 5)] == [0.5, 1, 2, 4, 8]
    assert delivery.backoff(20) == timedelta(hours=1)
    # The attempts still span hours before giving up, as before the quick start.
    total = sum((delivery.backoff(a) for a in range(1, delivery.MAX_ATTEMPTS)), timedelta())
    assert total > timedelta(hours=5)


def test_a_failed_push_is_delivered_when_due(failed_push, memory_publisher):
    n = failed_push
    make_due(n)
    run()
    assert push_of(n) == ("delivered", None, "")
    assert [m["id"] for _, m in memory_publisher.sent] == [n.pk]
    run()
    assert len(memory_publisher.sent) == 1  # delivered rows are not pushed again


def test_with_nothing_due_one_owed_push_probes_the_broker_and_its_success_brings_the_rest_forward(
        alice, bob, carol, memory_publisher, on_commit):
    memory_publisher.fail = PublishError("connection refused")
    with on_commit():
        services.follow(bob, "alice")
    with on_commit():
        services.follow(alice, "bob")
    with on_commit():
        services.follow(carol, "bob")  # the same group: one item for bob
    owed = list(PendingPush.objects.order_by("pk"))
    assert len(owed) == 2
    later = timezone.now() + timedelta(minutes=30)
    PendingPush.objects.update(due_at=later)  # as after a few failed attempts
    run()  # the broker is still down: the probe fails, the other row is left alone
    attempts = dict(PendingPush.objects.values_list("pk", "attempts"))
    assert sorted(attempts.values()) == [1, 2] and memory_publisher.sent == []
    assert PendingPush.objects.filter(due_at=later).count() == 1

    memory_publisher.fail = None
    run()  # the probe goes through: the broker is back, and the other owed push follows at once
    assert not PendingPush.objects.exists()
    assert sorted(m["id"] for _, m in memory_publisher.sent) == [p.pk for p in owed]


def test_still_failing_backs_off_further(failed_push, memory_publisher):
    memory_publisher.fail = PublishError("connection refused")
    make_due(failed_push)
    before = timezone.now()
    run()
    owed = PendingPush.objects.get(pk=failed_push.pk)
    assert (owed.state, owed.attempts) == ("pending", 2)
    assert owed.due_at >= before + delivery.backoff(2)


def test_permanent_error_is_marked_failed_not_retried(failed_push, memory_publisher):
    memory_publisher.fail = PublishError("HTTP 413: too large", permanent=True)
    make_due(failed_push)
    run()
    assert push_of(failed_push)[0] == "failed"
    memory_publisher.fail = None
    run()
    assert memory_publisher.sent == []


def test_gives_up_after_max_attempts(failed_push, memory_publisher):
    memory_publisher.fail = PublishError("connection refused")
    PendingPush.objects.filter(pk=failed_push.pk).update(attempts=delivery.MAX_ATTEMPTS - 1)
    make_due(failed_push)
    run()
    state, _, error = push_of(failed_push)
    assert state == "failed"
    assert error.startswith(f"gave up after {delivery.MAX_ATTEMPTS} attempts")


def test_orphaned_never_attempted_rows_are_picked_up(alice, bob, memory_publisher):
    services.follow(bob, "alice")  # no on_commit capture: the after-commit push never ran
    n = Notification.objects.get(recipient=alice)
    run()
    assert memory_publisher.sent == []  # too fresh: its own after-commit push may be under way
    owed = PendingPush.objects.get(pk=n.pk)
    assert owed.due_at > timezone.now() + delivery.IN_FLIGHT_LEASE / 2  # the in-flight lease
    make_due(n)  # ... has run out
    run()
    assert push_of(n) == ("delivered", None, "")


def test_a_broker_outage_stops_the_batch_early(alice, make_user, memory_publisher, on_commit):
    fans = [make_user(f"fan{i}") for i in range(5)]
    for fan in fans:
        services.follow(fan, "alice")
    memory_publisher.fail = PublishError("connection refused")
    calls = []
    original = memory_publisher.publish
    memory_publisher.publish = lambda *a, **k: (calls.append(a), original(*a, **k))
    try:
        with on_commit():
            services.create_post(alice, "news")
    finally:
        del memory_publisher.publish
    assert len(calls) == 1  # one failed attempt, not five
    assert PendingPush.objects.filter(notification__kind="new_post", due_at__isnull=False).count() == 5
