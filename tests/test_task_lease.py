"""Task leases (notifier.taskqueue.Heartbeat, requeue_expired): a running task's worker renews its
run's lease from a thread of its own, so the sweep puts back the task of a worker that died within
one lease (TASK_LEASE_SECONDS), and never takes the task of a live worker, however long it runs.

The workers are real `manage.py db_worker` subprocesses on this test's database (PostgreSQL, or on
SQLite test_races' file copy), with a lease of LEASE seconds, running `hold`: a task with an
effect (idempotent) that then waits for a flag file. The sweep runs here, on given clocks (`now=`),
so no test waits out a lease to see what a sweep would do then.
"""
import json
import os
import signal
import subprocess
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.db import connections
from django.utils import timezone
from django_tasks.base import TaskResultStatus
from django_tasks_db.models import DBTaskResult

from feed.models import User
from notifier import taskqueue
from notifier.models import TaskLease
from notifier.taskqueue import background

from .conftest import DATABASE_TASKS
from .test_durability import tail, worker_command, worker_env
from .test_lambda_tasks import invocations  # noqa: F401  (fixture: invocations recorded, not sent)
from .test_races import file_backed_sqlite  # noqa: F401  (autouse: SQLite on a file the workers can open)

LEASE = 2.0  # seconds (TASK_LEASE_SECONDS), here and in the workers: renewed every 0.5 s
WAIT = 120  # seconds any condition below may take on a loaded machine


@background
def hold(key: str, flag: str) -> bool:
    """The task under test. Its effect, once in effect however often it runs: the account `key`
    (returns whether this run made it). Each run appends a line to `flag`.runs, then waits for the
    file `flag` to exist."""
    _, created = User.objects.get_or_create(username=key)
    with open(f"{flag}.runs", "a") as runs:
        runs.write(f"{os.getpid()}\n")
    deadline = time.monotonic() + 300
    while not os.path.exists(flag):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{flag} never appeared")
        time.sleep(0.02)
    return created


def wait_for(condition, what: str, proc: subprocess.Popen | None = None, log: Path | None = None):
    """condition()'s first truthy value, polled until WAIT seconds have passed."""
    deadline = time.monotonic() + WAIT
    while True:
        value = condition()
        if value:
            return value
        if proc is not None:
            assert proc.poll() is None, f"the worker exited ({proc.returncode}) waiting for {what}:\n{tail(log)}"
        assert time.monotonic() < deadline, f"no {what} after {WAIT} s" + (f":\n{tail(log)}" if log else "")
        time.sleep(0.02)


def lease_of(result_id) -> TaskLease | None:
    row = DBTaskResult.objects.get(pk=result_id)
    return TaskLease.objects.filter(task_id=result_id, started_at=row.started_at).first()


def start_worker(worker_id: str, log: Path) -> subprocess.Popen:
    with log.open("wb") as out:
        return subprocess.Popen(worker_command(worker_id), cwd=django_settings.BASE_DIR,
                                env={**worker_env(0), "TASK_LEASE_SECONDS": str(LEASE)},
                                stdout=out, stderr=subprocess.STDOUT)


def end(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=30)


@pytest.fixture
def lease_settings(settings):
    settings.TASKS = DATABASE_TASKS
    settings.TASK_LEASE_SECONDS = LEASE
    return settings


@pytest.mark.django_db(transaction=True)
def test_a_killed_workers_task_runs_again_once_its_lease_has_expired(lease_settings, tmp_path):
    flag = tmp_path / "go"
    result_id = hold.enqueue("effect", str(flag)).id
    log = tmp_path / "doomed.log"
    worker = start_worker("doomed", log)
    try:
        # The worker has done the effect and waits for the flag; its heartbeat wrote the run's
        # lease and has renewed it since.
        first = wait_for(lambda: lease_of(result_id), "lease", worker, log)
        wait_for(lambda: lease_of(result_id).expires_at > first.expires_at, "renewal", worker, log)
        killed_at = timezone.now()
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(timeout=30)
    finally:
        end(worker)
    assert worker.returncode == -signal.SIGKILL
    row = DBTaskResult.objects.get(pk=result_id)
    assert (row.status, row.worker_ids) == (TaskResultStatus.RUNNING, ["doomed"])
    assert User.objects.filter(username="effect").count() == 1

    # The last renewal before the kill: the task is free again one lease after it at the latest,
    # and not a moment before.
    last = lease_of(result_id)
    assert last.expires_at <= killed_at + taskqueue.lease_duration()
    assert taskqueue.sweep(now=last.expires_at - timedelta(milliseconds=1))["stale"] == 0
    assert DBTaskResult.objects.get(pk=result_id).status == TaskResultStatus.RUNNING
    assert taskqueue.sweep(now=last.expires_at) == {"stale": 1, "retried": 0, "invoked": 0}
    assert DBTaskResult.objects.ready().filter(pk=result_id).exists()  # due at once
    assert not TaskLease.objects.exists()  # the dead run's lease went with it

    # A second worker runs it to the end; the effect is there once.
    flag.touch()
    rescue_log = tmp_path / "rescuer.log"
    with rescue_log.open("wb") as out:
        rescue = subprocess.run(worker_command("rescuer", "--batch"), cwd=django_settings.BASE_DIR,
                                env={**worker_env(0), "TASK_LEASE_SECONDS": str(LEASE)},
                                stdout=out, stderr=subprocess.STDOUT, timeout=300)
    assert rescue.returncode == 0, tail(rescue_log)
    row.refresh_from_db()
    assert (row.status, row.worker_ids) == (TaskResultStatus.SUCCESSFUL, ["doomed", "rescuer"]), tail(rescue_log)
    assert row.return_value is False  # the killed run's effect was already there
    assert User.objects.filter(username="effect").count() == 1
    assert len(Path(f"{flag}.runs").read_text().split()) == 2
    assert not TaskLease.objects.exists()  # released when the run ended


