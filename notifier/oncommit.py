"""Running work after the current transaction commits, without ever failing the request."""
from django.db import transaction


def after_commit(func, *args) -> None:
    """Call func(*args) once the current transaction commits; a failure is logged, not raised.

    (Rather than on_commit(partial(...)): Django's log line for a failed robust callback reads
    the callback's __qualname__, which a partial lacks, and would turn the request into a 500.)
    """

    def callback():
        func(*args)

    callback.__qualname__ = f"after_commit({getattr(func, '__qualname__', func)})"
    transaction.on_commit(callback, robust=True)
