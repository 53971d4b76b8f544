"""Every write in the feed goes through these functions.

They own the rules of who is told what, and call notifier.notify() in the same transaction as the
write, so a notification exists exactly when the thing it is about does. (Explicit calls, not
model signals: a reader sees the whole effect of "add a comment" in one place.)

Bad input raises django's ValidationError, acting on someone else's object PermissionDenied, and an
unknown object the model's DoesNotExist; views turn those into form errors or JSON (400/403/404).
"""
import functools
from collections import defaultdict
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.db.models.functions import Lower
from django.utils import timezone

import notifier
from notifier import Notice
from notifier.groups import Shown
from notifier.models import Kind
from notifier.services import withdraw_post

from . import counters, fanout, live, media
from .locks import COMMENT, DELETE, lock_post
from .models import Comment, Follow, Like, Post, PostFollow, User
from .text import clean_text, excerpt, mentioned_usernames


def _someone_left(exc: IntegrityError) -> bool:
    """A foreign-key violation: a row this write added points at something deleted meanwhile."""
    cause = exc.__cause__
    return getattr(cause, "sqlstate", None) == "23503" or "FOREIGN KEY constraint failed" in str(exc)


def survives_deletions(write):
    """Accounts (and posts) can be deleted while a write that involves them runs — its author, a
    user it mentions, the person followed — and the write's foreign keys then fail as it inserts
    (PostgreSQL) or commits (SQLite), rolling its transaction back whole. Run it once more: it
    reads again and leaves out what is gone (a mention of a deleted user) or finds its target gone
    (DoesNotExist, a 404). If it fails so a second time, its own account is gone: DoesNotExist too,
    never a 500. Only a write that owns its transaction can be run again."""

    @functools.wraps(write)
    def run(*args, **kwargs):
        can_retry = not connection.in_atomic_block
        for attempt in (1, 2):
            try:
                return write(*args, **kwargs)
            except IntegrityError as exc:
                if not _someone_left(exc):
                    raise
                if attempt == 2 or not can_retry:
                    raise User.DoesNotExist("An account this involves has just been deleted.") from exc

    return run


def _mentioned_users(text: str) -> list[User]:
    names = mentioned_usernames(text)
    if not names:
        return []
    return list(User.objects.alias(lname=Lower("username")).filter(lname__in=names, is_active=True))


# Lock order, for every write (see notifier.services): posts (ascending id), then the comment,
# then users' rows in feed.counters (ascending user id: the acting user's, and for a follow both
# people's), then notification state rows (ascending user id, taken by notifier in one sweep).
# Users' own rows come last: Django's foreign keys are checked at commit on PostgreSQL (DEFERRABLE
# INITIALLY DEFERRED), so a write takes its key-share locks on the users it points at when it
# commits, and deleting an account takes that account's row at the very end. A write that loses
# that race (someone it mentions, or notifies, is gone) fails its check and runs again
# (survives_deletions).

def _lock_post(post_id, how: str = COMMENT) -> Post:
    post = lock_post(post_id, how)
    if post is None:
        raise Post.DoesNotExist(f"No post {post_id}.")
    return post


def get_user(username: str) -> User:
    return User.objects.named(username).get(is_active=True)


def create_post(author: User, text: str, image=None, image_alt: str = "") -> Post:
    """Publish a post, with one picture if `image` (an uploaded file) is given: it is checked and
    stored first (feed.images.ImageRejected, nothing stored, when it is refused), and deleted
    again if the post is not created."""
    text = clean_text(text, what="Post")
    if image is None:
        return _publish(author, text)
    name, width, height = media.store_post_image(author.pk, image)
    with media.cleanup_on_failure([name]):
        return _publish(author, text, image=name, image_width=width, image_height=height,
                        image_alt=(image_alt or "").strip())


@survives_deletions
def _publish(author: User, text: str, **picture) -> Post:
    """Mentioned users get `mention` now; the author's other followers get `new_post` from a
    background fan-out (feed.fanout) once the post is committed."""
    with transaction.atomic():
        counters.hold([author.pk])  # the author's writes take turns with deleting the account
        post = Post.objects.create(author=author, text=text, **picture)
        mentioned = _mentioned_users(text)
        if mentioned:
            post.mentions.add(*mentioned)
        url = post.get_absolute_url()
        preview = excerpt(text)
        notifier.notify(
            Kind.MENTION, mentioned, actor=author, url=url, post_ref=post.pk,
            text=f"{author.name} mentioned you in a post: “{preview}”", dedupe_key=f"mention:post:{post.pk}",
        )
        fanout.schedule(post)  # followers are told off the request path, in chunks
    return post