@pytest.mark.django_db(transaction=True)
def test_a_live_worker_keeps_a_task_that_runs_longer_than_its_lease(lease_settings, tmp_path):
    flag = tmp_path / "go"
    result_id = hold.enqueue("long", str(flag)).id
    log = tmp_path / "alive.log"
    worker = start_worker("alive", log)
    try:
        lease = taskqueue.lease_duration()
        started_at = wait_for(lambda: DBTaskResult.objects.running().filter(pk=result_id)
                              .values_list("started_at", flat=True).first(), "claim", worker, log)
        # Renewed after the run had lasted two leases.
        held = wait_for(lambda: (current := lease_of(result_id)) and current.expires_at >= started_at + 3 * lease
                        and current, "renewal two leases in", worker, log)
        # A task as old with no heartbeat: another pool's, that this worker does not take.
        silent = DBTaskResult.objects.create(
            task_path="tests.test_task_lease.hold", args_kwargs={"args": ["never", str(flag)], "kwargs": {}},
            backend_name="elsewhere", run_after=started_at, status=TaskResultStatus.RUNNING,
            worker_ids=["gone"], started_at=started_at,
        )

        # A sweep while the lease holds, long after a lease from the start: only the silent one
        # goes back.
        now = held.expires_at - timedelta(milliseconds=1)
        assert now - started_at > 2 * lease
        assert taskqueue.sweep(now=now)["stale"] == 1
        assert DBTaskResult.objects.get(pk=silent.pk).status == TaskResultStatus.READY
        assert DBTaskResult.objects.get(pk=result_id).status == TaskResultStatus.RUNNING

        # Its heartbeat goes on (the sweep left its lease alone), and the run ends as usual.
        wait_for(lambda: lease_of(result_id).expires_at > held.expires_at, "renewal after the sweep", worker, log)
        flag.touch()
        wait_for(lambda: DBTaskResult.objects.get(pk=result_id).status == TaskResultStatus.SUCCESSFUL,
                 "success", worker, log)
        row = DBTaskResult.objects.get(pk=result_id)
        assert (row.worker_ids, row.return_value) == (["alive"], True)
        wait_for(lambda: not TaskLease.objects.exists(), "the lease released", worker, log)
    finally:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)  # between tasks: it exits at once
            try:
                worker.wait(timeout=30)
            finally:
                end(worker)
    assert len(Path(f"{flag}.runs").read_text().split()) == 1


@pytest.mark.django_db(transaction=True)
def test_on_lambda_no_lease_outlasts_the_functions_timeout(invocations, settings, tmp_path):
    """An invocation (run_queued, here in a thread) leases its runs until the function's timeout
    at most: the sweep takes the task then even though its heartbeat still beats."""
    timeout = 6.0
    settings.TASK_LEASE_SECONDS = LEASE
    settings.TASK_LAMBDA_TIMEOUT = timeout
    flag = tmp_path / "go"
    result_id = hold.enqueue("lambda", str(flag)).id
    assert invocations == [str(result_id)]

    ran = []

    def invocation():
        try:
            ran.append(taskqueue.run_queued(str(result_id), drain_seconds=0))
        finally:
            connections.close_all()

    thread = threading.Thread(target=invocation, daemon=True)
    thread.start()
    try:
        started_at = wait_for(lambda: DBTaskResult.objects.running().filter(pk=result_id)
                              .values_list("started_at", flat=True).first(), "claim")
        end_of_invocation = started_at + timedelta(seconds=timeout)
        # Renewed up to its cap: the invocation's end (it began just before the claim).
        capped = wait_for(lambda: (current := lease_of(result_id))
                          and current.expires_at > end_of_invocation - timedelta(seconds=0.5) and current,
                          "lease renewed up to the invocation's end")
        assert capped.expires_at <= end_of_invocation
        assert taskqueue.sweep(now=capped.expires_at - timedelta(milliseconds=1))["stale"] == 0
        assert taskqueue.sweep(now=end_of_invocation)["stale"] == 1
        assert DBTaskResult.objects.get(pk=result_id).status == TaskResultStatus.READY
    finally:
        flag.touch()
        thread.join(WAIT)
    assert not thread.is_alive() and ran == [True]


