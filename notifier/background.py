"""Work that must not hold up a request: a follower fan-out of thousands of rows and publishes.

`run(func, *args)` hands the call to:
- on AWS Lambda, Zappa's asynchronous task runner: a separate asynchronous Lambda invocation
  (the function is found again by its module path, so pass a module-level function and plain,
  JSON-serialisable arguments). Lambda retries a failed async invocation, so tasks must be
  idempotent (fan-out chunks are: see notifier.notify's dedupe_key);
- elsewhere, a bounded pool of BACKGROUND_WORKERS threads (2 by default) fed by a bounded queue.
  When the queue is full, the caller runs the job itself: back-pressure, never a dropped job.
  BACKGROUND_WORKERS=0 runs every job inline (management commands, single-threaded tests).

Jobs should be scheduled with transaction.on_commit, so they see the data that asked for them.
"""
import logging
import os
import queue
import threading

from django.conf import settings
from django.db import connections, transaction

log = logging.getLogger(__name__)

QUEUE_SIZE = 1000

_lock = threading.Lock()
_jobs: queue.Queue | None = None
_threads: list[threading.Thread] = []


def after_commit(func, *args) -> None:
    """Call func(*args) once the current transaction commits; a failure is logged, not raised.

    (Rather than on_commit(partial(...)): Django's log line for a failed robust callback reads
    the callback's __qualname__, which a partial lacks, and would turn the request into a 500.)
    """

    def callback():
        func(*args)

    callback.__qualname__ = f"after_commit({getattr(func, '__qualname__', func)})"
    transaction.on_commit(callback, robust=True)


def later_after_commit(func, *args) -> None:
    """run(func, *args) once the current transaction commits: background work on committed data."""
    after_commit(run, func, *args)


def on_lambda() -> bool:
    return bool(os.environ.get("AWS_LAMBDA_FUNCTION_NAME"))


def run(func, *args) -> None:
    if on_lambda():
        from zappa.asynchronous import run as run_async

        run_async(func, args=list(args))
        return
    if settings.BACKGROUND_WORKERS <= 0:
        _call(func, args)
        return
    try:
        _queue().put_nowait((func, args))
    except queue.Full:
        log.warning("background queue full: running %s inline", getattr(func, "__qualname__", func))
        _call(func, args)


def wait(timeout: float = 30) -> bool:
    """Block until every queued job has finished (for shutdown, benchmarks and tests)."""
    if _jobs is None:
        return True
    done = threading.Event()
    threading.Thread(target=lambda: (_jobs.join(), done.set()), daemon=True).start()
    return done.wait(timeout)


def _queue() -> queue.Queue:
    global _jobs
    with _lock:
        if _jobs is None:
            _jobs = queue.Queue(maxsize=QUEUE_SIZE)
            for index in range(settings.BACKGROUND_WORKERS):
                thread = threading.Thread(target=_worker, name=f"herald-background-{index}", daemon=True)
                thread.start()
                _threads.append(thread)
        return _jobs


def _worker() -> None:
    # A worker thread opens its own database connections; it closes them after each job so none
    # is left idle between jobs (or open when the process or a test database goes away).
    while True:
        func, args = _jobs.get()
        try:
            _call(func, args)
        finally:
            connections.close_all()
            _jobs.task_done()


def _call(func, args) -> None:
    try:
        func(*args)
    except Exception:
        log.exception("background job %s%r failed", getattr(func, "__qualname__", func), args)
