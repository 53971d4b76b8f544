"""Durability of the Lambda task backend's drain: an invocation killed with SIGKILL while it drains
a fan-out's chunks (notifier.taskqueue.run_queued) loses nothing and tells nobody twice once the
sweep has put its task back.

The invocation is a real process running `run_queued(result_id)`, exactly what an asynchronous
Lambda invocation runs (INVOCATION below), on this test's database and with test_durability's
environment (its SlowBroker publisher, PostgreSQL or test_races' file copy of the SQLite test
database). Zappa is not installed here, so the process records the invocations it hands on in a
file instead of sending them, as the `invocations` fixture does for this process.
"""
import os
import signal
import subprocess
import sys
import time
from collections import Counter
import pytest
from django.conf import settings as django_settings
from django.utils import timezone
from django_tasks.base import TaskResultStatus
from django_tasks_db.models import DBTaskResult

from feed import fanout, services
from feed.models import Follow, User
from notifier import taskqueue
from notifier.models import Notification, NotificationState

from .test_durability import assert_told_once, fan_out_tasks, tail, told, worker_env
from .test_lambda_tasks import fans_of, invocations  # noqa: F401  (fixture: this process's invocations, recorded)
from .test_races import file_backed_sqlite  # noqa: F401  (autouse: SQLite on a file the invocation can open)

FOLLOWERS = 4_000
CHUNK_SIZE = 500  # 8 chunks (FANOUT_CHUNK_SIZE, here and in the invocation)
PARALLEL = 3  # TASK_LAMBDA_PARALLEL, here and in the invocation
PUSH_DELAY = 1.0  # seconds each chunk's push takes in the invocation, after the chunk's commit

# The invocation: Zappa's handler imports the function and calls it with the task's id.
INVOCATION = """
import sys

import django

django.setup()

from notifier import taskqueue


def record(result_id):
    with open(sys.argv[2], "a") as invoked:
        invoked.write(result_id + "\\n")


taskqueue._invoke = record
taskqueue.run_queued(sys.argv[1])
"""


def invocation_env() -> dict[str, str]:
    return {
        **worker_env(PUSH_DELAY),
        "TASK_BACKEND": "lambda",
        "TASK_LAMBDA_PARALLEL": str(PARALLEL),
        "FANOUT_CHUNK_SIZE": str(CHUNK_SIZE),
        # Time to drain the whole queue: the process hands nothing on before it is killed.
        "TASK_LAMBDA_DRAIN_SECONDS": "600",
    }


def kill_inside_a_push(proc, post, log) -> int:
    """SIGKILL `proc` while the chunk it drains has committed and is still in its push (so its task
    is RUNNING with all its followers told), at the second chunk or later; returns how many
    followers were told then.

    Exact, not a matter of timing: a chunk's task is marked successful only after its push, which
    takes PUSH_DELAY after its commit. When a poll finds more followers told than the poll before
    it, which started at `before`, a chunk committed after `before`; the process is stopped
    (SIGSTOP) and killed if that is less than PUSH_DELAY after `before`, else let go again (this
    process stalled) to wait for the next chunk."""
    deadline = time.monotonic() + 180
    before, seen = time.monotonic(), told(post)
    while True:
        assert proc.poll() is None, f"the invocation exited ({proc.returncode}) before the kill:\n{tail(log)}"
        assert time.monotonic() < deadline, f"only {seen} followers told after 180 s:\n{tail(log)}"
        started = time.monotonic()
        n = told(post)
        assert n < FOLLOWERS, f"the fan-out finished before the invocation could be killed:\n{tail(log)}"
        if n != seen and n >= 2 * fanout.CHUNK_SIZE:
            os.kill(proc.pid, signal.SIGSTOP)
            _, status = os.waitpid(proc.pid, os.WUNTRACED)
            assert os.WIFSTOPPED(status), f"the invocation ended ({status:#x}) instead of stopping:\n{tail(log)}"
            if time.monotonic() - before < 0.8 * PUSH_DELAY:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
                return n
            os.kill(proc.pid, signal.SIGCONT)
        before, seen = started, n
        time.sleep(0.01)


