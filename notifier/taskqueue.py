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
    """On Lambda: the database queue, with tasks handed to asynchronous invocations of this function
    after the commit (zappa.asynchronous), so nothing waits for a poller. The row is the durable
    record: an invocation that never happens or dies is found by sweep().

    Parallel, within a cap: the tasks one transaction enqueues (a fan-out plan's chunks) get at
    most TASK_LAMBDA_PARALLEL invocations, fewer when that many tasks are already running; every
    invocation runs its task and then keeps taking queued tasks (`run_queued`) for
    TASK_LAMBDA_DRAIN_SECONDS. So a 1M-follower post's 2,000 chunks run on ten invocations, not
    2,000: the account's Lambda concurrency and IoT publish rate stay free for everyone else."""

    def enqueue(self, task, args, kwargs):
        result = super().enqueue(task, args, kwargs)
        _invoke_after_commit(str(result.id))
        return result


def _invoke_after_commit(result_id: str) -> None:
    """Hand the task to an invocation once the transaction commits: one callback per transaction
    collects its tasks, so the cap applies to all of them together. (A task whose callback is lost
    with a rolled-back savepoint while its row survives is found by the sweep.)"""
    if not connection.in_atomic_block:
        _invoke_capped([result_id])
        return
    for _, func, _ in connection.run_on_commit:
        ids = getattr(func, "herald_invocations", None)
        if ids is not None:
            ids.append(result_id)
            return
    ids = [result_id]
    after_commit(_invoke_capped, ids)
    connection.run_on_commit[-1][1].herald_invocations = ids


def _invoke_capped(ids: list[str]) -> None:
    from django_tasks_db.models import DBTaskResult

    room = settings.TASK_LAMBDA_PARALLEL - DBTaskResult.objects.running().count()
    for result_id in ids[: max(1, min(len(ids), room))]:
        _invoke(result_id)


def _invoke(result_id: str) -> None:
    from zappa.asynchronous import run as run_async

    run_async(run_queued, args=[result_id])


def run_queued(result_id: str, *, drain_seconds: float | None = None) -> bool:
    """An asynchronous invocation's entry point: run the queued task `result_id` if nobody has
    claimed it yet (Lambda may deliver the same invocation twice), then keep running queued tasks
    until none is left or drain_seconds (TASK_LAMBDA_DRAIN_SECONDS) have passed; if tasks are
    still queued then, hand them on to a fresh invocation. Returns whether `result_id` ran here."""
    from django_tasks_db.models import DBTaskResult

    drain_seconds = settings.TASK_LAMBDA_DRAIN_SECONDS if drain_seconds is None else drain_seconds
    deadline = time.monotonic() + drain_seconds
    ran = _run_one(DBTaskResult.objects.filter(pk=result_id))
    # Oldest first among equals: tasks queued without a delay share one run_after.
    queue_order = ("-priority", "run_after", "enqueued_at")
    while time.monotonic() < deadline:
        if not _run_one(DBTaskResult.objects.order_by(*queue_order)):
            return ran
    following = DBTaskResult.objects.ready().order_by(*queue_order).values_list("pk", flat=True).first()
    if following is not None:
        _invoke(str(following))
    return ran


def _run_one(candidates) -> bool:
    """Claim the first ready task among `candidates` (skipping rows others hold) and run it."""
    from django_tasks_db.management.commands.db_worker import Worker

    with transaction.atomic():
        row = candidates.ready().select_for_update(skip_locked=True).first()
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
      came, or a queue longer than its invocations could drain) are invoked again, within
      TASK_LAMBDA_PARALLEL.
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
        # Within the cap: a queue that running invocations are draining needs no more of them.
        room = settings.TASK_LAMBDA_PARALLEL - DBTaskResult.objects.running().count()
        lost = DBTaskResult.objects.ready().filter(enqueued_at__lte=now - timedelta(minutes=1)).order_by("enqueued_at")
        for result_id in lost.values_list("pk", flat=True)[: max(0, room)]:
            _invoke(str(result_id))
            counts["invoked"] += 1
    return counts
