"""Admin for notifications: read-only rows (they are facts), actions that keep counts exact.

The tables are large (a million notifications is ordinary), so the changelists are built to stay
cheap: no full COUNT(*) of the table (`show_full_result_count = False`, and CountEstimatePaginator
for the unfiltered list on PostgreSQL), newest first by primary key (a backward index scan that
stops after one page), searches that resolve a username through its index, and filters that
either use an index or only cost anything when an operator picks them.
"""
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.core.paginator import Paginator
from django.db import connections
from django.db.models import Exists, OuterRef, Q, Subquery
from django.db.models.functions import Lower
from django.utils import timezone
from django.utils.functional import cached_property

from . import delivery, services
from .diagnostics import send_test_push
from .models import DigestDelivery, Notification, NotificationState, PendingPush, PendingWebPush, WebPushSubscription

# Owed pushes are retried this many notifications at a time (one deliver() call each).
RETRY_BATCH = 500
# A test push goes to at most this many users at once: it is a check, not a broadcast.
TEST_PUSH_LIMIT = 100


class CountEstimatePaginator(Paginator):
    """A paginator that does not COUNT(*) a large table to number the pages of its unfiltered list.

    Django's `show_full_result_count = False` drops the second count (of the whole table) but still
    counts the list itself. On PostgreSQL, when the list is not filtered, this takes the planner's
    estimate instead (pg_class.reltuples, kept current by autovacuum/ANALYZE): one catalog lookup,
    however big the table. Estimates under EXACT_BELOW (a small table, or one never analyzed,
    whose reltuples is -1) are replaced by the exact count, which is cheap there. A filtered list
    and every other database count exactly. The last pages of an estimated list may come out empty
    or missing; on a table this size nobody pages there, they filter.
    """

    EXACT_BELOW = 10_000

    @cached_property
    def count(self):
        query = getattr(self.object_list, "query", None)
        if query is not None and not query.where and not query.combinator:
            connection = connections[self.object_list.db]
            if connection.vendor == "postgresql":
                with connection.cursor() as cursor:
                    cursor.execute(
                        "SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass(%s)",
                        [connection.ops.quote_name(self.object_list.model._meta.db_table)],
                    )
                    row = cursor.fetchone()
                if row and row[0] >= self.EXACT_BELOW:
                    return row[0]
        return super().count


class LargeTableAdmin(admin.ModelAdmin):
    """Changelist settings for a table that may hold millions of rows (see the module docstring)."""

    show_full_result_count = False
    paginator = CountEstimatePaginator
    # The foreign key to the user whose exact username the search box takes (see username_search).
    search_user_field: str | None = None

    def get_search_results(self, request, queryset, search_term):
        if self.search_user_field is None:
            return super().get_search_results(request, queryset, search_term)
        return username_search(queryset, self.search_user_field, search_term)


def username_search(queryset, user_field: str, search_term: str):
    """`user_field` is the user whose username is the search term (case-insensitive, a leading @
    allowed), found through the unique index on LOWER(username) and then the table's own index on
    that user; never a LIKE over the table (LargeTableAdmin.search_user_field)."""
    term = search_term.strip().lstrip("@")
    if not term:
        return queryset, False
    users = get_user_model().objects.alias(lname=Lower("username")).filter(lname=term.lower()).values("pk")
    return queryset.filter(**{f"{user_field}__in": users}), False


# --- Actions ---------------------------------------------------------------------------------