def delete_post(user: User, post_id: int) -> None:
    with transaction.atomic():
        post = _lock_post(post_id, DELETE)
        if post.author_id != user.pk:
            raise PermissionDenied("You can only delete your own posts.")
        remove_post(post)


def remove_post(post: Post) -> None:
    """Delete a post with its comments and likes, and every notification about any of them, except
    that the followers' "new posts" item for its author goes back to the newest post it still
    stands for (notifier.services.withdraw_post)."""
    with transaction.atomic():
        lock_post(post.pk, DELETE)  # held already when delete_post() calls (the admin's delete does not)
        counters.hold([post.author_id])  # one author's deletions and posts take turns: the posts read below stay
        withdraw_post(post.pk, kind=Kind.NEW_POST, group=f"new_post:{post.author_id}", actor=post.author,
                      posted_at=post.created_at, **_fallbacks(post))
        post.delete()
        media.delete_after_commit([post.image])


def _fallbacks(post: Post) -> dict:
    """What the followers' item for the author's posts needs when this one goes: the author's
    posts older than it that the same window's item can stand for (newest first, as the fan-out
    wrote them, each with the people it mentioned, who were told by a mention instead), the newer
    ones (where an item that counted this post points now), and who was not told of this one
    (mentioned in it, or following only since). One window either side bounds both."""
    window = timedelta(seconds=settings.NOTIFICATION_GROUP_WINDOW)
    mine = Post.objects.filter(author_id=post.author_id)
    earlier = list(mine.filter(pk__lt=post.pk, created_at__gte=post.created_at - window).order_by("-pk"))
    mentioned = defaultdict(set)
    for post_id, user_id in Post.mentions.through.objects.filter(
            post_id__in=[post.pk, *(p.pk for p in earlier)]).values_list("post_id", "user_id"):
        mentioned[post_id].add(user_id)
    since = Follow.objects.filter(followee_id=post.author_id, created_at__gt=post.created_at)
    return {
        "earlier": [Shown(p.pk, fanout.notice_text(p), p.get_absolute_url(), p.created_at, frozenset(mentioned[p.pk]))
                    for p in earlier],
        "later": mine.filter(pk__gt=post.pk, created_at__lt=post.created_at + 2 * window).values("pk"),
        "untold": mentioned[post.pk] | set(since.values_list("follower_id", flat=True)),
    }


def _commented_on(author: User, post: Post) -> str:
    """What the post's other followers read (its author reads "commented on your post")."""
    return f"{author.name} commented on {'their' if author.pk == post.author_id else post.author.name + '’s'} post"


@survives_deletions
def add_comment(author: User, post_id: int, text: str, parent_id: int | None = None) -> Comment:
    """Comment on a post, or with `parent_id` reply to one of its comments (threads are one level
    deep: a reply to a reply joins the thread of the top-level comment it is under).

    Tells, once each and in this order of precedence: the authors of the comment replied to and of
    its thread's top-level comment (`reply`); the post's author, while following it (`comment`: a
    conversation on your post is yours to hear, replies too); the people mentioned (`mention`); for
    a top-level comment everyone else following the post (`comment`, feed.models.PostFollow). Commenting follows the post, unless the commenter
    unfollowed it before (that choice stays)."""
    text = clean_text(text, what="Comment")
    with transaction.atomic():
        post = _lock_post(post_id)
        counters.hold([author.pk])
        replied_to = None
        if parent_id is not None:
            # Under the post's lock: the comment cannot be deleted (or moved) meanwhile.
            replied_to = Comment.objects.filter(pk=parent_id, post=post).select_related("parent").first()
            if replied_to is None:
                raise ValidationError("You can only reply to a comment on this post.", code="parent")
        thread = replied_to and (replied_to.parent or replied_to)
        comment = Comment.objects.create(post=post, author=author, text=text, parent=thread)
        followers = _followers(post, commenter=author)  # and the commenter follows it from now on
        mentioned = _mentioned_users(text)
        if mentioned:
            comment.mentions.add(*mentioned)
        url = comment.get_absolute_url()
        preview = excerpt(text)
        refs = dict(actor=author, url=url, post_ref=post.pk, comment_ref=comment.pk)
        told = {author.pk}
        reply_ids = sorted({replied_to.author_id, thread.author_id} - told) if thread else []
        told.update(reply_ids)
        owner_ids = [post.author_id] if post.author_id in followers - told else []
        told.update(owner_ids)
        mention_ids = [u.pk for u in mentioned if u.pk not in told]
        told.update(mention_ids)
        follower_ids = [] if thread else sorted(followers - told)  # a thread's chatter stays in it
        # One send: every recipient's state is locked in one ascending sweep.
        notifier.send([
            Notice(Kind.REPLY, reply_ids, text=f"{author.name} replied to your comment: “{preview}”",
                   dedupe_key=f"reply:{comment.pk}", **refs),
            Notice(Kind.COMMENT, owner_ids, text=f"{author.name} {'replied on' if thread else 'commented on'} your post: “{preview}”",
                   dedupe_key=f"comment:{comment.pk}", **refs),
            Notice(Kind.MENTION, mention_ids, text=f"{author.name} mentioned you in a comment: “{preview}”",
                   dedupe_key=f"mention:comment:{comment.pk}", **refs),
            Notice(Kind.COMMENT, follower_ids, text=f"{_commented_on(author, post)}: “{preview}”",
                   dedupe_key=f"comment:{comment.pk}", **refs),
        ])
        live.comment_added(comment, [u.username for u in mentioned])  # open post pages show it, once this commits
    return comment


