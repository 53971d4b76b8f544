from django.apps import AppConfig
from django.conf import settings
from django.contrib.auth.signals import user_logged_out
from django.db.models.signals import post_save


def create_state(sender, instance, created, raw=False, **kwargs):
    """Every account gets its notification state row when it is created, in the same transaction.

    (A signal, unusually for Herald: accounts are created by sign-up, the admin, createsuperuser
    and fixtures alike.) A write that notifies then only ever locks rows that exist: inserting a
    missing row inside a write would take a lock out of ascending order, and two writers doing that
    could deadlock. services._lock_states still creates rows that are missing (accounts made in
    bulk), for correctness.
    """
    if created and not raw:
        from .models import NotificationState

        NotificationState.objects.get_or_create(user_id=instance.pk)


def end_live_access(sender, request=None, user=None, **kwargs):
    """Log-out closes the user's live connections (all their tabs and devices: AWS IoT cannot tell
    which connection belongs to which log-in session, and a shared computer is the case to fear)."""
    if user is not None and user.pk is not None:
        from .live_clients import end_access

        end_access(user.pk)


class NotifierConfig(AppConfig):
    name = "notifier"
    verbose_name = "Notifications"

    def ready(self):
        post_save.connect(create_state, sender=settings.AUTH_USER_MODEL, dispatch_uid="notifier.create_state")
        user_logged_out.connect(end_live_access, dispatch_uid="notifier.end_live_access")
        # Its task_started / task_finished receivers hold every running task's lease (heartbeat),
        # whichever app the task comes from; connected here so no worker runs one without them.
        from . import taskqueue  # noqa: F401
