"""manage.py deliver_pending: retries with backoff, gives up on permanent errors."""
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from feed import services
from notifier import delivery
from notifier.models import Delivery, Notification
from notifier.publishers import PublishError

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


def make_due(n):
    Notification.objects.filter(pk=n.pk).update(next_attempt_at=timezone.now() - timedelta(seconds=1))


def test_backoff_doubles_up_to_an_hour():
    assert [delivery.backoff(a).total_seconds() for a in (1, 2, 3, 4)] == [30, 60, 120, 240]
    assert delivery.backoff(20) == timedelta(hours=1)


def test_a_failed_push_waits_for_its_backoff_then_is_delivered(failed_push, memory_publisher):
    n = Notification.objects.get(pk=failed_push.pk)
    assert n.next_attempt_at > timezone.now() + timedelta(seconds=25)
    run()
    assert memory_publisher.sent == []  # not due yet
    make_due(n)
    run()
    n.refresh_from_db()
    assert (n.delivery, n.attempts, n.next_attempt_at) == (Delivery.DELIVERED, 2, None)
    assert [m["id"] for _, m in memory_publisher.sent] == [n.pk]
    run()
    assert len(memory_publisher.sent) == 1  # delivered rows are not pushed again


def test_still_failing_backs_off_further(failed_push, memory_publisher):
    memory_publisher.fail = PublishError("connection refused")
    make_due(failed_push)
    before = timezone.now()
    run()
    n = Notification.objects.get(pk=failed_push.pk)
    assert (n.delivery, n.attempts) == (Delivery.PENDING, 2)
    assert n.next_attempt_at >= before + timedelta(seconds=60)


def test_permanent_error_is_marked_failed_not_retried(failed_push, memory_publisher):
    memory_publisher.fail = PublishError("HTTP 413: too large", permanent=True)
    make_due(failed_push)
    run()
    n = Notification.objects.get(pk=failed_push.pk)
    assert (n.delivery, n.next_attempt_at) == (Delivery.FAILED, None)
    memory_publisher.fail = None
    Notification.objects.filter(pk=n.pk).update(next_attempt_at=timezone.now() - timedelta(days=1))
    run()
    assert memory_publisher.sent == []


def test_gives_up_after_max_attempts(failed_push, memory_publisher):
    memory_publisher.fail = PublishError("connection refused")
    Notification.objects.filter(pk=failed_push.pk).update(attempts=delivery.MAX_ATTEMPTS - 1)
    make_due(failed_push)
    run()
    n = Notification.objects.get(pk=failed_push.pk)
    assert n.delivery == Delivery.FAILED
    assert n.last_error.startswith(f"gave up after {delivery.MAX_ATTEMPTS} attempts")


def test_orphaned_never_attempted_rows_are_picked_up(alice, bob, memory_publisher):
    services.follow(bob, "alice")  # no on_commit capture: the after-commit push never ran
    n = Notification.objects.get(recipient=alice)
    run()
    assert memory_publisher.sent == []  # too fresh: its own after-commit push may be under way
    Notification.objects.filter(pk=n.pk).update(created_at=timezone.now() - timedelta(minutes=2))
    run()
    assert Notification.objects.get(pk=n.pk).delivery == Delivery.DELIVERED


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
    assert Notification.objects.filter(kind="new_post", delivery=Delivery.PENDING).count() == 5
