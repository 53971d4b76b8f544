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

    # The invocation runs the plan, whose chunk is queued and invoked in turn.
    assert taskqueue.run_queued(invocations[0]) is True
    [chunk] = DBTaskResult.objects.filter(task_path="feed.fanout.fan_out_chunk")
    assert invocations[1:] == [str(chunk.pk)]
    assert taskqueue.run_queued(invocations[1]) is True
    assert Notification.objects.filter(kind="new_post", post_ref=post.pk).count() == 3
    assert set(DBTaskResult.objects.values_list("status", flat=True)) == {"SUCCESSFUL"}


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
