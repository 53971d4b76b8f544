"""Live activity on a post page: what feed.services publishes to the post's public topic.

Called inside the write's transaction with the post row locked (feed.locks.lock_post, COMMENT:
every write that changes what a post page shows takes turns on the post), so the counts are exactly
those the write leaves. Each message bumps `Post.live_seq` and carries it as `seq`: messages leave
after their commits from different processes and may cross on the way, and an open page applies
only a message newer than what it shows (the page renders `live_seq` with the counts; the post API
returns it too, so a page that reconnects knows whether it missed anything). Published after the
commit, best effort (notifier.broadcast_on_commit: not stored, not retried). Open post pages
subscribe to `notifier.topics.post_comments_topic(post_id)` and apply (notifier/static/notifier/live.js):

- `{"v":1, "type":"comment", "post", "seq", "comment": {"id", "parent", "author": {"username",
  "display_name"}, "text", "mentions": [username], "created_at", "url"}, "comment_count", "like_count"}`
  — a new comment (`parent`: the top-level comment a reply is under, else null);
- `{"v":1, "type":"edit", "post", "seq", "target": "post"|"comment", "id", "text", "mentions": [username],
  "edited_at", "comment_count", "like_count"}` — the post's or a comment's new text;
- `{"v":1, "type":"comment_removed", "post", "seq", "comment": id, "comment_count", "like_count"}`;
- `{"v":1, "type":"post_counts", "post", "seq", "comment_count", "like_count"}` — a like or unlike.

The topic is public (anyone may subscribe): only what the post page shows anyone goes there.
"""
from django.db import connection

import notifier
from notifier.envelope import ENVELOPE_VERSION, actor_dict
from notifier.topics import post_comments_topic

from .models import Comment, Like, Post


def _bump(post_id: int) -> dict:
    """Number the message and read the counts it carries, on the locked post row.

    One statement (UPDATE … RETURNING, on SQLite and PostgreSQL alike), written out rather than
    composed by the ORM: it runs inside every comment's and like's transaction, before the commit
    the notification's push waits for, where compiling two ORM queries cost more than running them.
    """
    q = connection.ops.quote_name
    post, comment, like = q(Post._meta.db_table), q(Comment._meta.db_table), q(Like._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {post} SET live_seq = live_seq + 1 WHERE id = %s RETURNING live_seq,"
            f" (SELECT COUNT(*) FROM {comment} WHERE post_id = %s),"
            f" (SELECT COUNT(*) FROM {like} WHERE post_id = %s)",
            [post_id, post_id, post_id],
        )
        seq, comments, likes = cursor.fetchone()
    return {"seq": seq, "comment_count": comments, "like_count": likes}


def _publish(post_id: int, message: dict) -> None:
    notifier.broadcast_on_commit(post_comments_topic(post_id), {
        "v": ENVELOPE_VERSION, **message, "post": post_id, **_bump(post_id),
    })


def comment_added(comment: Comment, mentions: list[str] | None = None) -> None:
    """A new comment; `mentions` (usernames), when the caller has them, saves reading them back."""
    _publish(comment.post_id, {
        "type": "comment",
        "comment": {
            "id": comment.pk,
            "parent": comment.parent_id,
            "author": actor_dict(comment.author),
            "text": comment.text,
            "mentions": [user.username for user in comment.mentions.all()] if mentions is None else mentions,
            "created_at": comment.created_at.isoformat(),
            "url": comment.get_absolute_url(),
        },
    })


def comment_removed(post_id: int, comment_id: int) -> None:
    _publish(post_id, {"type": "comment_removed", "comment": comment_id})


def counts_changed(post_id: int) -> None:
    _publish(post_id, {"type": "post_counts"})


def edited(writing: Post | Comment) -> None:
    """The post or one of its comments has new text: open pages replace what they show."""
    is_comment = isinstance(writing, Comment)
    _publish(writing.post_id if is_comment else writing.pk, {
        "type": "edit",
        "target": "comment" if is_comment else "post",
        "id": writing.pk,
        "text": writing.text,
        "mentions": [user.username for user in writing.mentions.all()],
        "edited_at": writing.edited_at.isoformat(),
    })