def _followers(post: Post, commenter: User | None = None) -> set[int]:
    """Who follows the post: its rows that say so, and its author unless they unfollowed it (an
    author follows their own post without a row: posts from before follows, or made in bulk).

    With `commenter`, that person follows the post from now on unless they have a row already (an
    explicit unfollow stays): their row is read by the same query, and one is written only for a
    first comment. Under the post's lock, so nobody else writes the row meanwhile."""
    known = {post.author_id} | ({commenter.pk} if commenter else set())
    rows = dict(PostFollow.objects.filter(Q(following=True) | Q(user_id__in=known), post=post)
                .values_list("user_id", "following"))
    if commenter is not None and commenter.pk not in rows:
        rows[commenter.pk] = PostFollow.objects.create(post=post, user=commenter).following
    return {uid for uid, following in rows.items() if following} | (
        set() if post.author_id in rows else {post.author_id})


@survives_deletions
def follow_post(user: User, post_id: int, following: bool = True) -> bool:
    """Follow (or unfollow) a post's conversation: new top-level comments on it. Idempotent; an
    unfollow is remembered, so commenting later does not follow the post again. Returns whether
    that changed anything. Under the post's lock, like the comments that read who follows."""
    with transaction.atomic():
        post = _lock_post(post_id)
        counters.hold([user.pk])
        row, created = PostFollow.objects.get_or_create(post=post, user=user, defaults={"following": following})
        if created:  # the author followed it already, without a row
            return following != (post.author_id == user.pk)
        if row.following == following:
            return False
        PostFollow.objects.filter(pk=row.pk).update(following=following)
        return True


def follows_post(user: User, post_id: int) -> bool:
    """Whether the user is told of new comments on this post (its author is, unless they unfollowed it)."""
    if not user.is_authenticated:
        return False
    row = PostFollow.objects.filter(post_id=post_id, user=user).values_list("following", flat=True).first()
    if row is not None:
        return row
    return Post.objects.filter(pk=post_id, author=user).exists()


def _remention(writing, text: str) -> list[User]:
    """Point the post's or comment's mentions at who the new text names; returns those it did not
    name before (only they may be told)."""
    mentioned = _mentioned_users(text)
    before = set(writing.mentions.values_list("pk", flat=True))
    writing.mentions.set(mentioned)
    return [u for u in mentioned if u.pk not in before]


@survives_deletions
def edit_post(user: User, post_id: int, text: str) -> Post:
    """Change a post's text (its author only). Notifications about it quote the new text; people
    it newly mentions get a `mention`, unless they were told of the post already. Holds the post
    FOR UPDATE (as a delete does): a follower fan-out chunk in flight holds it too, so every chunk
    writes either before the edit (and its text is revised) or after it (with the new text)."""
    text = clean_text(text, what="Post")
    with transaction.atomic():
        post = _lock_post(post_id, DELETE)
        if post.author_id != user.pk:
            raise PermissionDenied("You can only edit your own posts.")
        if text == post.text:
            return post
        _rewrite(user, post, text, "post", refs={"post_ref": post.pk})
    return post