@admin.action(description="Retry push of the selected notifications now", permissions=["retry"])
def retry_push(modeladmin, request, queryset):
    """Push now those of the selected notifications whose push is owed, pending or failed, through
    the same path as deliver_pending (delivery.deliver), RETRY_BATCH at a time. Counts are not
    touched: only the outbox rows change (delivered: gone; may pass: due again after a backoff;
    can never succeed: failed, with the error).

    Works on Notification and PendingPush lists alike: both are keyed by the notification's id.
    """
    owed = PendingPush.objects.filter(pk__in=queryset.values("pk")).order_by("pk")
    totals = {"delivered": 0, "pending": 0, "failed": 0}
    errors: list[str] = []
    stopped = False
    after = None
    while True:  # keyset over the owed rows: no OFFSET, no list of the whole selection in memory
        batch = owed if after is None else owed.filter(pk__gt=after)
        ids = list(batch.values_list("pk", flat=True)[:RETRY_BATCH])
        if not ids:
            break
        after = ids[-1]
        # deliver() pushes rows with a due time, so a failed row (due_at null) must get one first.
        # A claim lease rather than "now": a deliver_pending run that starts meanwhile leaves these
        # rows to us instead of pushing them a second time; deliver() then records each outcome.
        PendingPush.objects.filter(pk__in=ids).update(due_at=timezone.now() + delivery.CLAIM_LEASE)
        outcome = delivery.deliver(ids)
        for key in totals:
            totals[key] += outcome.get(key, 0)
        if outcome.get("pending") or outcome.get("failed"):
            for error in PendingPush.objects.filter(pk__in=ids).values_list("last_error", flat=True).distinct()[:3]:
                if error and error not in errors:
                    errors.append(error)
        if outcome.get("pending"):
            # The broker could not be reached (or kept throttling): the rest would only wait out
            # the same timeouts. deliver_pending retries what is still owed.
            stopped = True
            break
    tried = sum(totals.values())
    if not tried:
        modeladmin.message_user(request, "None of the selected notifications owes a push.", messages.INFO)
        return
    text = (f"Retried {tried} owed push(es): delivered {totals['delivered']}, still pending "
            f"{totals['pending']} (deliver_pending retries them), failed {totals['failed']}.")
    if stopped:
        text += " A push could not be delivered, so the rest of the selection was not tried."
    if errors:
        text += " Last error(s): " + "; ".join(errors)
    ok = not (totals["pending"] or totals["failed"])
    modeladmin.message_user(request, text, messages.SUCCESS if ok else messages.WARNING)


@admin.action(description="Send a test push to the selected users", permissions=["send_test_push"])
def push_test_message(modeladmin, request, queryset):
    """Publish a transient test message to each selected user's private topic (nothing stored,
    nothing counted; see notifier.diagnostics). For lists whose primary key is the user's id."""
    user_ids = list(queryset.order_by().values_list("pk", flat=True)[: TEST_PUSH_LIMIT + 1])
    if len(user_ids) > TEST_PUSH_LIMIT:
        modeladmin.message_user(
            request, f"Select at most {TEST_PUSH_LIMIT} users for a test push; nothing was sent.", messages.ERROR
        )
        return
    outcome = send_test_push(user_ids)
    names = dict(get_user_model().objects.filter(pk__in=user_ids).values_list("pk", "username"))
    if outcome.delivered:
        modeladmin.message_user(request, f"Test push delivered to {len(outcome.delivered)} user(s).", messages.SUCCESS)
    by_error: dict[str, list[str]] = {}
    for uid, error in [*outcome.retry.items(), *outcome.failed.items()]:
        by_error.setdefault(error, []).append(names.get(uid, str(uid)))
    for error, who in by_error.items():
        modeladmin.message_user(
            request, f"Test push failed for {len(who)} user(s) ({', '.join(sorted(who))}): {error}", messages.ERROR
        )


class SendTestPushPermission:
    """Who may send test pushes: whoever may change notification states (superusers, or staff
    given notifier.change_notificationstate)."""

    def has_send_test_push_permission(self, request):
        return request.user.has_perm("notifier.change_notificationstate")


class RetryPermission:
    """Who may retry pushes: whoever may change notifications (the rows themselves stay read-only)."""

    def has_retry_permission(self, request):
        return request.user.has_perm("notifier.change_notification")


# --- Filters ---------------------------------------------------------------------------------

