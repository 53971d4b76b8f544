"""Feed data: users, follows, posts, comments, likes and who a text mentions.

Writes go through feed.services, which keeps notifications in step; the models themselves keep
what the database can enforce (lengths, non-blank text, one like, one follow, no self-follow).
"""
from django.contrib.auth.models import AbstractUser
from django.contrib.auth.models import UserManager as BaseUserManager
from django.core.validators import RegexValidator
from django.db import models, transaction
from django.db.models.functions import Length, Lower, Trim
from django.db.models.lookups import GreaterThan, LessThanOrEqual
from django.urls import reverse

import notifier

from .text import MAX_ALT_LENGTH, MAX_TEXT_LENGTH, USERNAME_MAX_LENGTH, USERNAME_PATTERN, validate_text


class UserManager(BaseUserManager):
    def named(self, username: str):
        """The user called `username`, in any case: `lower(username) = …`, which the unique index
        on lower(username) answers (`username__iexact` compiles to UPPER(…) LIKE UPPER(…) on
        PostgreSQL, which no index here answers: a scan of every user). Usernames are ASCII, so
        Python's lower() and the database's agree."""
        if not isinstance(username, str) or len(username) > USERNAME_MAX_LENGTH:
            return self.none()  # longer than any username: nobody, and no giant pattern sent
        return self.alias(username_lower=Lower("username")).filter(username_lower=username.lower())

    def get_by_natural_key(self, username):
        # Log-in is case-insensitive, like uniqueness and mentions.
        return self.named(username).get()


class User(AbstractUser):
    """A Herald account. Usernames are letters, digits and underscores so that @mentions are exact."""

    username = models.CharField(
        "username",
        max_length=USERNAME_MAX_LENGTH,
        unique=True,
        help_text="Up to 30 letters, digits or underscores.",
        validators=[
            RegexValidator(
                rf"^{USERNAME_PATTERN}\Z",
                "A username may contain only letters, digits and underscores (up to 30).",
                code="invalid_username",
            )
        ],
        error_messages={"unique": "That username is taken."},
    )
    display_name = models.CharField(max_length=60, blank=True)
    bio = models.CharField(max_length=300, blank=True)
    # Where the avatar's pictures are in storage: "{avatar}-{px}.webp" for each size of
    # feed.images.AVATAR_SIZES; empty without one (initials show instead). Only feed.media moves it.
    avatar = models.CharField(max_length=200, blank=True, default="", db_default="", editable=False)
    # When the current `email` was proven to be theirs (a signed link sent to it was opened); None
    # while unproven, after a change of address, and after it bounced or complained. Digests and
    # password resets go only to a verified address. Written only by feed.emails (verify, bounce)
    # and by save() when the address changes, never written back from a loaded copy.
    email_verified_at = models.DateTimeField(null=True, blank=True, editable=False)

    objects = UserManager()

    class Meta:
        constraints = [
            models.UniqueConstraint(Lower("username"), name="user_username_ci_unique"),
        ]

    def __str__(self):
        return self.username

    @classmethod
    def from_db(cls, db, field_names, values):
        user = super().from_db(db, field_names, values)
        user._stored_email = user.__dict__.get("email")  # to tell a change of address in save()
        return user

    @property
    def email_verified(self) -> bool:
        return bool(self.email and self.email_verified_at)

    def save(self, *args, **kwargs):
        """A new password ends what the old one opened: API tokens are deleted in the same
        transaction and live connections close after it commits. Django already ends the other
        log-in sessions (their session hash no longer matches); the page that changed the
        password keeps its own (update_session_auth_hash).

        Saving a loaded user (the profile and password forms, the admin) never writes back the
        avatar it read earlier: feed.media changes it under the account's lock and deletes the old
        files, which a stale copy written back would point at again. Nor does it write back
        `email_verified_at`, unless the address changed: then it is cleared with it."""
        password_changed = self._password is not None and self.pk is not None
        stored_email = getattr(self, "_stored_email", None)
        email_changed = not self._state.adding and stored_email is not None and self.email != stored_email
        if email_changed:
            self.email_verified_at = None  # a new address is unproven
        if not self._state.adding and kwargs.get("update_fields") is None:
            deferred = self.get_deferred_fields()
            kept = {"avatar"} if email_changed else {"avatar", "email_verified_at"}
            kwargs["update_fields"] = [f.name for f in self._meta.concrete_fields
                                       if not f.primary_key and f.name not in kept and f.attname not in deferred]
        elif email_changed and "email" in kwargs["update_fields"]:
            kwargs["update_fields"] = {*kwargs["update_fields"], "email_verified_at"}
        with transaction.atomic():
            super().save(*args, **kwargs)
            if password_changed:
                from rest_framework.authtoken.models import Token

                Token.objects.filter(user=self).delete()
                notifier.end_live_access(self.pk)
        self._stored_email = self.email

    @property
    def name(self) -> str:
        """What to show people: the display name, or the username when there is none."""
        return self.display_name or self.username

    def get_absolute_url(self):
        return reverse("profile", args=[self.username])

    @property
    def avatar_urls(self) -> dict | None:
        """{"small", "medium", "large"} URLs of the avatar, or None without one."""
        from .media import avatar_urls

        return avatar_urls(self.avatar)


