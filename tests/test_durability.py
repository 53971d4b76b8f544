"""Durability of the fan-out on the real database queue: a worker killed with SIGKILL in the middle of
a 10,000-follower fan-out loses nothing and tells nobody twice once the sweep has put its task
back; and the sweep itself (notifier.taskqueue.sweep).

The worker is a real `manage.py db_worker` subprocess on this test's database (PostgreSQL, or on
SQLite the file copy that test_races.file_backed_sqlite makes: an in-memory database cannot be
opened by another process). Its pushes go to SlowBroker below, a publisher that needs no network.
"""
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

import pytest
from django.conf import settings as django_settings
from django.db import connection
from django.utils import timezone
from django_tasks.base import TaskResultStatus
from django_tasks_db.models import DBTaskResult

from feed import fanout, services
from feed.models import Follow, User
from notifier import taskqueue
from notifier.models import Notification, NotificationState
from notifier.push.publisher import Publisher, PublishError

from .conftest import DATABASE_TASKS
from .helpers import assert_count_exact
from .live import free_port
from .test_races import file_backed_sqlite  # noqa: F401  (autouse: SQLite on a file for this module too)

FOLLOWERS = 10_000
KILL_AFTER = 1_000  # kill once at least this many followers have been told (1 of 5 chunks)


class SlowBroker(Publisher):
    """The worker subprocess's publisher: every push takes HERALD_TEST_PUSH_DELAY seconds and then
    fails as "may pass", so the batch's pushes stay owed (deliver_pending's job) and the worker
    spends most of each chunk task in that one push, after the chunk's commit and before the task
    is marked successful: a kill then lands on a RUNNING task whose notifications are stored."""

    def publish(self, topic, payload, *, qos=1, urgent=False):
        time.sleep(float(os.environ.get("HERALD_TEST_PUSH_DELAY", "0")))
        raise PublishError("test broker unavailable (the push stays owed)")