class RecordAdmin(LargeTableAdmin):
    """A table only Herald writes (owed pushes, digests, subscriptions): shown, never added or
    edited here. Deleting stays allowed where a subclass says so."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class ReadFilter(admin.SimpleListFilter):
    title = "read"
    parameter_name = "read"

    def lookups(self, request, model_admin):
        return [("yes", "Read"), ("no", "Unread")]

    def queryset(self, request, queryset):
        unread = Notification.objects.filter(pk=OuterRef("pk")).unread()
        if self.value() == "yes":
            return queryset.exclude(Exists(unread))
        if self.value() == "no":
            return queryset.filter(Exists(unread))
        return queryset


class PushFilter(admin.SimpleListFilter):
    """Delivered: no push is owed. Pending: one is owed and will be tried. Failed: given up.

    Pending and failed are semi-joins driven by the (small) outbox; pending rows are exactly those
    in its partial index on due_at."""

    title = "push"
    parameter_name = "push"

    def lookups(self, request, model_admin):
        return [("delivered", "Delivered"), ("pending", "Pending"), ("failed", "Failed")]

    def queryset(self, request, queryset):
        owed = PendingPush.objects.filter(pk=OuterRef("pk"))
        if self.value() == "delivered":
            return queryset.exclude(Exists(owed))
        if self.value() == "pending":
            return queryset.filter(Exists(owed.filter(due_at__isnull=False)))
        if self.value() == "failed":
            return queryset.filter(Exists(owed.filter(due_at__isnull=True)))
        return queryset


class PushStateFilter(admin.SimpleListFilter):
    """On the outbox itself: pending rows are exactly those of the partial index on due_at
    (pendingpush_due_idx); failed rows (due_at null) are the rest of this table."""

    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [("pending", "Pending"), ("failed", "Failed")]

    def queryset(self, request, queryset):
        if self.value() == "pending":
            return queryset.filter(due_at__isnull=False)
        if self.value() == "failed":
            return queryset.filter(due_at__isnull=True)
        return queryset


# --- Admins ----------------------------------------------------------------------------------

@admin.register(Notification)
class NotificationAdmin(RetryPermission, LargeTableAdmin):
    list_display = ["id", "recipient", "seq", "kind", "actor", "text", "is_read", "push", "push_error", "created_at"]
    list_select_related = ["recipient", "event__actor"]
    # Newest first by primary key: a backward scan of the pk index that stops after one page (the
    # model's own ordering, seq, is only indexed per recipient), and no other column sorts.
    ordering = ["-pk"]
    sortable_by = ["id"]
    # No created_at filter (no index: every use scanned and sorted the table). `kind` has no index
    # either, but it is kept: it costs nothing until picked, and then the page itself walks the pk
    # index newest first and stops after a page of that kind; only the filtered list's count (and a
    # kind rare among recent rows) reads further, as the read and push filters do.
    list_filter = ["kind", ReadFilter, PushFilter]
    # The recipient's exact username (see LargeTableAdmin): no LIKE over a million texts.
    search_fields = ["=recipient__username"]
    search_user_field = "recipient"
    search_help_text = "The recipient's username, exactly (case-insensitive)."
    actions = ["mark_as_read", retry_push]
    readonly_fields = [f.name for f in Notification._meta.fields]

    def get_queryset(self, request):
        owed = PendingPush.objects.filter(pk=OuterRef("pk"))
        unread = Notification.objects.filter(pk=OuterRef("pk")).unread()
        return super().get_queryset(request).annotate(
            owed=Exists(owed),
            push_due=Subquery(owed.values("due_at")[:1]),
            push_last_error=Subquery(owed.values("last_error")[:1]),
            unread=Exists(unread),
        )

    @admin.display(boolean=True, description="read")
    def is_read(self, notification):
        return not notification.unread

    @admin.display(description="push")
    def push(self, notification):
        if not notification.owed:
            return "delivered"
        return "pending" if notification.push_due else "failed"

    @admin.display(description="last push error")
    def push_error(self, notification):
        return notification.push_last_error or ""

    @admin.action(description="Mark selected notifications as read")
    def mark_as_read(self, request, queryset):
        changed = services.mark_read_where(Q(pk__in=list(queryset.values_list("pk", flat=True))))
        self.message_user(request, f"Marked {changed} notification(s) as read.", messages.SUCCESS)

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        # A deleted row would leave the unread count wrong; notifications go with what they are about.
        return False


@admin.register(NotificationState)
class NotificationStateAdmin(SendTestPushPermission, LargeTableAdmin):
    list_display = ["user", "last_seq", "unread_count", "read_seq"]
    list_select_related = ["user"]
    ordering = ["-pk"]
    sortable_by = ["user"]
    search_fields = ["=user__username"]
    search_user_field = "user"
    search_help_text = "A username, exactly (case-insensitive)."
    readonly_fields = ["user", "last_seq", "unread_count", "read_seq"]
    actions = [push_test_message]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(PendingPush)
class PendingPushAdmin(RetryPermission, RecordAdmin):
    """The outbox, read-only: what is owed, how often it was tried, and why it failed."""

    list_display = ["notification_link", "recipient", "state", "attempts", "due_at", "last_attempt_at", "last_error"]
    list_select_related = ["recipient"]
    ordering = ["-pk"]
    sortable_by = ["notification_link"]
    list_filter = [PushStateFilter]
    search_fields = ["=recipient__username"]
    search_user_field = "recipient"
    search_help_text = "The recipient's username, exactly (case-insensitive)."
    actions = [retry_push]

    @admin.display(description="notification", ordering="pk")
    def notification_link(self, push):
        from django.urls import reverse
        from django.utils.html import format_html

        url = reverse("admin:notifier_notification_change", args=[push.pk])
        return format_html('<a href="{}">{}</a>', url, push.pk)

    @admin.display(description="state")
    def state(self, push):
        return push.state

    def has_delete_permission(self, request, obj=None):
        # Deleting an owed push would silently drop it; it goes when delivered.
        return False


@admin.register(DigestDelivery)
class DigestDeliveryAdmin(RecordAdmin):
    """Email digests by window: sent, or claimed without a mail (nothing new, or lost: at most once)."""

    list_display = ["user", "cadence", "window_start", "sent_at", "item_count", "upto_seq"]
    list_filter = ["cadence"]
    raw_id_fields = ["user"]
    search_fields = ["user__username"]
    search_user_field = "user"  # an exact username through its index, never a LIKE over the table


@admin.register(WebPushSubscription)
class WebPushSubscriptionAdmin(RecordAdmin):
    """Browsers subscribed to Web Push, read-only. Deleting one ends pushes to that browser (and
    drops what it is owed); the browser subscribes again from its settings page."""

    list_display = ["pk", "user", "push_service", "user_agent", "created_at"]
    list_select_related = ["user"]
    ordering = ["-pk"]
    search_fields = ["=user__username"]
    search_user_field = "user"
    search_help_text = "The user's username, exactly (case-insensitive)."
    readonly_fields = ["user", "endpoint", "p256dh", "auth", "user_agent", "created_at"]
    exclude = ["endpoint_hash"]

    @admin.display(description="push service")
    def push_service(self, sub):
        from urllib.parse import urlsplit

        return urlsplit(sub.endpoint).hostname


@admin.register(PendingWebPush)
class PendingWebPushAdmin(RecordAdmin):
    """Web Pushes owed, read-only: how often each was tried and why it failed (deliver_pending
    retries what is due; failed rows stay as the record)."""

    list_display = ["pk", "notification_id", "subscription_id", "state", "attempts", "due_at", "last_attempt_at",
                    "last_error"]
    ordering = ["-pk"]
    list_filter = [PushStateFilter]

    @admin.display(description="state")
    def state(self, push):
        return push.state

    def has_delete_permission(self, request, obj=None):
        return False