class Follow(models.Model):
    follower = models.ForeignKey(User, on_delete=models.CASCADE, related_name="following_set")
    followee = models.ForeignKey(User, on_delete=models.CASCADE, related_name="follower_set")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["follower", "followee"], name="follow_once"),
            models.CheckConstraint(condition=~models.Q(follower=models.F("followee")), name="follow_not_self"),
        ]
        indexes = [models.Index(fields=["followee", "-id"], name="follow_followee_idx")]

    def __str__(self):
        return f"{self.follower} → {self.followee}"


class UserStats(models.Model):
    """A user's follower count, kept by feed.counters in the same transaction as each follow,
    unfollow and account deletion, so profiles, search ranking and "most followed" read one row
    instead of counting 100,000 follows. A row of its own, not a column on the user: every row
    that references a user takes a key-share lock on it, and the auth forms save the whole user
    row, so a counter there would meet both. A user with no row has no followers."""

    user = models.OneToOneField(User, on_delete=models.CASCADE, primary_key=True, related_name="stats")
    follower_count = models.BigIntegerField(default=0)

    class Meta:
        verbose_name_plural = "user stats"
        # "Most followed" walks this from the top (feed.queries.suggested_users).
        indexes = [models.Index(fields=["-follower_count", "user"], name="userstats_popular_idx")]
        constraints = [models.CheckConstraint(condition=models.Q(follower_count__gte=0),
                                              name="userstats_followers_not_negative")]

    def __str__(self):
        return f"{self.user_id}: {self.follower_count} followers"


class Writing(models.Model):
    """What posts and comments share: an author, text that is never blank or over-long (also
    enforced by the database, so no write path can store an invalid one), and who it mentions."""

    author = models.ForeignKey(User, on_delete=models.CASCADE, related_name="%(class)ss")
    text = models.CharField(max_length=MAX_TEXT_LENGTH, validators=[validate_text])
    created_at = models.DateTimeField(auto_now_add=True)
    # When the author last changed the text (feed.services.edit_post / edit_comment); null until then.
    edited_at = models.DateTimeField(null=True, blank=True)
    mentions = models.ManyToManyField(User, related_name="mentioned_in_%(class)ss", blank=True)

    class Meta:
        abstract = True
        constraints = [
            models.CheckConstraint(
                condition=LessThanOrEqual(Length("text"), MAX_TEXT_LENGTH), name="%(class)s_text_max"
            ),
            models.CheckConstraint(condition=GreaterThan(Length(Trim("text")), 0), name="%(class)s_text_not_blank"),
        ]


