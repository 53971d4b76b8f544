"""Notifications: store them, count them exactly, and push them to the recipient's private topic.

The rest of the project talks to this app through one entry point, `notifier.notify(...)` (see
notifier.services.notify). notifier never imports feed: feed decides who is told what.
"""
from dataclasses import dataclass


@dataclass(frozen=True)
class Notice:
    """One event to tell some people about (see services.send).

    `recipients` are users, user ids, or a queryset of user ids (`values_list(..., flat=True)`).
    The actor is never told of their own action; with a `dedupe_key`, a recipient who already has
    a notification with that key gets no second one (a retried comment).

    Kinds in models.GROUPED take a `group` instead (e.g. `like:<post id>`): the activity joins the
    recipient's item for that group in the current window, or starts it. Their `text` starts with
    "{actors}", filled in when shown ("Ana and 3 others liked your post").
    """

    kind: str
    recipients: object
    actor: object
    text: str
    url: str
    post_ref: int | None = None
    comment_ref: int | None = None
    dedupe_key: str | None = None
    group: str | None = None


def notify(kind, recipients, **kwargs):
    """Store one notification per recipient and push each after commit; see services.notify."""
    from .services import notify as _notify

    return _notify(kind, recipients, **kwargs)


def send(notices):
    """Store several notices in one transaction, locking every recipient once; see services.send."""
    from .services import send as _send

    return _send(notices)


def retract(kind, recipient, actor, group):
    """Take an actor out of a group (unlike, unfollow), keeping counts exact; see services.retract."""
    from .services import retract as _retract

    return _retract(kind, recipient, actor, group)


def forget_account(user, **kwargs):
    """Before deleting an account: withdraw what is about its posts and comments and take it out
    of every group, keeping counts exact (see services.forget_account), and close its live
    connections once the deletion commits."""
    from .live_clients import end_access
    from .services import forget_account as _forget_account

    end_access(user.pk)
    return _forget_account(user, **kwargs)


def end_live_access(user_id):
    """Close every live connection of this user after the commit (log-out, a password change);
    see live_clients.end_access."""
    from .live_clients import end_access

    return end_access(user_id)


def broadcast_on_commit(topic, message):
    """After commit, publish `message` (a dict) to a public topic, best effort (not stored, not
    retried); see delivery.broadcast_on_commit."""
    from .delivery import broadcast_on_commit as _broadcast_on_commit

    return _broadcast_on_commit(topic, message)


def mute_post(user, post_ref, muted=True):
    """Stop (or resume) notifications about one post for this user; see services.mute_post."""
    from .services import mute_post as _mute_post

    return _mute_post(user, post_ref, muted)


def muted(user, post_ref) -> bool:
    """Whether this user muted this post."""
    from .models import MutedPost

    return MutedPost.objects.filter(user_id=getattr(user, "pk", user), post_ref=post_ref).exists()


def withdraw(**kwargs):
    """Remove notifications about deleted objects, keeping unread counts exact; see services.withdraw."""
    from .services import withdraw as _withdraw

    return _withdraw(**kwargs)


def revise_excerpt(old, new, **refs):
    """An edit: notifications about the post or comment quote its new text; see services.revise_excerpt."""
    from .services import revise_excerpt as _revise_excerpt

    return _revise_excerpt(old, new, **refs)


def told(**refs):
    """Who has a notification about this post or comment; see services.told."""
    from .services import told as _told

    return _told(**refs)