@survives_deletions
def edit_comment(user: User, comment_id: int, text: str) -> Comment:
    """Change a comment's text (its author only), as edit_post does for a post."""
    text = clean_text(text, what="Comment")
    post_id = Comment.objects.values_list("post_id", flat=True).get(pk=comment_id)
    with transaction.atomic():
        lock_post(post_id)  # the post first, as everywhere
        comment = Comment.objects.select_for_update().filter(pk=comment_id).first()
        if comment is None:  # deleted meanwhile
            raise Comment.DoesNotExist(f"No comment {comment_id}.")
        if comment.author_id != user.pk:
            raise PermissionDenied("You can only edit your own comments.")
        if text == comment.text:
            return comment
        _rewrite(user, comment, text, "comment", refs={"post_ref": post_id, "comment_ref": comment.pk})
    return comment


def _rewrite(user: User, item, text: str, what: str, *, refs: dict) -> None:
    """An edit's writes, inside the caller's transaction and locks: the new text, the quotes in
    notifications about the item revised, a `mention` for each person newly mentioned who was not
    told of the item already, and the live `edit` message."""
    counters.hold([user.pk])
    old, item.text, item.edited_at = item.text, text, timezone.now()
    item.save(update_fields=["text", "edited_at"])
    added = _remention(item, text)
    own = {f"{what}_ref": item.pk}  # notifications about this item itself
    notifier.revise_excerpt(excerpt(old), excerpt(text), **own)
    already = notifier.told(**own)
    notifier.notify(
        Kind.MENTION, [u for u in added if u.pk not in already], actor=user, url=item.get_absolute_url(),
        text=f"{user.name} mentioned you in a {what}: “{excerpt(text)}”", dedupe_key=f"mention:{what}:{item.pk}",
        **refs,
    )
    live.edited(item)


def delete_comment(user: User, comment_id: int) -> None:
    post_id = Comment.objects.values_list("post_id", flat=True).get(pk=comment_id)
    with transaction.atomic():
        lock_post(post_id)  # the post first, as everywhere (a post delete waits, or we find it gone)
        comment = Comment.objects.select_for_update().get(pk=comment_id)
        if comment.author_id != user.pk:
            raise PermissionDenied("You can only delete your own comments.")
        remove_comment(comment)


def remove_comment(comment: Comment) -> None:
    """Delete a comment and every notification about it (the admin's delete comes here too)."""
    with transaction.atomic():
        lock_post(comment.post_id)  # held already when delete_comment() calls: the order stays post first
        notifier.withdraw(comment_refs=[comment.pk])
        comment_id = comment.pk
        comment.delete()
        live.comment_removed(comment.post_id, comment_id)


@survives_deletions
def like(user: User, post_id: int) -> bool:
    """Like a post; liking twice is one like. Returns True when this call created the like."""
    with transaction.atomic():
        post = _lock_post(post_id)  # likes take turns too: get_or_create against a concurrent unlike
        counters.hold([user.pk])
        _, created = Like.objects.get_or_create(post=post, user=user)
        if created:  # the author's "… liked your post" item for this post gains this person
            notifier.notify(
                Kind.LIKE, [post.author_id], actor=user, url=post.get_absolute_url(), post_ref=post.pk,
                text=f"{{actors}} liked your post: “{excerpt(post.text)}”", group=f"like:{post.pk}",
            )
            live.counts_changed(post.pk)
    return created


def unlike(user: User, post_id: int) -> bool:
    """Remove a like; returns True when there was one. The author's item for it loses this person
    (and goes if nobody is left)."""
    with transaction.atomic():
        post = _lock_post(post_id)  # as like() does: the two take turns
        counters.hold([user.pk])
        deleted, _ = Like.objects.filter(post=post, user=user).delete()
        if deleted:
            notifier.retract(Kind.LIKE, post.author_id, user, f"like:{post.pk}")
            live.counts_changed(post.pk)
    return bool(deleted)


@survives_deletions
def mute_post(user: User, post_id: int, muted: bool = True) -> bool:
    """Stop (or resume) the user's notifications about this post: comments, replies, likes and
    mentions on it. Returns whether that changed anything."""
    if not Post.objects.filter(pk=post_id).exists():
        raise Post.DoesNotExist(f"No post {post_id}.")
    return notifier.mute_post(user, post_id, muted)


