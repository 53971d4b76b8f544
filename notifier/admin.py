"""Admin for notifications: read-only rows (they are facts), actions that keep counts exact."""
from django.contrib import admin, messages
from django.db.models import Q

from . import services
from .models import Notification, NotificationState


class ReadFilter(admin.SimpleListFilter):
    title = "read"
    parameter_name = "read"

    def lookups(self, request, model_admin):
        return [("yes", "Read"), ("no", "Unread")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(read_at__isnull=False)
        if self.value() == "no":
            return queryset.filter(read_at__isnull=True)
        return queryset


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):
    list_display = ["id", "recipient", "seq", "kind", "actor", "text", "is_read", "delivery", "attempts", "created_at"]
    list_select_related = ["recipient", "actor"]
    list_filter = ["kind", ReadFilter, "delivery", "created_at"]
    search_fields = ["text", "recipient__username", "actor__username"]
    actions = ["mark_as_read"]
    readonly_fields = [f.name for f in Notification._meta.fields]

    @admin.display(boolean=True, description="read")
    def is_read(self, notification):
        return notification.is_read

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
    list_display = ["user", "last_seq", "unread_count"]
    list_select_related = ["user"]
    search_fields = ["user__username"]
    readonly_fields = ["user", "last_seq", "unread_count"]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
