"""Telling every follower about a new post, in chunks, off the request path.

A post by someone with thousands of followers must not make its POST wait for thousands of rows
and publishes. The post's request schedules the first chunk after commit; each chunk notifies up
to CHUNK_SIZE followers (keyset over follow ids) and schedules the next. Retrying a chunk is
harmless: every notification carries the dedupe key post:<id>, so a follower who already has it
gets no second row and no second unread.
"""
from django.db import transaction

import notifier
from notifier import background
from notifier.models import Kind

from .models import Follow, Post
from .text import excerpt

CHUNK_SIZE = 500


def schedule(post: Post) -> None:
    """Start the fan-out of `post` once the current transaction commits."""
    background.later_after_commit(notify_followers, post.pk, 0)


def notify_followers(post_id: int, after_follow_id: int = 0) -> int:
    """Notify one chunk of the author's followers (follow id > after_follow_id), then hand on the
    next chunk. Returns how many followers this chunk covered."""
    post = Post.objects.select_related("author").filter(pk=post_id).first()
    if post is None:  # deleted before its fan-out ran: nothing to tell
        return 0
    with transaction.atomic():
        chunk = list(
            Follow.objects.filter(followee_id=post.author_id, pk__gt=after_follow_id)
            .order_by("pk").values_list("pk", "follower_id")[:CHUNK_SIZE]
        )
        mentioned = set(post.mentions.values_list("pk", flat=True))  # they were told already
        notifier.notify(
            Kind.NEW_POST, [f for _, f in chunk if f not in mentioned], actor=post.author,
            url=post.get_absolute_url(), post_ref=post.pk,
            text=f"{post.author.name} posted: “{excerpt(post.text)}”", dedupe_key=f"post:{post.pk}",
        )
        if len(chunk) == CHUNK_SIZE:
            background.later_after_commit(notify_followers, post_id, chunk[-1][0])
    return len(chunk)
