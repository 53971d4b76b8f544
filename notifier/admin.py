"""Admin for notifications: read-only rows (they are facts), actions that keep counts exact."""
from django.contrib import admin, messages
from django.db.models import Exists, OuterRef, Q, Subquery

from . import services
from .models import Notification, NotificationState, PendingPush


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
    """Delivered: no push is owed. Pending: one is owed and will be tried. Failed: given up."""

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


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):
    list_display = ["id", "recipient", "seq", "kind", "actor", "text", "is_read", "push", "push_error", "created_at"]
    list_select_related = ["recipient", "actor"]
    list_filter = ["kind", ReadFilter, PushFilter, "created_at"]
    search_fields = ["text", "recipient__username", "actor__username"]
    actions = ["mark_as_read"]
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
class NotificationStateAdmin(admin.ModelAdmin):
    list_display = ["user", "last_seq", "unread_count", "read_seq"]
    list_select_related = ["user"]
    search_fields = ["user__username"]
    readonly_fields = ["user", "last_seq", "unread_count", "read_seq"]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
