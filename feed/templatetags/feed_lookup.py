"""What pages of the notifier app show about feed objects, looked up here because notifier knows
posts and people only by id (it never imports feed): one query per page, whatever its size."""
from django import template
from django.utils.text import Truncator

from ..models import Follow, Post

register = template.Library()

EXCERPT_LENGTH = 80


@register.simple_tag
def followed_among(user, notifications) -> set:
    """The ids of the actors of these "new follower" notifications whom `user` already follows,
    in one query (none when the page has no such item): the rest get a "Follow back" button."""
    ids = {n.actor_id for n in notifications if n.kind == "follow" and n.actor_id}
    if not ids or not getattr(user, "is_authenticated", False):
        return set()
    return set(Follow.objects.filter(follower=user, followee_id__in=ids).values_list("followee_id", flat=True))


@register.simple_tag
def posts_by_id(ids) -> list[dict]:
    """For each post id, in order: its author, the start of its text and its URL (one query); a
    post that is gone keeps just its id."""
    found = {p.pk: p for p in Post.objects.filter(pk__in=list(ids)).select_related("author")}
    shown = []
    for pk in ids:
        post = found.get(pk)
        shown.append({"id": pk} if post is None else {
            "id": pk, "url": post.get_absolute_url(), "author": post.author,
            "excerpt": Truncator(post.text).chars(EXCERPT_LENGTH),
        })
    return shown
