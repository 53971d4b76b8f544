"""Background work on the task framework: django-tasks, the backport of Django 6's `django.tasks`
(so this code moves to `django.tasks` unchanged), with django-tasks-db's database queue.

- `@background` declares a task. Tasks are idempotent (fan-out chunks carry dedupe keys), so
  running one twice is harmless and every recovery below may simply run it again. A task that
  meets a deadlock or serialization failure retries itself at once, a few times, in every backend.
- `enqueue(task, *args)` puts the task in the same transaction as the write that asked for it when
  the queue is the database (it exists exactly when that write does, and a rollback takes it
  back); with the immediate backend it runs after the commit, on committed data.
- Backends (settings.TASK_BACKEND): `database` (a `manage.py db_worker` process runs the queue;
  `make run` starts one), `immediate` (inline, for tests and benchmarks), `lambda` (LambdaBackend
  below: the same database queue, each task handed to Zappa's asynchronous invocation).
- django-tasks-db has no retries and no recovery of a task whose worker was killed (it stays
  RUNNING). `sweep()` owns both: the Zappa scheduled event and deliver_pending run it.
"""
import contextvars
import functools
import logging
import random
import time
from datetime import timedelta

from django.conf import settings
from django.db import OperationalError, connection, transaction
from django.db.models import Q
from django.utils import timezone
from django_tasks import task, task_backends
from django_tasks_db.backend import DatabaseBackend

from .oncommit import after_commit

log = logging.getLogger(__name__)

_running = contextvars.ContextVar("herald_task_running", default=False)

# SQLSTATEs that mean "this transaction lost a race; the same work will succeed on another try".
RETRYABLE_SQLSTATES = {"40P01", "40001", "55P03"}  # deadlock, serialization failure, lock not available
CONFLICT_RETRIES = 5


def in_task() -> bool:
    """True while a @background task runs in this thread (its pushes are not urgent)."""
    return _running.get()


def is_conflict(exc: BaseException) -> bool:
    cause = exc.__cause__
    if getattr(cause, "sqlstate", None) in RETRYABLE_SQLSTATES:
        return True
    return "database is locked" in str(exc)


def background(func=None, *, priority: int = 0):
    """@background: a task (django-tasks) that retries lost races and marks itself as background."""

    def wrap(fn):
        @functools.wraps(fn)
        def run(*args, **kwargs):
            token = _running.set(True)
            try:
                for attempt in range(CONFLICT_RETRIES):
                    try:
                        return fn(*args, **kwargs)
                    except OperationalError as exc:
                        # Only a whole transaction can be tried again, not one inside another.
                        if attempt == CONFLICT_RETRIES - 1 or connection.in_atomic_block or not is_conflict(exc):
                            raise
                        log.warning("%s%r lost a race (%s); trying again", fn.__qualname__, args, exc)
                        time.sleep(random.uniform(0.01, 0.05) * 2**attempt)
            finally:
                _running.reset(token)

        return task(priority=priority)(run)

    return wrap(func) if func is not None else wrap


def enqueue(task_, *args) -> None:
    """Enqueue in the current transaction on a database queue; after the commit otherwise."""
    if isinstance(task_.get_backend(), DatabaseBackend):
        task_.enqueue(*args)
    else:
        after_commit(task_.enqueue, *args)


class LambdaBackend(DatabaseBackend):
    """On Lambda: the database queue, with each task handed to an asynchronous invocation of this
    function after the commit (zappa.asynchronous), so nothing waits for a poller. The row is the
    durable record: an invocation that never happens or dies is found by sweep()."""

    def enqueue(self, task, args, kwargs):
        result = super().enqueue(task, args, kwargs)
        after_commit(_invoke, str(result.id))
        return result


def _invoke(result_id: str) -> None:
    from zappa.asynchronous import run as run_async

    run_async(run_queued, args=[result_id])


def run_queued(result_id: str) -> bool:
    """Run one queued task by id if nobody has claimed it (an asynchronous invocation's entry
    point; Lambda may deliver the same invocation twice). Returns whether it ran here."""
    from django_tasks_db.management.commands.db_worker import Worker
    from django_tasks_db.models import DBTaskResult

    with transaction.atomic():
        row = DBTaskResult.objects.ready().filter(pk=result_id).select_for_update(skip_locked=True).first()
        if row is None:
            return False
        worker_id = f"lambda-{random.getrandbits(48):012x}"
        row.claim(worker_id)
    Worker(queue_names=["*"], interval=0, batch=True, backend_name=row.backend_name, startup_delay=False,
           max_tasks=1, worker_id=worker_id, excluded_queue_names=[]).run_task(row)
    return True


def sweep(*, stale_after: timedelta | None = None, now=None) -> dict[str, int]:
    """Put back what the queue would otherwise lose; returns counts.

    - `stale`: tasks RUNNING for longer than TASK_STALE_AFTER (their worker was killed, or Lambda
      timed out) go back to READY.
    - `retried`: FAILED Herald tasks with fewer than TASK_MAX_ATTEMPTS runs go back to READY,
      due after a backoff (30 s doubling).
    - `invoked`: on the Lambda backend, READY tasks older than a minute (an invocation that never
      came) are invoked again.
    """
    from django_tasks.base import TaskResultStatus
    from django_tasks_db.models import DBTaskResult

    now = now or timezone.now()
    stale_after = timedelta(seconds=settings.TASK_STALE_AFTER) if stale_after is None else stale_after
    counts = {"stale": 0, "retried": 0, "invoked": 0}
    with transaction.atomic():
        counts["stale"] = (
            DBTaskResult.objects.running().filter(started_at__lte=now - stale_after)
            .update(status=TaskResultStatus.READY, run_after=now)
        )
        failed = DBTaskResult.objects.failed().filter(Q(task_path__startswith="feed.") | Q(task_path__startswith="notifier."))
        for row in failed.select_for_update(skip_locked=True).only("pk", "worker_ids")[:1000]:
            runs = len(row.worker_ids)
            if runs < settings.TASK_MAX_ATTEMPTS:
                delay = timedelta(seconds=30 * 2 ** (runs - 1))
                counts["retried"] += DBTaskResult.objects.filter(pk=row.pk).update(
                    status=TaskResultStatus.READY, run_after=now + delay, finished_at=None
                )
    if counts["stale"] or counts["retried"]:
        log.warning("task sweep: %(stale)s stale task(s) and %(retried)s failed one(s) queued again", counts)
    if isinstance(task_backends["default"], LambdaBackend):
        lost = DBTaskResult.objects.ready().filter(enqueued_at__lte=now - timedelta(minutes=1))
        for result_id in lost.values_list("pk", flat=True)[:1000]:
            _invoke(str(result_id))
            counts["invoked"] += 1
    return counts