@pytest.mark.django_db(transaction=True)
def test_an_invocation_killed_while_draining_loses_nothing_and_repeats_nothing(invocations, settings, tmp_path,
                                                                              monkeypatch):
    monkeypatch.setattr(fanout, "CHUNK_SIZE", CHUNK_SIZE)
    settings.TASK_LAMBDA_PARALLEL = PARALLEL
    settings.TASK_LAMBDA_DRAIN_SECONDS = 600
    author = User.objects.create(username="celebrity")
    fans = fans_of(author, FOLLOWERS)  # in bulk: no state rows yet, the fan-out creates them
    post = services.create_post(author, "to all four thousand of you")
    [plan] = DBTaskResult.objects.all()
    assert (plan.task_path, plan.status) == ("feed.fanout.plan_fanout", TaskResultStatus.READY)
    assert invocations == [str(plan.pk)]
    chunks = len(fanout.chunk_bounds(author.pk))
    assert chunks == FOLLOWERS // fanout.CHUNK_SIZE

    # 1. The plan's invocation runs the plan, then drains the chunks (each push slow), and is
    #    killed in the drain loop, in a chunk's push.
    log, handed_on = tmp_path / "invocation.log", tmp_path / "invoked.txt"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-c", INVOCATION, str(plan.pk), str(handed_on)],
                                cwd=django_settings.BASE_DIR, env=invocation_env(), stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        killed_at = kill_inside_a_push(proc, post, log)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    # 2. What the kill left: the plan done, whole chunks stored (a chunk is one transaction) with
    #    exact counts, the chunks before the killed one successful, the killed one RUNNING with all
    #    its followers told, the rest READY. The plan's commit handed its chunks to PARALLEL - 1
    #    more invocations (the plan's own was running); the drain handed nothing on.
    stored = told(post)
    assert stored == killed_at and stored % fanout.CHUNK_SIZE == 0, (stored, killed_at)
    states = Counter(NotificationState.objects.filter(user__in=fans).values_list("unread_count", "last_seq"))
    assert states == {(1, 1): stored}, f"state rows after the kill: {dict(states)} ({stored} told)"
    plan.refresh_from_db()
    assert plan.status == TaskResultStatus.SUCCESSFUL and plan.return_value == chunks
    chunk_rows = DBTaskResult.objects.filter(task_path="feed.fanout.fan_out_chunk")
    statuses = Counter(chunk_rows.values_list("status", flat=True))
    done = stored // fanout.CHUNK_SIZE
    assert statuses == {"SUCCESSFUL": done - 1, "RUNNING": 1, "READY": chunks - done}, f"{statuses}\n{tail(log)}"
    orphan = chunk_rows.get(status=TaskResultStatus.RUNNING)
    assert len(orphan.worker_ids) == 1 and orphan.worker_ids[0].startswith("lambda-"), orphan.worker_ids
    _, after_id, upto_id = orphan.args_kwargs["args"]
    its_followers = Follow.objects.filter(followee=author, pk__gt=after_id, pk__lte=upto_id).values("follower")
    assert Notification.objects.filter(event__post_ref=post.pk, recipient__in=its_followers).count() == fanout.CHUNK_SIZE
    # (Pushes that failed were queued, and handed on, for a quick retry too: notifier.delivery.retry_owed.)
    chunk_ids = {str(pk) for pk in chunk_rows.values_list("pk", flat=True)}
    late = [i for i in handed_on.read_text().split() if i in chunk_ids]
    assert len(late) == PARALLEL - 1

    # 3. A sweep one lease after the kill puts the dead invocation's task back (and invokes, within
    #    the cap, tasks queued for over a minute by then: none, unless this machine is very slow).
    invocations.clear()
    counts = taskqueue.sweep(now=timezone.now() + taskqueue.lease_duration())
    assert (counts["stale"], counts["retried"]) == (1, 0), counts
    assert counts["invoked"] == len(invocations) <= PARALLEL, (counts, invocations)
    orphan.refresh_from_db()
    assert orphan.status == TaskResultStatus.READY

    # 4. An invocation of the task put back runs it and drains the queue; the invocations handed
    #    out before find nothing left to run, and nothing is handed on.
    assert taskqueue.run_queued(str(orphan.pk)) is True
    swept = list(invocations)
    assert [taskqueue.run_queued(i) for i in late + swept] == [False] * (len(late) + len(swept))
    handed = DBTaskResult.objects.filter(pk__in=invocations[len(swept):]).values_list("task_path", flat=True)
    assert set(handed) <= {"notifier.delivery.retry_owed"}, list(handed)  # no task of the fan-out

    # 5. Every follower told exactly once, one unread, seq 1; every task successful, none left.
    assert_told_once(post, fans)
    statuses = Counter(fan_out_tasks().values_list("status", flat=True))
    assert statuses == {"SUCCESSFUL": 1 + chunks}, dict(statuses)
    orphan.refresh_from_db()
    assert len(orphan.worker_ids) == 2
    assert orphan.return_value == 0  # all its followers were told before the kill (the dedupe key)
