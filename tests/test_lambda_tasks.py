"""The Lambda task backend: the database queue, each task handed to an asynchronous invocation."""
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from feed import services
from feed.models import Follow, User
from notifier import taskqueue
from notifier.models import Notification

LAMBDA_TASKS = {"default": {"BACKEND": "notifier.taskqueue.LambdaBackend"}}


@pytest.fixture
def invocations(settings, monkeypatch):
    """Asynchronous invocations, recorded instead of sent (zappa.asynchronous is not installed
    here; the Lambda package's smoke run sends them through Zappa's handler)."""
    settings.TASKS = LAMBDA_TASKS
    sent = []
    monkeypatch.setattr(taskqueue, "_invoke", sent.append)
    return sent


def fans_of(author, count):
    fans = User.objects.bulk_create([User(username=f"fan{i}") for i in range(count)])
    Follow.objects.bulk_create([Follow(follower=f, followee=author) for f in fans])
    return fans


@pytest.mark.django_db(transaction=True)
def test_a_post_queues_its_fanout_row_and_invokes_it_after_commit(alice, invocations):
    fans_of(alice, 3)
    with transaction.atomic():
        post = services.create_post(alice, "hello")
        assert DBTaskResult.objects.count() == 1  # written with the post
        assert invocations == []  # invoked only once the row is committed
    [plan] = DBTaskResult.objects.all()
    assert invocations == [str(plan.pk)]

    # The invocation runs the plan, whose chunk is queued and invoked in turn; the plan's
    # invocation then goes on to take the chunk itself (it drains the queue), so the chunk's own
    # invocation finds nothing left to run.
    assert taskqueue.run_queued(invocations[0]) is True
    [chunk] = DBTaskResult.objects.filter(task_path="feed.fanout.fan_out_chunk")
    assert invocations[1:] == [str(chunk.pk)]
    assert Notification.objects.filter(kind="new_post", event__post_ref=post.pk).count() == 3
    assert set(DBTaskResult.objects.values_list("status", flat=True)) == {"SUCCESSFUL"}
    assert taskqueue.run_queued(invocations[1]) is False


def plan_with_chunks(author, monkeypatch, chunks):
    """A post whose fan-out is `chunks` chunks of two followers; returns it once its plan has run
    (with no time left to drain, so every chunk is still queued)."""
    from feed import fanout

    monkeypatch.setattr(fanout, "CHUNK_SIZE", 2)
    fans_of(author, 2 * chunks)
    post = services.create_post(author, "to many")
    plan = DBTaskResult.objects.filter(status="READY").get(task_path="feed.fanout.plan_fanout")
    assert taskqueue.run_queued(str(plan.pk), drain_seconds=0) is True
    return post


@pytest.mark.django_db(transaction=True)
def test_a_big_fanout_gets_at_most_the_parallel_cap_of_invocations(alice, invocations, settings, monkeypatch):
    settings.TASK_LAMBDA_PARALLEL = 3
    post = plan_with_chunks(alice, monkeypatch, chunks=12)
    chunks = DBTaskResult.objects.filter(task_path="feed.fanout.fan_out_chunk")
    assert chunks.count() == 12
    # The plan's invocation (which goes on draining the queue once the plan is done, so it is one
    # of the 3), then 2 for its 12 chunks (not 12), then, its drain time being used up with
    # chunks still queued, one to carry on after it.
    assert len(invocations) == 1 + 2 + 1
    assert set(invocations[1:]) <= {str(pk) for pk in chunks.values_list("pk", flat=True)}

    # One invocation drains the whole queue when it has the time.
    assert taskqueue.run_queued(invocations[1]) is True
    assert not DBTaskResult.objects.exclude(status="SUCCESSFUL").exists()
    assert Notification.objects.filter(kind="new_post", event__post_ref=post.pk).count() == 24
    assert [taskqueue.run_queued(i) for i in invocations[2:]] == [False] * 2


