"""A push that a request could not make (failed, timed out, skipped by the breaker) is handed to
the task queue at once and retried within about a second, then on the longer backoff."""
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from feed import services
from notifier import delivery
from notifier.models import Notification, PendingPush
from notifier.push.publisher import PublishError

from .conftest import DATABASE_TASKS
from .helpers import push_of

pytestmark = pytest.mark.django_db(transaction=True)

RETRY = "notifier.delivery.retry_owed"


@pytest.fixture
def queue(settings):
    settings.TASKS = DATABASE_TASKS


def retries():
    return list(DBTaskResult.objects.filter(task_path=RETRY).order_by("enqueued_at"))


def run_due_tasks():
    """Bring every queued retry's time forward to now (the clock is the test's, not the machine's
    speed), then let a worker run what is ready."""
    now = timezone.now()
    DBTaskResult.objects.filter(task_path=RETRY, status="READY").update(run_after=now)
    PendingPush.objects.filter(due_at__isnull=False).update(due_at=now)
    call_command("db_worker", batch=True, interval=0, startup_delay=False, verbosity=0)


def comment_on(alice, bob):
    post = services.create_post(alice, "hello")
    services.add_comment(bob, post.pk, "nice")
    return Notification.objects.get(recipient=alice, kind="comment")


def test_a_failed_request_push_is_queued_for_half_a_second_later(alice, bob, queue, memory_publisher):
    memory_publisher.fail = PublishError("read timeout")
    before = timezone.now()
    n = comment_on(alice, bob)
    owed = PendingPush.objects.get(pk=n.pk)
    assert owed.attempts == 1
    assert before + timedelta(seconds=0.5) <= owed.due_at <= timezone.now() + timedelta(seconds=0.5)
    [task] = retries()
    assert task.args_kwargs == {"args": [[n.pk]], "kwargs": {}}
    assert task.run_after == owed.due_at  # not a minute later

    memory_publisher.fail = None
    run_due_tasks()
    assert push_of(n) == ("delivered", None, "")
    assert [m["id"] for m in memory_publisher.messages(type="notification")] == [n.pk]


def test_a_push_skipped_by_the_open_breaker_is_queued_too(alice, bob, queue, memory_publisher):
    memory_publisher.gate.breaker.trip()
    n = comment_on(alice, bob)
    assert memory_publisher.sent == []  # the request did not wait on the broker
    assert [t.args_kwargs["args"] for t in retries()] == [[[n.pk]]]
    run_due_tasks()  # a retry probes even while the breaker is open, and its success closes it
    assert push_of(n)[0] == "delivered"
    assert not memory_publisher.gate.breaker.is_open()


def test_still_failing_it_is_retried_at_1_2_4_s_then_left_to_deliver_pending(alice, bob, queue, memory_publisher):
    memory_publisher.fail = PublishError("connection refused")
    n = comment_on(alice, bob)
    gaps = []
    for _ in range(12):
        if not DBTaskResult.objects.filter(task_path=RETRY, status="READY").exists():
            break
        before = timezone.now()
        run_due_tasks()
        owed = PendingPush.objects.get(pk=n.pk)
        gaps.append(round((owed.due_at - before).total_seconds()))
    # Attempts 2..7 went through the queue (1, 2, 4, 8, 16, 32 s later); past the quick window the
    # scheduled deliver_pending owns the row, which stays owed.
    assert gaps == [1, 2, 4, 8, 16, 32]
    owed = PendingPush.objects.get(pk=n.pk)
    assert owed.attempts == 7 and owed.due_at is not None
    assert delivery.backoff(owed.attempts) > delivery.QUICK_RETRY_WITHIN


def test_a_retry_does_not_push_what_deliver_pending_already_took(alice, bob, queue, memory_publisher):
    memory_publisher.fail = PublishError("connection refused")
    n = comment_on(alice, bob)
    memory_publisher.fail = None
    PendingPush.objects.filter(pk=n.pk).update(due_at=timezone.now())
    call_command("deliver_pending", verbosity=0)
    assert push_of(n)[0] == "delivered"
    run_due_tasks()
    assert len(memory_publisher.messages(type="notification")) == 1
