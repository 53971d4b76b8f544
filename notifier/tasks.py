"""Functions that Lambda events call (zappa_settings.json "events").

Zappa's handler sets Django up (its `django_settings`) before it calls an event function, the same
way it does for a web request; the set-up below only matters when this is called elsewhere.
"""
import io
import logging
import os

log = logging.getLogger(__name__)


def deliver_pending_event(event=None, context=None) -> str:
    """Scheduled every minute: one `manage.py deliver_pending` run (pushes that are pending and due,
    then the task queue's sweep: tasks whose lease expired and failed tasks queued again, lost
    invocations re-invoked). Every asynchronous invocation (taskqueue.run_queued) also puts back
    expired tasks when it starts, so on Lambda this event is not the only way back.

    Overlapping runs are safe (rows are leased when claimed), and so is a run that Lambda's timeout
    cuts short: its claimed rows come due again when their lease ends.
    """
    import django
    from django.apps import apps
    from django.core.management import call_command

    if not apps.ready:
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
        django.setup()
    out = io.StringIO()
    call_command("deliver_pending", stdout=out)
    summary = out.getvalue().strip()
    log.info("deliver_pending: %s", summary)
    return summary


def _send_digests(window: str) -> str:
    import django
    from django.apps import apps
    from django.core.management import call_command

    if not apps.ready:
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
        django.setup()
    out = io.StringIO()
    call_command("send_digests", window=[window], stdout=out)
    summary = out.getvalue().strip()
    log.info("send_digests: %s", summary)
    return summary


def hourly_digests_event(event=None, context=None) -> str:
    """Scheduled every hour: `manage.py send_digests --window hourly` (the batches go to background
    invocations; a second run in the same hour sends nothing twice)."""
    return _send_digests("hourly")


def daily_digests_event(event=None, context=None) -> str:
    """Scheduled once a day: `manage.py send_digests --window daily`."""
    return _send_digests("daily")