class Post(Writing):
    # The number of the post's last message on its public topic (feed.live): bumped under the post's
    # row lock with each comment, removal, like or unlike, so an open page can drop a message that
    # arrives after a newer one (two writers' messages leave from different processes).
    live_seq = models.BigIntegerField(default=0, db_default=0, editable=False)
    # One picture, stored at creation (feed.media): its storage name, size in pixels and the
    # author's description of it for people who cannot see it. Empty name: no picture.
    image = models.CharField(max_length=200, blank=True, default="", db_default="", editable=False)
    image_width = models.PositiveIntegerField(null=True, blank=True, editable=False)
    image_height = models.PositiveIntegerField(null=True, blank=True, editable=False)
    image_alt = models.CharField(max_length=MAX_ALT_LENGTH, blank=True, default="", db_default="")

    class Meta(Writing.Meta):
        ordering = ["-id"]
        indexes = [models.Index(fields=["author", "-id"], name="post_author_idx")]

    def __str__(self):
        return f"#{self.pk} by {self.author}"

    def save(self, *args, **kwargs):
        """Saving a loaded post (the admin's edit form) never writes back a live_seq it read earlier:
        only feed.live moves it, and only forwards."""
        if not self._state.adding and kwargs.get("update_fields") is None:
            kwargs["update_fields"] = [f.name for f in self._meta.concrete_fields
                                       if not f.primary_key and f.name != "live_seq"]
        super().save(*args, **kwargs)

    def get_absolute_url(self):
        return reverse("post-detail", args=[self.pk])

    @property
    def image_info(self) -> dict | None:
        """{url, width, height, alt} of the post's picture, or None without one."""
        if not self.image:
            return None
        from .media import url_of

        return {"url": url_of(self.image), "width": self.image_width, "height": self.image_height,
                "alt": self.image_alt}


class Comment(Writing):
    post = models.ForeignKey(Post, on_delete=models.CASCADE, related_name="comments")
    # The top-level comment this one replies to (threads are one level deep: feed.services.add_comment
    # attaches a reply to a reply to its thread's top-level comment). SET_NULL, not CASCADE: deleting
    # a comment must not silently delete other people's replies (nor leave their notifications
    # behind); a reply whose comment goes stays, as a comment of its own.
    parent = models.ForeignKey("self", on_delete=models.SET_NULL, null=True, blank=True, related_name="replies")

    class Meta(Writing.Meta):
        ordering = ["id"]
        indexes = [
            models.Index(fields=["post", "id"], name="comment_post_idx"),
            # A thread's replies, oldest first; and the SET_NULL when their comment goes.
            models.Index(fields=["parent", "id"], condition=models.Q(parent__isnull=False), name="comment_parent_idx"),
        ]

    def __str__(self):
        return f"comment #{self.pk} on post #{self.post_id}"

    def get_absolute_url(self):
        return reverse("post-detail", args=[self.post_id]) + f"#comment-{self.pk}"


class PostFollow(models.Model):
    """Whether someone is told of new top-level comments on a post (feed.services.add_comment).

    A post's author follows it without a row (feed.services._followers), and commenting follows a
    post; an explicit unfollow is kept as a row with `following=False`, so a later comment does
    not follow it again. One row per person and post (the unique constraint), written under the post's lock:
    following and unfollowing are idempotent and take turns with the comments they affect."""

    post = models.ForeignKey(Post, on_delete=models.CASCADE, related_name="follows")
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="post_follows")
    following = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        # (The user's foreign-key index serves deleting an account; this one leads with the post.)
        constraints = [models.UniqueConstraint(fields=["post", "user"], name="postfollow_once")]

    def __str__(self):
        return f"{self.user_id} {'follows' if self.following else 'unfollowed'} post #{self.post_id}"


class Like(models.Model):
    post = models.ForeignKey(Post, on_delete=models.CASCADE, related_name="likes")
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="likes")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["post", "user"], name="like_once")]

    def __str__(self):
        return f"{self.user} likes post #{self.post_id}"
