"""Every write in the feed goes through these functions.

They own the rules of who is told what, and call notifier.notify() in the same transaction as the
write, so a notification exists exactly when the thing it is about does. (Explicit calls, not
model signals: a reader sees the whole effect of "add a comment" in one place.)

Bad input raises django's ValidationError, acting on someone else's object PermissionDenied, and an
unknown object the model's DoesNotExist; views turn those into form errors or JSON (400/403/404).
"""
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection, transaction
from django.db.models.functions import Lower

import notifier
from notifier import Notice
from notifier.models import Kind

from . import fanout, live
from .models import Comment, Follow, Like, Post, User
from .text import USERNAME_MAX_LENGTH, clean_text, excerpt, mentioned_usernames


def _mentioned_users(text: str) -> list[User]:
    names = mentioned_usernames(text)
    if not names:
        return []
    return list(User.objects.alias(lname=Lower("username")).filter(lname__in=names, is_active=True))


# Lock order, for every write (see notifier.services): posts (ascending id), then the comment,
# then notification state rows (ascending user id, taken by notifier in one sweep).

# How a write holds the post it is about (PostgreSQL row locks; SQLite serialises writers):
# - DELETE (FOR UPDATE): deleting it waits for every writer below, and they for it;
# - COMMENT (FOR NO KEY UPDATE): comments, removed comments and likes on one post take turns, so
#   each comment sees every earlier one (who gets a `reply`), a like never races an unlike, and the
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


def _lock_post(post_id, how: str = COMMENT) -> Post:
    post = lock_post(post_id, how)
    if post is None:
        raise Post.DoesNotExist(f"No post {post_id}.")
    return post


def get_user(username: str) -> User:
    if len(username) > USERNAME_MAX_LENGTH:
        raise User.DoesNotExist("No such user.")
    return User.objects.get(username__iexact=username, is_active=True)


def create_post(author: User, text: str) -> Post:
    """Publish a post: mentioned users get `mention` now; the author's other followers get
    `new_post` from a background fan-out (feed.fanout) once the post is committed."""
    text = clean_text(text, what="Post")
    with transaction.atomic():
        post = Post.objects.create(author=author, text=text)
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
    """Delete a post with its comments and likes, and every notification about any of them."""
    with transaction.atomic():
        notifier.withdraw(post_refs=[post.pk])
        post.delete()


def add_comment(author: User, post_id: int, text: str) -> Comment:
    """Comment on a post and tell, once each and in this order of precedence: the post's author
    (`comment`), the people mentioned (`mention`), everyone else who commented before (`reply`)."""
    text = clean_text(text, what="Comment")
    with transaction.atomic():
        post = _lock_post(post_id)
        comment = Comment.objects.create(post=post, author=author, text=text)
        mentioned = _mentioned_users(text)
        if mentioned:
            comment.mentions.add(*mentioned)
        url = comment.get_absolute_url()
        preview = excerpt(text)
        refs = dict(actor=author, url=url, post_ref=post.pk, comment_ref=comment.pk)
        told = {author.pk, post.author_id}
        mention_ids = [u.pk for u in mentioned if u.pk not in told]
        told.update(mention_ids)
        earlier = list(
            Comment.objects.filter(post=post, pk__lt=comment.pk).exclude(author_id__in=told)
            .order_by().values_list("author_id", flat=True).distinct()
        )
        # One send: every recipient's state is locked in one ascending sweep.
        notifier.send([
            Notice(Kind.COMMENT, [post.author_id], text=f"{author.name} commented on your post: “{preview}”",
                   dedupe_key=f"comment:{comment.pk}", **refs),
            Notice(Kind.MENTION, mention_ids, text=f"{author.name} mentioned you in a comment: “{preview}”",
                   dedupe_key=f"mention:comment:{comment.pk}", **refs),
            Notice(Kind.REPLY, earlier,
                   text=f"{author.name} also commented on "
                        f"{'their' if author.pk == post.author_id else post.author.name + '’s'} post: “{preview}”",
                   dedupe_key=f"reply:{comment.pk}", **refs),
        ])
        live.comment_added(comment)  # open post pages show it, once this commits
    return comment


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


def like(user: User, post_id: int) -> bool:
    """Like a post; liking twice is one like. Returns True when this call created the like."""
    with transaction.atomic():
        post = _lock_post(post_id)  # likes take turns too: get_or_create against a concurrent unlike
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
        deleted, _ = Like.objects.filter(post=post, user=user).delete()
        if deleted:
            notifier.retract(Kind.LIKE, post.author_id, user, f"like:{post.pk}")
            live.counts_changed(post.pk)
    return bool(deleted)


def mute_post(user: User, post_id: int, muted: bool = True) -> bool:
    """Stop (or resume) the user's notifications about this post: comments, replies, likes and
    mentions on it. Returns whether that changed anything."""
    if not Post.objects.filter(pk=post_id).exists():
        raise Post.DoesNotExist(f"No post {post_id}.")
    return notifier.mute_post(user, post_id, muted)


def follow(follower: User, username: str) -> bool:
    """Follow someone; following twice is one follow. Returns True when this call created it."""
    followee = get_user(username)
    if followee.pk == follower.pk:
        raise ValidationError("You cannot follow yourself.", code="self_follow")
    with transaction.atomic():
        _, created = Follow.objects.get_or_create(follower=follower, followee=followee)
        if created:
            notifier.notify(
                Kind.FOLLOW, [followee], actor=follower, url=follower.get_absolute_url(),
                text="{actors} started following you.", group="follow",
            )
    return created


def unfollow(follower: User, username: str) -> bool:
    """Stop following; the followee's "… started following you" item loses this person."""
    followee = get_user(username)
    with transaction.atomic():
        deleted, _ = Follow.objects.filter(follower=follower, followee=followee).delete()
        if deleted:
            notifier.retract(Kind.FOLLOW, followee, follower, "follow")
    return bool(deleted)


def delete_account(user: User) -> None:
    """Delete a user and everything they wrote, withdrawing notifications about it first."""
    with transaction.atomic():
        # Every post this touches (theirs, and those they commented on), locked in ascending id
        # before any notification state, like every other write.
        touched = set(user.posts.values_list("pk", flat=True)) | set(user.comments.values_list("post_id", flat=True))
        list(Post.objects.select_for_update().filter(pk__in=touched).order_by("pk").values_list("pk", flat=True))
        post_ids = list(user.posts.values_list("pk", flat=True))
        comment_ids = list(user.comments.values_list("pk", flat=True))
        # Then every notification state it touches, in one ascending sweep (what is about its posts
        # and comments goes; it leaves every "… and 3 others" it is in).
        notifier.forget_account(user, post_refs=post_ids, comment_refs=comment_ids)
        user.delete()
