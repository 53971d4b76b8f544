"""Live activity on a post page: what feed.services publishes to the post's public topic.

Called inside the write's transaction, with the post row locked (feed.services.lock_post), so the
counts are those the write leaves; published after the commit, best effort (notifier.broadcast_on_commit:
not stored, not retried). Open post pages subscribe to `notifier.topics.post_comments_topic(post_id)`
and apply these messages (notifier/static/notifier/live.js):

- `{"v":1, "type":"comment", "post", "comment": {"id", "author": {"username", "display_name"}, "text",
  "created_at", "url"}, "comment_count", "like_count"}` — a new comment;
- `{"v":1, "type":"comment_removed", "post", "comment": id, "comment_count", "like_count"}`;
- `{"v":1, "type":"post_counts", "post", "comment_count", "like_count"}` — a like or unlike.

The topic is public (anyone may subscribe): only what the post page shows anyone goes there.
"""
import notifier
from notifier.envelope import ENVELOPE_VERSION, actor_dict
from notifier.topics import post_comments_topic

from .models import Comment, Like


def _counts(post_id: int) -> dict:
    return {
        "comment_count": Comment.objects.filter(post_id=post_id).count(),
        "like_count": Like.objects.filter(post_id=post_id).count(),
    }


def _publish(post_id: int, message: dict) -> None:
    notifier.broadcast_on_commit(post_comments_topic(post_id), {"v": ENVELOPE_VERSION, **message, "post": post_id})


def comment_added(comment: Comment) -> None:
    _publish(comment.post_id, {
        "type": "comment",
        "comment": {
            "id": comment.pk,
            "author": actor_dict(comment.author),
            "text": comment.text,
            "created_at": comment.created_at.isoformat(),
            "url": comment.get_absolute_url(),
        },
        **_counts(comment.post_id),
    })


def comment_removed(post_id: int, comment_id: int) -> None:
    _publish(post_id, {"type": "comment_removed", "comment": comment_id, **_counts(post_id)})


def counts_changed(post_id: int) -> None:
    _publish(post_id, {"type": "post_counts", **_counts(post_id)})
