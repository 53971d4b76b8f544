"""Admin for the feed. Deletions go through feed.services so notifications and counts stay exact.

Every table here can be large: the changelists do not COUNT(*) the whole table
(notifier.admin.LargeTableAdmin: `show_full_result_count = False` and a paginator that takes the
planner's estimate for an unfiltered list on PostgreSQL).
"""
from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin

from notifier.admin import CountEstimatePaginator, LargeTableAdmin, SendTestPushPermission, push_test_message

from . import services
from .models import Comment, Follow, Like, Post, User


class ServiceDeleteMixin:
    """Route the admin's delete view and "delete selected" action through a service function."""

    remove = None  # a feed.services function taking one object

    def delete_model(self, request, obj):
        type(self).remove(obj)

    def delete_queryset(self, request, queryset):
        for obj in queryset:
            type(self).remove(obj)


@admin.register(User)
class UserAdmin(ServiceDeleteMixin, SendTestPushPermission, BaseUserAdmin):
    remove = services.delete_account
    show_full_result_count = False
    paginator = CountEstimatePaginator
    actions = [push_test_message]
    fieldsets = BaseUserAdmin.fieldsets + (("Profile", {"fields": ("display_name", "bio", "email_verified_at")}),)
    readonly_fields = ["email_verified_at"]  # proven by the link only (feed.emails), cleared with a new address
    list_display = ["username", "display_name", "email", "email_verified_at", "is_staff", "is_active", "date_joined"]
    search_fields = ["username", "display_name", "email"]


@admin.register(Post)
class PostAdmin(ServiceDeleteMixin, LargeTableAdmin):
    remove = services.remove_post
    list_display = ["id", "author", "short_text", "created_at"]
    list_select_related = ["author"]
    search_fields = ["text", "author__username"]
    list_filter = ["created_at"]
    raw_id_fields = ["author"]
    readonly_fields = ["created_at", "edited_at"]
    filter_horizontal = ["mentions"]
    # No date_hierarchy: it reads MIN/MAX and the distinct years of created_at (not indexed) on
    # every render of the list, a scan of the whole table.

    @admin.display(description="text")
    def short_text(self, post):
        return post.text[:80]


@admin.register(Comment)
class CommentAdmin(ServiceDeleteMixin, LargeTableAdmin):
    remove = services.remove_comment
    list_display = ["id", "author", "post", "short_text", "created_at"]
    list_select_related = ["author", "post__author"]
    search_fields = ["text", "author__username"]
    list_filter = ["created_at"]
    raw_id_fields = ["author", "post", "parent"]
    readonly_fields = ["created_at", "edited_at"]
    filter_horizontal = ["mentions"]

    @admin.display(description="text")
    def short_text(self, comment):
        return comment.text[:80]


@admin.register(Like)
class LikeAdmin(LargeTableAdmin):
    list_display = ["id", "user", "post", "created_at"]
    list_select_related = ["user", "post__author"]
    search_fields = ["user__username", "post__text"]
    list_filter = ["created_at"]
    raw_id_fields = ["user", "post"]


@admin.register(Follow)
class FollowAdmin(LargeTableAdmin):
    list_display = ["id", "follower", "followee", "created_at"]
    list_select_related = ["follower", "followee"]
    search_fields = ["follower__username", "followee__username"]
    list_filter = ["created_at"]
    raw_id_fields = ["follower", "followee"]