@pytest.mark.django_db(transaction=True)
def test_fewer_invocations_when_tasks_are_already_running(alice, invocations, settings, monkeypatch):
    settings.TASK_LAMBDA_PARALLEL = 4
    from django_tasks_db.models import DBTaskResult as Row

    with transaction.atomic():  # two tasks of another post, claimed by invocations still running
        services.create_post(alice, "busy")
        services.create_post(alice, "busier")
    Row.objects.update(status="RUNNING", started_at=timezone.now())
    invocations.clear()
    plan_with_chunks(alice, monkeypatch, chunks=6)  # (its plan's own row was READY, run by hand)
    chunk_invocations = [i for i in invocations if Row.objects.get(pk=i).task_path.endswith("fan_out_chunk")]
    # 4 allowed, 3 running (two tasks and the plan's own invocation): 1 invocation for the
    # chunks, then the hand-over.
    assert len(chunk_invocations) == 2


@pytest.mark.django_db(transaction=True)
def test_the_sweep_stays_within_the_cap(alice, invocations, settings, monkeypatch):
    settings.TASK_LAMBDA_PARALLEL = 3
    plan_with_chunks(alice, monkeypatch, chunks=8)
    invocations.clear()
    later = timezone.now() + timedelta(minutes=2)
    assert taskqueue.sweep(now=later)["invoked"] == 3  # eight queued, none running
    DBTaskResult.objects.filter(pk__in=invocations[:2]).update(status="RUNNING", started_at=later)
    invocations.clear()
    assert taskqueue.sweep(now=later)["invoked"] == 1  # two running: room for one more


@pytest.mark.django_db(transaction=True)
def test_a_duplicate_invocation_runs_nothing(alice, invocations):
    services.create_post(alice, "once")
    assert taskqueue.run_queued(invocations[0]) is True
    assert taskqueue.run_queued(invocations[0]) is False  # Lambda delivered it twice
    assert len(DBTaskResult.objects.get(pk=invocations[0]).worker_ids) == 1


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_post_invokes_nothing(alice, invocations):
    with pytest.raises(RuntimeError), transaction.atomic():
        services.create_post(alice, "never")
        raise RuntimeError("boom")
    assert invocations == [] and not DBTaskResult.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_the_sweep_invokes_tasks_whose_invocation_was_lost(alice, invocations):
    services.create_post(alice, "lost")
    invocations.clear()  # the invocation never arrived
    assert taskqueue.sweep()["invoked"] == 0  # too fresh: it may still be on its way
    later = timezone.now() + timedelta(minutes=2)
    assert taskqueue.sweep(now=later)["invoked"] == 1
    assert taskqueue.run_queued(invocations[0]) is True


@pytest.mark.django_db(transaction=True)
def test_a_quick_retry_is_invoked_at_once_and_its_invocation_waits_for_its_time(alice, bob, invocations,
                                                                               memory_publisher):
    from notifier import delivery
    from notifier.models import PendingPush
    from notifier.push.publisher import PublishError

    memory_publisher.fail = PublishError("read timeout")
    post = services.create_post(alice, "hello")
    services.add_comment(bob, post.pk, "hi")
    [retry] = DBTaskResult.objects.filter(task_path="notifier.delivery.retry_owed")
    assert str(retry.pk) in invocations  # handed to an invocation now, not at the next sweep
    assert retry.run_after > timezone.now()  # … though it is due half a second later

    memory_publisher.fail = None
    assert taskqueue.run_queued(str(retry.pk), drain_seconds=30) is True
    assert timezone.now() >= retry.run_after  # it waited for its time, then ran
    assert not PendingPush.objects.exists()
    assert [m["type"] for m in memory_publisher.messages(topic=f"herald/dev/users/{alice.pk}/notifications")] \
        == ["notification"]
    assert delivery.backoff(1).total_seconds() == 0.5


@pytest.mark.django_db(transaction=True)
def test_a_task_due_after_the_drain_is_left_for_the_sweep(invocations):
    from notifier import delivery

    delivery.retry_owed.using(run_after=timezone.now() + timedelta(minutes=5)).enqueue([1])
    [task] = DBTaskResult.objects.all()
    started = timezone.now()
    assert taskqueue.run_queued(str(task.pk), drain_seconds=1) is False
    assert timezone.now() - started < timedelta(minutes=1)
    assert DBTaskResult.objects.ready().count() == 0 and DBTaskResult.objects.get().status == "READY"
