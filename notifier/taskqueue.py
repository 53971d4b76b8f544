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
- Leases say which RUNNING tasks still have a worker: while a worker (db_worker, or an invocation's
  run_queued) runs a task, a heartbeat thread renews the run's lease (notifier.models.TaskLease)
  every quarter of TASK_LEASE_SECONDS. A task whose lease has expired is put back by the sweep
  within seconds of its worker's death, however long a live worker's run takes.
"""
import contextvars
import functools
import logging
import random
import threading
import time
from datetime import datetime, timedelta

from django.conf import settings
from django.db import DatabaseError, OperationalError, connection, connections, transaction
from django.db.models import Exists, OuterRef, Q
from django.dispatch import receiver
from django.utils import timezone
from django_tasks import task, task_backends
from django_tasks_db.backend import DatabaseBackend
from django_tasks_db.compat import task_finished, task_started

from .oncommit import after_commit

log = logging.getLogger(__name__)

_running = contextvars.ContextVar("herald_task_running", default=False)
# On Lambda: when the invocation running this thread's tasks ends at the latest (run_queued).
_invocation_ends = contextvars.ContextVar("herald_invocation_ends", default=None)

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


def enqueue_retry(task_, ids: list, due: datetime, what: str) -> None:
    """Hand owed rows' ids to `task_`, to run when they are due, so a hiccup costs about a second
    rather than a deliver_pending period. The rows are the durable record (deliver_pending finds
    them whatever happens here), so a queue that cannot take the task only costs time, and a
    backend that cannot defer (the immediate one, in tests) leaves them to deliver_pending too."""
    if not task_.get_backend().supports_defer:
        return
    try:
        task_.using(run_after=due).enqueue(ids)
    except Exception:  # noqa: BLE001 - never turn a push failure into a request failure
        log.exception("could not queue the retry of %d %s; deliver_pending will", len(ids), what)


class LambdaBackend(DatabaseBackend):
    """On Lambda: the database queue, with tasks handed to asynchronous invocations of this function
    after the commit (zappa.asynchronous), so nothing waits for a poller. The row is the durable
    record: an invocation that never happens or dies is found by sweep().

    Parallel, within a cap: the tasks one transaction enqueues (a fan-out plan's chunks) get at
    most TASK_LAMBDA_PARALLEL invocations, fewer when that many tasks are already running; every
    invocation runs its task and then keeps taking queued tasks (`run_queued`) for
    TASK_LAMBDA_DRAIN_SECONDS. So a 1M-follower post's 500 chunks run on ten invocations, not
    500: the account's Lambda concurrency and IoT publish rate stay free for everyone else."""

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
    still queued then, hand them on to a fresh invocation. Returns whether `result_id` ran here.

    Leases on Lambda: its runs renew their leases like db_worker's (a crashed invocation's task
    comes back within TASK_LEASE_SECONDS), but never past this call's start plus the function's
    timeout (TASK_LAMBDA_TIMEOUT, zappa_settings.json's timeout_seconds): the invocation cannot
    outlive it, and a heartbeat thread frozen with it must not vouch for it later. (Zappa's
    asynchronous routing does not hand the function the Lambda context, so its remaining time is
    not known here; the setting is, and a test holds it to zappa_settings.json.)"""
    from django_tasks_db.models import DBTaskResult

    drain_seconds = settings.TASK_LAMBDA_DRAIN_SECONDS if drain_seconds is None else drain_seconds
    # No run of this invocation outlives the function's timeout, so no lease renewed here does.
    ends = _invocation_ends.set(timezone.now() + timedelta(seconds=settings.TASK_LAMBDA_TIMEOUT))
    try:
        # Runs that died elsewhere go back to the queue first (one query when there are none), so
        # this drain takes them: the scheduled sweep, every minute, is not the only way back.
        requeue_expired()
        deadline = time.monotonic() + drain_seconds
        _await_deferred(result_id, deadline)
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
    finally:
        _invocation_ends.reset(ends)


def _await_deferred(result_id: str, deadline: float) -> None:
    """A deferred task is invoked when it is enqueued, not when it is due (Lambda has no delayed
    invocation short of a queue or a schedule): a quick retry of owed pushes, due in half a second
    or a few, waits here for its time, within the drain. One due later than the drain is left to
    the scheduled sweep, which invokes queued tasks again."""
    from django_tasks_db.models import DBTaskResult

    from django_tasks.base import TaskResultStatus

    queued = DBTaskResult.objects.filter(pk=result_id, status=TaskResultStatus.READY)
    run_after = queued.values_list("run_after", flat=True).first()  # "no delay" is stored as year 9999
    if run_after is None:
        return
    wait = (run_after - timezone.now()).total_seconds()
    if 0 < wait <= deadline - time.monotonic():
        time.sleep(wait)


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


def lease_duration() -> timedelta:
    return timedelta(seconds=settings.TASK_LEASE_SECONDS)


class Heartbeat:
    """Renews the lease of one run (task id, started_at) from a daemon thread of its own, on its own
    database connection (closed when it stops), until stop(): the first renewal, a quarter of the
    lease after the start, INSERTs the lease; each later one is one UPDATE; stop() deletes it. A
    run that ends sooner writes nothing (the sweep gives a run without a lease the whole lease
    from its start).

    `deadline` (on Lambda: when the invocation ends at the latest) caps every renewal: Lambda
    ends an invocation at the function's timeout and freezes or discards its threads, so a run is
    dead by then whatever its heartbeat last wrote, and a frozen thread woken in a later
    invocation cannot make a dead run look alive. If the sweep has put the task back (this worker
    stalled for a whole lease), the renewal finds no row and the heartbeat stops: the run goes on
    (tasks are idempotent) but no longer claims the task."""

    def __init__(self, task_id: str, started_at: datetime, *, deadline: datetime | None = None, clock=timezone.now):
        self.task_id, self.started_at, self.deadline, self.clock = str(task_id), started_at, deadline, clock
        self.lease = lease_duration()
        self.pk = None
        self._stop = threading.Event()
        self._thread = None

    def start(self) -> "Heartbeat":
        self._thread = threading.Thread(target=self._beat, name=f"lease-{self.task_id}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def renew(self) -> bool:
        """One renewal; False once the lease is lost (the task was put back) or past the deadline."""
        from .models import TaskLease

        now = self.clock()
        expires = now + self.lease
        if self.deadline is not None:
            expires = min(expires, self.deadline)
        if self.pk is None:
            self.pk = TaskLease.objects.create(task_id=self.task_id, started_at=self.started_at, expires_at=expires).pk
            return expires > now
        if not TaskLease.objects.filter(pk=self.pk).update(expires_at=expires):
            log.warning("task %s lost its lease (its worker stalled for %s); it runs on elsewhere too",
                        self.task_id, self.lease)
            return False
        return expires > now

    def release(self) -> None:
        from .models import TaskLease

        if self.pk is not None:
            try:
                TaskLease.objects.filter(pk=self.pk).delete()
            except DatabaseError as exc:  # the sweep prunes it once it has long expired
                log.warning("releasing the lease of task %s failed: %s", self.task_id, exc)

    def _beat(self) -> None:
        try:
            while not self._stop.wait(self.lease.total_seconds() / 4):
                try:
                    if not self.renew():
                        break
                except DatabaseError as exc:  # a locked SQLite database, a dropped connection: next time
                    log.warning("renewing the lease of task %s failed: %s", self.task_id, exc)
                    connection.close_if_unusable_or_obsolete()
            else:
                self.release()
                return
            connections.close_all()  # lost or past its deadline: nothing more to write until the run ends
            self._stop.wait()
            self.release()
        finally:
            connections.close_all()  # this thread's own


_heartbeats = threading.local()


@receiver(task_started, dispatch_uid="notifier.taskqueue.start_heartbeat")
def _start_heartbeat(sender, task_result, **kwargs) -> None:
    """Every run on the database queue (db_worker's, and Lambda's through the same worker code)
    gets a heartbeat for as long as it runs: django-tasks-db sends task_started and
    task_finished around each task, in the thread that runs it."""
    try:
        if not isinstance(task_backends[task_result.backend], DatabaseBackend):
            return  # the immediate backend: no task row, nothing to lease
        _stop_heartbeat(sender, task_result=None)  # a heartbeat left over in this thread, if any
        _heartbeats.current = Heartbeat(task_result.id, task_result.started_at,
                                        deadline=_invocation_ends.get()).start()
    except Exception:  # without a lease the task still runs; the sweep may run it twice
        log.exception("no heartbeat for task %s", task_result.id)


@receiver(task_finished, dispatch_uid="notifier.taskqueue.stop_heartbeat")
def _stop_heartbeat(sender, task_result, **kwargs) -> None:
    heartbeat = getattr(_heartbeats, "current", None)
    if heartbeat is not None and (task_result is None or heartbeat.task_id == str(task_result.id)):
        _heartbeats.current = None
        heartbeat.stop()


def requeue_expired(*, now: datetime | None = None) -> int:
    """Put back to READY, due now, every RUNNING task whose run's lease has expired, or which has
    no lease and started more than a lease ago; returns how many. One query when there are none."""
    from django_tasks.base import TaskResultStatus
    from django_tasks_db.models import DBTaskResult

    from .models import TaskLease

    now = now or timezone.now()
    lease = lease_duration()
    run_leases = TaskLease.objects.filter(task_id=OuterRef("pk"), started_at=OuterRef("started_at"))
    expired = DBTaskResult.objects.running().filter(
        Exists(run_leases.filter(expires_at__lte=now)) | (Q(started_at__lte=now - lease) & ~Exists(run_leases))
    )
    ids = list(expired.values_list("pk", flat=True)[:1000])
    if not ids:
        return 0
    with transaction.atomic():
        # Again, in the UPDATE: a heartbeat may have renewed since, or the task finished. Due at
        # once, also when judged by a clock ahead of the real one.
        count = expired.filter(pk__in=ids).update(status=TaskResultStatus.READY, run_after=min(now, timezone.now()))
        # The runs put back, and leases left by runs long gone (a worker that lost its task).
        TaskLease.objects.filter(Q(task_id__in=ids) | Q(expires_at__lte=now - lease), expires_at__lte=now).delete()
    return count


def sweep(*, now: datetime | None = None) -> dict[str, int]:
    """Put back what the queue would otherwise lose; returns counts.

    - `stale`: RUNNING tasks whose worker is gone (requeue_expired: the run's lease expired, or
      it has none and started more than TASK_LEASE_SECONDS ago; on Lambda no lease outlasts the
      function's timeout) go back to READY.
    - `retried`: FAILED Herald tasks with fewer than TASK_MAX_ATTEMPTS runs go back to READY,
      due after a backoff (30 s doubling).
    - `invoked`: on the Lambda backend, READY tasks older than a minute (an invocation that never
      came, or a queue longer than its invocations could drain) are invoked again, within
      TASK_LAMBDA_PARALLEL.
    """
    from django_tasks.base import TaskResultStatus
    from django_tasks_db.models import DBTaskResult

    now = now or timezone.now()
    counts = {"stale": requeue_expired(now=now), "retried": 0, "invoked": 0}
    with transaction.atomic():
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
