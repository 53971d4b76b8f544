"""Row locks on posts, shared by the feed's writes (feed.services) and its fan-out (feed.fanout).

One module both import, so neither imports the other: the lock modes and the lock order live here.
"""
from django.db import connection

from .models import Post

# How a write holds the post it is about (PostgreSQL row locks; SQLite serialises writers):
# - DELETE (FOR UPDATE): deleting it waits for every writer below, and they for it; editing it too,
#   so a fan-out chunk (KEEP) writes the followers' items wholly before the edit or after it;
# - COMMENT (FOR NO KEY UPDATE): comments, removed comments and likes on one post take turns, so
#   each comment sees every earlier one and who follows the post (following and unfollowing a post
#   take turns with them too), a like never races an unlike, edits of comments are ordered, and the
#   counts each live message carries (feed.live) are exact and numbered in order; foreign-key checks
#   of new rows pointing at the post are not blocked;
# - KEEP (FOR KEY SHARE): the post cannot be deleted meanwhile, and nothing else waits (the chunks
#   of one fan-out side by side).
DELETE, COMMENT, KEEP = "delete", "comment", "keep"


def lock_post(post_id, how: str = COMMENT) -> Post | None:
    """Lock the post (only its own row, not its author's) and return it, or None when it does not
    exist, so a concurrent delete cannot leave notifications about a vanished post."""
    posts = Post.objects.select_related("author").filter(pk=post_id)
    if how == DELETE:
        return posts.select_for_update(of=("self",)).first()
    if how == COMMENT:
        return posts.select_for_update(no_key=True, of=("self",)).first()
    if connection.vendor == "postgresql":  # KEEP: the ORM has no FOR KEY SHARE
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT 1 FROM {connection.ops.quote_name(Post._meta.db_table)}"
                           f" WHERE id = %s FOR KEY SHARE", [post_id])
            if cursor.fetchone() is None:
                return None
    return posts.first()
