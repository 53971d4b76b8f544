"""Telling every follower about a new post: durable, chunked, set-based, off the request path.

create_post enqueues `plan_fanout` in the post's own transaction (on the database queue it exists
exactly when the post does). The plan computes every chunk's boundaries up front (keyset over
follow ids: every CHUNK_SIZE-th id, one query) and enqueues one `fan_out_chunk` per range in one
transaction, so no chunk ever starts another (no recursion, whatever the backend) and chunks can
run on any worker in any order. A chunk is a few SQL statements (notifier.notify with a queryset
of follower ids).

Every step may run twice (a worker killed mid-chunk, a retried Lambda invocation, a re-run plan):
a follower's item for the author's posts (a NEWEST group) already showing this post or a newer one
is left alone, so each follower is told once and counted once, whatever happens.
A chunk holds the post's row lock while it writes, so a post deleted during its fan-out either
waits for the chunk (and then withdraws what it wrote) or is gone before it (and the chunk tells
nobody): no notification outlives its post.
"""
from django.conf import settings
from django.db import transaction
from django.db.models import F, Window
from django.db.models.functions import RowNumber

import notifier
from notifier.models import Kind
from notifier.taskqueue import background, enqueue

from .locks import KEEP, lock_post
from .models import Follow, Post
from .text import excerpt

CHUNK_SIZE = settings.FANOUT_CHUNK_SIZE


def schedule(post: Post) -> None:
    """Plan the fan-out of `post` (in the current transaction on a database queue)."""
    enqueue(plan_fanout, post.pk)


def chunk_bounds(author_id: int, size: int | None = None) -> list[tuple[int, int]]:
    """(after_id, upto_id] ranges of follow ids covering the author's followers, `size` (default
    CHUNK_SIZE) each."""
    size = size or CHUNK_SIZE
    follows = Follow.objects.filter(followee_id=author_id)
    ends = list(
        follows.annotate(n=Window(RowNumber(), order_by=F("pk").asc()))
        .annotate(m=F("n") % size)
        .filter(m=0)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    last = follows.order_by("-pk").values_list("pk", flat=True).first()
    if last is not None and (not ends or ends[-1] != last):
        ends.append(last)
    return list(zip([0, *ends[:-1]], ends))


@background
def plan_fanout(post_id: int) -> int:
    """Enqueue one chunk task per CHUNK_SIZE followers of the post's author; returns how many."""
    author_id = Post.objects.filter(pk=post_id).values_list("author_id", flat=True).first()
    if author_id is None:  # deleted before its fan-out was planned: nothing to tell
        return 0
    bounds = chunk_bounds(author_id)
    with transaction.atomic():
        for after_id, upto_id in bounds:
            enqueue(fan_out_chunk, post_id, after_id, upto_id)
    return len(bounds)


@background
def fan_out_chunk(post_id: int, after_id: int, upto_id: int) -> int:
    """Notify the author's followers whose follow id is in (after_id, upto_id]; returns how many
    notifications were stored (0 for a chunk that already ran)."""
    with transaction.atomic():
        post = lock_post(post_id, KEEP)  # chunks of one post run side by side; a delete waits
        if post is None:
            return 0
        followers = (
            Follow.objects.filter(followee_id=post.author_id, pk__gt=after_id, pk__lte=upto_id)
            .exclude(follower_id__in=post.mentions.values("pk"))  # they were told already (mention)
            .values_list("follower_id", flat=True)
        )
        stored = notifier.notify(  # one item per follower for the author's posts of the day, the newest shown
            Kind.NEW_POST, followers, actor=post.author, url=post.get_absolute_url(), post_ref=post.pk,
            text=notice_text(post), group=f"new_post:{post.author_id}",
        )
    return len(stored)


def notice_text(post: Post) -> str:
    """What a follower's item says of the post (also when it shows it again: feed.services)."""
    return f"{{actors}} posted: “{excerpt(post.text)}”"