def database_url() -> str:
    """A DATABASE_URL naming this test's database (not the development one)."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        name = Path(db["NAME"])
        assert name.is_file(), f"the SQLite test database must be a file another process can open, not {db['NAME']!r}"
        return f"sqlite:///{name}"
    assert connection.vendor == "postgresql", connection.vendor
    auth = ""
    if db.get("USER"):
        auth = quote(db["USER"], safe="") + (f":{quote(db['PASSWORD'], safe='')}" if db.get("PASSWORD") else "") + "@"
    port = f":{db['PORT']}" if db.get("PORT") else ""
    return f"postgres://{auth}{db.get('HOST') or 'localhost'}{port}/{quote(db['NAME'], safe='')}"


def worker_command(worker_id: str, *extra: str) -> list[str]:
    return [sys.executable, "manage.py", "db_worker", "--interval", "0.05", "--no-startup-delay", "--no-reload",
            "--worker-id", worker_id, *extra]


def worker_env(push_delay: float) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": database_url(),
        "TASK_BACKEND": "database",
        "NOTIFIER_PUBLISHER": f"{__name__}.SlowBroker",
        "HERALD_TEST_PUSH_DELAY": str(push_delay),
        # Every chunk must really spend its delay in the push, so the breaker (which would skip the
        # pushes of later chunks after the first failure) stays shut.
        "PUSH_BREAKER_SECONDS": "0",
        # Were the default publisher loaded after all: a closed port refuses at once.
        "LOCALIOT_HTTP_PORT": str(free_port()),
        "DEBUG": "0",
        "LOG_LEVEL": "WARNING",
    }


def tail(path: Path, lines: int = 40) -> str:
    text = path.read_text(errors="replace") if path.exists() else ""
    return "\n".join(text.splitlines()[-lines:]) or "(no output)"


def assert_told_once(post, fans) -> None:
    """Every follower told exactly once (one unread item, seq 1), nobody else told anything."""
    per_follower = Counter(
        Notification.objects.filter(kind="new_post", event__post_ref=post.pk).values_list("recipient_id", flat=True)
    )
    fan_ids = {fan.pk for fan in fans}
    assert set(per_follower) == fan_ids, (
        f"{len(fan_ids - set(per_follower))} followers never told, {len(set(per_follower) - fan_ids)} strangers told"
    )
    assert set(per_follower.values()) == {1}, f"told twice: {[u for u, n in per_follower.items() if n > 1][:20]}"
    assert Notification.objects.count() == len(fans)  # nothing else, for nobody else
    states = Counter(NotificationState.objects.filter(user__in=fans).values_list("unread_count", "last_seq"))
    assert states == {(1, 1): len(fans)}, f"(unread_count, last_seq) of the followers: {dict(states)}"
    assert Notification.objects.filter(recipient__in=fans).unread().count() == len(fans)
    assert_count_exact(*fans[:: max(1, len(fans) // 50)], fans[-1])  # the shared helper, on a sample


def fan_out_tasks():
    return DBTaskResult.objects.filter(task_path__startswith="feed.fanout.")


def told(post) -> int:
    return Notification.objects.filter(kind="new_post", event__post_ref=post.pk).count()


@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_fan_out_loses_nothing_and_repeats_nothing(settings, tmp_path):
    author = User.objects.create(username="celebrity")
    # Followers made in bulk: no state rows yet (bulk_create sends no post_save); the fan-out
    # creates them.
    fans = User.objects.bulk_create([User(username=f"fan_{i:05d}") for i in range(FOLLOWERS)])
    Follow.objects.bulk_create([Follow(follower=fan, followee=author) for fan in fans])
    settings.TASKS = DATABASE_TASKS
    post = services.create_post(author, "to all ten thousand of you")  # committed: the task row too
    assert list(DBTaskResult.objects.values_list("task_path", "status")) == [("feed.fanout.plan_fanout", "READY")]
    chunks = len(fanout.chunk_bounds(author.pk))
    assert chunks == FOLLOWERS // fanout.CHUNK_SIZE

    # 1. A worker fans out, slowly (every chunk's push takes 0.3 s), and is killed part-way.
    first_log = tmp_path / "doomed.log"
    with first_log.open("wb") as out:
        worker = subprocess.Popen(worker_command("doomed"), cwd=django_settings.BASE_DIR, env=worker_env(0.3),
                                  stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline, seen = time.monotonic() + 120, 0
        while True:
            assert worker.poll() is None, f"the worker exited ({worker.returncode}) before the kill:\n{tail(first_log)}"
            n = told(post)
            assert n < FOLLOWERS, f"the fan-out finished before the worker could be killed:\n{tail(first_log)}"
            if n >= KILL_AFTER and n != seen:
                break  # a chunk has just committed: its task is RUNNING, in its push, for ~0.3 s more
            seen = n
            assert time.monotonic() < deadline, f"only {n} followers told after 120 s:\n{tail(first_log)}"
            time.sleep(0.01)
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(timeout=30)
    assert worker.returncode == -signal.SIGKILL

    # 2. What the kill left: whole chunks stored (a chunk is one transaction), the rest not, counts
    #    exact for what is stored, and the chunk the worker was running still RUNNING.
    stored = told(post)
    assert KILL_AFTER <= stored < FOLLOWERS, stored
    assert stored % fanout.CHUNK_SIZE == 0, f"{stored} stored: a chunk is all of its followers or none"
    states = Counter(NotificationState.objects.filter(user__in=fans).values_list("unread_count", "last_seq"))
    assert states == {(1, 1): stored}, f"state rows after the kill: {dict(states)} ({stored} told)"
    # (The fan-out's own tasks: the pushes that failed are also queued for a quick retry,
    # notifier.delivery.retry_owed, which the worker runs in between.)
    statuses = Counter(fan_out_tasks().values_list("status", flat=True))
    assert sum(statuses.values()) == 1 + chunks, statuses
    running = list(DBTaskResult.objects.running().values_list("pk", "task_path", "worker_ids"))
    assert len(running) == 1, f"task rows after the kill: {dict(statuses)}; running: {running}\n{tail(first_log)}"
    [(orphaned, path, workers)] = running
    assert (path, workers) == ("feed.fanout.fan_out_chunk", ["doomed"])
    _, after_id, upto_id = DBTaskResult.objects.get(pk=orphaned).args_kwargs["args"]
    its_followers = Follow.objects.filter(followee=author, pk__gt=after_id, pk__lte=upto_id).values("follower")
    in_orphan = Notification.objects.filter(event__post_ref=post.pk, recipient__in=its_followers).count()
    assert in_orphan in (0, fanout.CHUNK_SIZE), f"the interrupted chunk stored {in_orphan} of its followers"

    # 3. A sweep one lease after the kill puts the dead worker's task back (its heartbeat stopped
    #    with it); a new worker finishes the queue and exits.
    one_lease_later = timezone.now() + taskqueue.lease_duration()
    assert taskqueue.sweep(now=one_lease_later) == {"stale": 1, "retried": 0, "invoked": 0}
    assert DBTaskResult.objects.get(pk=orphaned).status == TaskResultStatus.READY
    second_log = tmp_path / "rescuer.log"
    with second_log.open("wb") as out:
        rescue = subprocess.run(worker_command("rescuer", "--batch"), cwd=django_settings.BASE_DIR,
                                env=worker_env(0), stdout=out, stderr=subprocess.STDOUT, timeout=300)
    assert rescue.returncode == 0, f"the second worker failed:\n{tail(second_log)}"

    # 4. Every follower told exactly once, one unread, seq 1; every task successful.
    assert_told_once(post, fans)
    statuses = Counter(fan_out_tasks().values_list("status", flat=True))
    assert statuses == {"SUCCESSFUL": 1 + chunks}, f"{dict(statuses)}\n{tail(second_log)}"
    rerun = DBTaskResult.objects.get(pk=orphaned)
    assert rerun.worker_ids == ["doomed", "rescuer"]
    # Killed after its commit, the chunk's second run finds all its followers told (the dedupe key).
    assert rerun.return_value == fanout.CHUNK_SIZE - in_orphan


@pytest.mark.django_db
def test_the_sweep_requeues_dead_and_failed_herald_tasks_only(settings):
    settings.TASKS = DATABASE_TASKS
    now = timezone.now()
    max_runs = settings.TASK_MAX_ATTEMPTS
    assert max_runs >= 3

    def row(task_path, status, worker_ids, **fields):
        return DBTaskResult.objects.create(
            task_path=task_path, args_kwargs={"args": [1], "kwargs": {}}, backend_name="default",
            run_after=now - timedelta(minutes=5), status=status, worker_ids=worker_ids, **fields,
        ).pk

    # A real queued task, then "claimed" by a worker that died before its first lease renewal.
    stale = DBTaskResult.objects.get(pk=fanout.fan_out_chunk.enqueue(1, 0, 500).id).pk
    DBTaskResult.objects.filter(pk=stale).update(
        status=TaskResultStatus.RUNNING, worker_ids=["dead"],
        started_at=now - taskqueue.lease_duration() - timedelta(seconds=1),
    )
    busy = row("feed.fanout.plan_fanout", TaskResultStatus.RUNNING, ["alive"], started_at=now - timedelta(seconds=5))
    failed_feed = row("feed.fanout.fan_out_chunk", TaskResultStatus.FAILED, ["w1", "w2"], finished_at=now)
    failed_notifier = row("notifier.tasks.example", TaskResultStatus.FAILED, ["w1"], finished_at=now)
    spent = row("feed.fanout.fan_out_chunk", TaskResultStatus.FAILED, [f"w{i}" for i in range(max_runs)],
                finished_at=now)
    foreign = row("feedback.tasks.job", TaskResultStatus.FAILED, ["w1"], finished_at=now)
    done = row("feed.fanout.plan_fanout", TaskResultStatus.SUCCESSFUL, ["w1"], finished_at=now)

    assert taskqueue.sweep(now=now) == {"stale": 1, "retried": 2, "invoked": 0}

    rows = {r.pk: r for r in DBTaskResult.objects.all()}
    # A dead worker's task: READY and due now, so any worker takes it.
    assert (rows[stale].status, rows[stale].run_after) == (TaskResultStatus.READY, now)
    assert DBTaskResult.objects.ready().filter(pk=stale).exists()
    # Running for less than a lease (TASK_LEASE_SECONDS), with no lease yet: its worker may be
    # alive; left alone. (Leases themselves: test_task_lease.)
    assert rows[busy].status == TaskResultStatus.RUNNING
    # Failed Herald tasks with runs left: READY after a backoff of 30 s doubling per earlier run.
    for pk, runs in ((failed_feed, 2), (failed_notifier, 1)):
        r = rows[pk]
        assert (r.status, r.finished_at) == (TaskResultStatus.READY, None), r.task_path
        assert r.run_after == now + timedelta(seconds=30 * 2 ** (runs - 1)), (r.task_path, r.run_after - now)
        assert r.run_after > timezone.now()
        assert not DBTaskResult.objects.ready().filter(pk=pk).exists()  # not before its backoff
    # No runs left, someone else's task, a finished one: untouched.
    assert rows[spent].status == TaskResultStatus.FAILED
    assert rows[foreign].status == TaskResultStatus.FAILED
    assert rows[done].status == TaskResultStatus.SUCCESSFUL
    # Nothing more to do: a second sweep changes nothing.
    assert taskqueue.sweep(now=now) == {"stale": 0, "retried": 0, "invoked": 0}