@pytest.mark.django_db
def test_heartbeat_renewals_and_the_sweeps_judgement(settings, django_assert_num_queries):
    """Heartbeat.renew on a fake clock, and which RUNNING tasks requeue_expired takes at `now`."""
    settings.TASKS = DATABASE_TASKS
    settings.TASK_LEASE_SECONDS = 20
    now = timezone.now().replace(microsecond=0) - timedelta(hours=1)
    clock = [now]

    def running(age: timedelta) -> DBTaskResult:
        return DBTaskResult.objects.create(
            task_path="feed.fanout.plan_fanout", args_kwargs={"args": [1], "kwargs": {}}, backend_name="default",
            run_after=now - age, status=TaskResultStatus.RUNNING, worker_ids=["w"], started_at=now - age,
        )

    def lease_until(task: DBTaskResult):
        return TaskLease.objects.get(task_id=task.pk, started_at=task.started_at).expires_at

    # Running for half an hour, its heartbeat renewing: one INSERT, then one UPDATE a renewal.
    long_run = running(timedelta(minutes=30))
    beat = taskqueue.Heartbeat(long_run.pk, long_run.started_at, clock=lambda: clock[0])
    clock[0] = now - timedelta(minutes=29)
    with django_assert_num_queries(1):
        assert beat.renew() is True
    clock[0] = now - timedelta(seconds=5)
    with django_assert_num_queries(1):
        assert beat.renew() is True
    assert lease_until(long_run) == now + timedelta(seconds=15)

    # On Lambda, a run 10 s old whose invocation ended a second ago: its lease never reaches past
    # that, even when a thread frozen with the invocation renews it later.
    lambda_run = running(timedelta(seconds=10))
    capped = taskqueue.Heartbeat(lambda_run.pk, lambda_run.started_at, deadline=now - timedelta(seconds=1),
                                 clock=lambda: clock[0])
    clock[0] = now - timedelta(seconds=5)
    assert capped.renew() is True
    clock[0] = now
    assert capped.renew() is False  # past the invocation's end
    assert lease_until(lambda_run) == now - timedelta(seconds=1)

    fresh = running(timedelta(seconds=1))  # no lease yet, younger than a lease: alive
    silent = running(timedelta(seconds=30))  # never renewed, older than a lease: dead
    # Holding a lease of an earlier run of the same task (a worker that lost it) is no lease.
    rerun = running(timedelta(minutes=5))
    TaskLease.objects.create(task_id=rerun.pk, started_at=now - timedelta(hours=1), expires_at=now + timedelta(hours=1))

    assert taskqueue.requeue_expired(now=now) == 3
    status = dict(DBTaskResult.objects.values_list("pk", "status"))
    assert status == {long_run.pk: "RUNNING", fresh.pk: "RUNNING", lambda_run.pk: "READY", silent.pk: "READY",
                      rerun.pk: "READY"}
    # The lease of the run put back is gone: its heartbeat, woken, has lost it and writes no other.
    assert sorted(TaskLease.objects.values_list("task_id", flat=True)) == sorted([long_run.pk, rerun.pk])
    assert capped.renew() is False
    assert not TaskLease.objects.filter(task_id=lambda_run.pk).exists()

    # The long run's lease runs out 20 s after its last renewal, not before.
    assert taskqueue.requeue_expired(now=now + timedelta(seconds=14)) == 0
    assert taskqueue.requeue_expired(now=now + timedelta(seconds=15)) == 1
    assert DBTaskResult.objects.get(pk=long_run.pk).status == "READY"
    beat.release()  # what the run's end does; the sweep has already pruned it
    assert not TaskLease.objects.filter(task_id=long_run.pk).exists()


def test_the_lambda_timeout_is_the_functions():
    """TASK_LAMBDA_TIMEOUT's default is every stage's timeout_seconds in zappa_settings.json."""
    stages = json.loads((Path(django_settings.BASE_DIR) / "zappa_settings.json").read_text())

    def timeout(stage):
        config = stages[stage]
        return config.get("timeout_seconds", timeout(config["extends"]) if "extends" in config else 30)

    assert {timeout(stage) for stage in stages} == {30} == {django_settings.TASK_LAMBDA_TIMEOUT}