@survives_deletions
def follow(follower: User, username: str) -> bool:
    """Follow someone; following twice is one follow. Returns True when this call created it."""
    followee = get_user(username)
    if followee.pk == follower.pk:
        raise ValidationError("You cannot follow yourself.", code="self_follow")
    with transaction.atomic():
        counters.hold([follower.pk, followee.pk])  # both accounts' writes take turns with this
        _, created = Follow.objects.get_or_create(follower=follower, followee=followee)
        if created:
            counters.followed(followee.pk)
            notifier.notify(
                Kind.FOLLOW, [followee], actor=follower, url=follower.get_absolute_url(),
                text="{actors} started following you.", group="follow",
            )
    return created


@survives_deletions
def unfollow(follower: User, username: str) -> bool:
    """Stop following; the followee's "… started following you" item loses this person."""
    followee = get_user(username)
    with transaction.atomic():
        counters.hold([follower.pk, followee.pk])  # as follow() does, before the follow row
        deleted, _ = Follow.objects.filter(follower=follower, followee=followee).delete()
        if deleted:
            counters.unfollowed([followee.pk])
            notifier.retract(Kind.FOLLOW, followee, follower, "follow")
    return bool(deleted)


class _Moved(Exception):
    """What an account deletion read changed before it held the account: read and lock again."""


def delete_account(user: User, *, attempts: int = 5) -> None:
    """Delete a user and everything they wrote, withdrawing notifications about it first."""
    for attempt in range(1, attempts + 1):
        try:
            with transaction.atomic():  # a savepoint inside the admin's transaction: rolled back, it lets go
                return _delete_account(user)
        except _Moved:
            if attempt == attempts:
                raise PermissionDenied("This account is too busy to delete right now; try again.") from None


def _account_posts(user: User) -> set[int]:
    """The posts a deletion changes: the account's own, and those it commented on."""
    return set(user.posts.values_list("pk", flat=True)) | set(user.comments.values_list("post_id", flat=True))


def _delete_account(user: User) -> None:
    # Every post this touches, locked in ascending id before anything else, like every write.
    touched = _account_posts(user)
    list(Post.objects.select_for_update().filter(pk__in=touched).order_by("pk").values_list("pk", flat=True))
    # Then the account's row in feed.counters and those of everyone it follows (they lose one
    # follower), ascending. Once the account's own is held, its writes have committed or wait.
    followees = list(Follow.objects.filter(follower=user).values_list("followee_id", flat=True))
    counters.hold([user.pk, *followees])
    # What it wrote or followed just before that is here now: lock that first (in order), and again.
    if not _account_posts(user) <= touched or not set(
            Follow.objects.filter(follower=user).values_list("followee_id", flat=True)) <= set(followees):
        raise _Moved
    post_ids = list(user.posts.values_list("pk", flat=True))
    comment_ids = list(user.comments.values_list("pk", flat=True))
    # Then every notification state it touches, in one ascending sweep (what is about its posts
    # and comments goes; it leaves every "… and 3 others" it is in).
    notifier.forget_account(user, post_refs=post_ids, comment_refs=comment_ids)
    counters.unfollowed(Follow.objects.filter(follower=user).values_list("followee_id", flat=True))
    avatar = User.objects.filter(pk=user.pk).values_list("avatar", flat=True).first() or ""
    pictures = list(user.posts.exclude(image="").values_list("image", flat=True))
    user.delete()
    media.delete_after_commit([*(media.avatar_names(avatar) if avatar else []), *pictures])


# --- avatars -------------------------------------------------------------------------------------

def set_avatar(user: User, upload) -> str:
    """Give the user a new avatar from an uploaded picture (checked, cropped to its centre square
    and stored in three sizes; feed.images.ImageRejected and nothing stored when refused). The old
    avatar's files are deleted once the change commits."""
    stem = media.store_avatar(user.pk, upload)
    with media.cleanup_on_failure(media.avatar_names(stem)):
        _replace_avatar(user, stem)
    return stem


def remove_avatar(user: User) -> None:
    """Back to initials; the avatar's files are deleted once that commits."""
    _replace_avatar(user, "")


def _replace_avatar(user: User, stem: str) -> None:
    """Point the account at `stem` under the account's row of feed.counters (what every write by
    the account holds, and deleting it), so two changes take turns: each deletes exactly the
    files the other left, and none of a deleted account's is left behind."""
    with transaction.atomic():
        counters.hold([user.pk])
        old = User.objects.filter(pk=user.pk).values_list("avatar", flat=True).first()
        if old is None:
            raise User.DoesNotExist("This account has just been deleted.")
        User.objects.filter(pk=user.pk).update(avatar=stem)
        if old and old != stem:
            media.delete_after_commit(media.avatar_names(old))
    user.avatar = stem
