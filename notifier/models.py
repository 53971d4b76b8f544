"""Stored notifications, each user's notification state, and the pushes still owed.

The state row is the single source of truth for the bell. Every write in notifier.services changes
it in the same transaction as the notification rows, under its row lock, so:
- `unread_count` is exact, and reading it is one primary-key lookup, never a COUNT(*);
- `last_seq` numbers a user's notifications, so a client that reconnects can ask for exactly what
  it missed (`?after_seq=N`);
- `read_seq` is a read watermark: every notification with `seq <= read_seq` is read. "Mark all
  read" moves the watermark, one row, whatever the backlog; only notifications read one by one
  above it carry their own `read_at`. A notification is unread when `seq > read_seq` and
  `read_at` is null.
- `seen_seq` is the seen watermark, the same way: opening the bell marks everything seen (the
  badge shows `unseen_count`), while items stay unread until opened.

Grouped notifications: likes of one post, follows of one person and new posts by one author within
a window are one row (`GROUPED`), keyed by `dedupe_key` (`like:<post>:<window>`, …). New activity
bumps the row: it takes the next seq, becomes unread and unseen again, and is pushed with the same
id so every open tab replaces it in place. Counts change only when an item's state flips (bumping
an item that is already unread changes no count), so they stay exact: the bell counts items as
the list shows them. NotificationActor rows say who is in a group (for "Ana and 3 others", and to
take someone out again on unlike / unfollow).

Event + recipient rows: what is the same for every recipient (kind, actor, the post / comment it is
about, text, url, time) is stored once, in a NotificationEvent; each recipient's Notification is
narrow (recipient, seq, event, kind, group key, actor_count, read_at). A fan-out to 10,000 followers
writes one event and 10,000 rows of a few ids each; an edit rewrites one event; a group points at
its newest event. Readers join one event per listed row (select_related), a fixed query count.

Events name what they are about by plain ids (post_ref, comment_ref), not generic foreign keys and
not foreign keys into the feed app: notifier does not depend on feed. The app that owns those
objects withdraws the notifications when it deletes them (services.withdraw: the events about
them, then their recipients' rows by the event index).

Index diet: every index on Notification serves a query that can be named (see Meta), and no
column that a routine UPDATE changes (`read_at`) is indexed, so those updates stay HOT on
PostgreSQL. Delivery bookkeeping lives in its own narrow table, PendingPush, so a successful push
deletes one small row instead of rewriting a wide one with all its index entries.
"""
import functools
from datetime import timedelta

from django.conf import settings
from django.db import connection, models
from django.utils import timezone


class Kind(models.TextChoices):
    # Labels read as "Don't notify me about: …" on the settings page.
    COMMENT = "comment", "Comments on posts you follow"
    REPLY = "reply", "Replies to your comments"
    LIKE = "like", "Likes of your posts"
    FOLLOW = "follow", "New followers"
    MENTION = "mention", "Mentions of you"
    NEW_POST = "new_post", "Posts from people you follow"


class Digest(models.TextChoices):
    """How often the email digest of unseen notifications goes out."""
    OFF = "off", "Off"
    HOURLY = "hourly", "Hourly"
    DAILY = "daily", "Daily"


# How activity of a grouped kind joins its group: MEMBERS groups count distinct actors (a second
# like by the same person changes nothing; unlike takes them out); NEWEST groups (one author's new
# posts) have one actor and move to the newest post (an older post arriving late changes nothing).
MEMBERS, NEWEST = "members", "newest"
GROUPED = {Kind.LIKE: MEMBERS, Kind.FOLLOW: MEMBERS, Kind.NEW_POST: NEWEST}
# Kinds a user can mute (settings page, preferences API): all of them.
MUTABLE_KINDS = list(Kind.values)


@functools.cache
def _select_by_pk(model) -> str:
    quote = connection.ops.quote_name
    columns = ", ".join(quote(f.column) for f in model._meta.concrete_fields)
    return f"SELECT {columns} FROM {quote(model._meta.db_table)} WHERE {quote(model._meta.pk.column)} = %s"


class NotificationState(models.Model):
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, primary_key=True, related_name="notification_state"
    )
    last_seq = models.PositiveBigIntegerField(default=0)
    unread_count = models.PositiveIntegerField(default=0)
    # Everything with seq <= read_seq is read ("mark all read" in O(1)).
    read_seq = models.PositiveBigIntegerField(default=0)
    # Everything with seq <= seen_seq is seen (opening the bell); the badge shows unseen_count.
    # (Defaults in the database too: rows written by code that predates these columns — a deploy
    # in progress, raw SQL — stay valid.)
    seen_seq = models.PositiveBigIntegerField(default=0, db_default=0)
    unseen_count = models.PositiveIntegerField(default=0, db_default=0)
    # Kinds this user is never notified of, comma-separated (checked inside the set-based write).
    muted_kinds = models.CharField(max_length=120, blank=True, default="", db_default="")
    # Per-channel kinds turned off (see notifier.channels): Web Push, the email digest; and how
    # often the digest goes out.
    push_off = models.CharField(max_length=120, blank=True, default="", db_default="")
    email_off = models.CharField(max_length=120, blank=True, default="like,new_post", db_default="like,new_post")
    email_digest = models.CharField(max_length=8, choices=Digest.choices, default=Digest.DAILY, db_default=Digest.DAILY)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=models.Q(unread_count__gte=0), name="state_unread_not_negative"),
            models.CheckConstraint(condition=models.Q(read_seq__lte=models.F("last_seq")), name="state_read_seq_le_last"),
            models.CheckConstraint(condition=models.Q(seen_seq__lte=models.F("last_seq")), name="state_seen_seq_le_last"),
        ]

    def __str__(self):
        return f"{self.user}: seq {self.last_seq}, {self.unread_count} unread, {self.unseen_count} unseen"

    @classmethod
    def of(cls, user) -> "NotificationState":
        """The user's state row (one primary-key read), or an unsaved all-zero one for an account
        that has none yet (made in bulk): what the bell shows either way.

        The statement is written once: the bell's count and every catch-up start here, and
        building the query through the ORM took longer than the database took to answer it."""
        uid = getattr(user, "pk", user)
        names = [f.attname for f in cls._meta.concrete_fields]
        with connection.cursor() as cursor:
            cursor.execute(_select_by_pk(cls), [uid])
            row = cursor.fetchone()
        return cls.from_db(connection.alias, names, row) if row else cls(user_id=uid)

    @property
    def muted_kind_list(self) -> list[str]:
        return [k for k in self.muted_kinds.split(",") if k]


class NotificationQuerySet(models.QuerySet):
    def for_user(self, user):
        """The user's notifications, each annotated `read` from the watermark and its own mark.

        The watermark is read in the same statement (a scalar subquery on the state's primary key).
        """
        uid = getattr(user, "pk", user)
        return (
            self.filter(recipient_id=uid)
            .alias(watermark=_read_seq_of(uid))
            .annotate(
                read=models.ExpressionWrapper(
                    models.Q(read_at__isnull=False) | models.Q(seq__lte=models.F("watermark")),
                    output_field=models.BooleanField(),
                )
            )
        )

    def unread(self):
        """Unread: above the recipient's read watermark and not read one by one.

        After for_user() the watermark is one value, looked up once, and `seq > watermark` is a
        range of the (recipient, seq) index: a user who has read 100,000 notifications does not
        make the database step over them. Elsewhere it is looked up per row's recipient."""
        if "watermark" in self.query.annotations:
            return self.filter(read_at__isnull=True, seq__gt=models.F("watermark"))
        return self.filter(read_at__isnull=True, seq__gt=_read_seq_of(models.OuterRef("recipient_id")))


def _read_seq_of(user_id):
    from django.db.models.functions import Coalesce

    return Coalesce(
        models.Subquery(NotificationState.objects.filter(pk=user_id).values("read_seq")[:1]),
        0,
        output_field=models.PositiveBigIntegerField(),
    )


class NotificationEvent(models.Model):
    """What happened, once: the part of a notification that is the same for every recipient.

    A comment that tells 10,000 followers, a post fanned out to them, is one event row and 10,000
    narrow recipient rows (Notification) pointing at it, so the text (up to 300 characters) and the
    url are stored once, an edit rewrites one row, and a fan-out writes no per-recipient text.
    A group's item points at its newest event. Events are never updated by activity, only by an
    edit (the excerpt) and by an account's deletion (the actor goes).
    """

    kind = models.CharField(max_length=16, choices=Kind.choices)
    # SET_NULL, not CASCADE: deleting an actor's account must not silently change other users'
    # unread counts; the notification stays and shows "someone". (Its index serves that UPDATE.)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    post_ref = models.PositiveBigIntegerField(null=True, blank=True)
    comment_ref = models.PositiveBigIntegerField(null=True, blank=True)
    # The notice's key (a retried comment's `comment:<id>`): a recipient who has a notification of
    # an event with this key gets no second one.
    dedupe_key = models.CharField(max_length=100, null=True, blank=True)
    text = models.CharField(max_length=300)
    url = models.CharField(max_length=200)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [
            # withdraw(post_refs=…) and opening a post: the events about it, then their recipients
            # by the recipient rows' event index; a fan-out chunk finds its post's event.
            models.Index(fields=["post_ref"], condition=models.Q(post_ref__isnull=False), name="event_post_ref_idx"),
            # withdraw(comment_refs=…) when a comment is deleted.
            models.Index(fields=["comment_ref"], condition=models.Q(comment_ref__isnull=False),
                         name="event_comment_ref_idx"),
            # A retried notice finds the events it already stored.
            models.Index(fields=["dedupe_key"], condition=models.Q(dedupe_key__isnull=False), name="event_dedupe_idx"),
        ]

    def __str__(self):
        return f"{self.kind} event {self.pk}"


def _from_event(name):
    """A field of the notification's event, read as if it were the notification's own (list it
    with select_related("event"))."""
    return property(lambda self: getattr(self.event, name), doc=f"The event's {name}.")


class Notification(models.Model):
    """One recipient's notification: narrow (who, their seq, which event, read state); what is the
    same for every recipient lives in its NotificationEvent."""

    # No index of its own: the (recipient, seq) unique index leads with it. No database foreign
    # key: every writer stores a recipient's rows in the transaction that holds (or creates) the
    # recipient's NotificationState row, whose own foreign key fails that transaction if the
    # account is gone; a deletion locks that state row before it takes the account's rows (the
    # ORM cascade). The check here would repeat that lookup once per row at every fan-out
    # chunk's commit (about a tenth of a 10,000-follower fan-out, bench/fanout.py).
    recipient = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications", db_index=False,
        db_constraint=False,
    )
    seq = models.PositiveBigIntegerField()
    # Its event (a group's newest). No database foreign key: notifier writes both, the event first,
    # and the check would cost a lookup per row at every fan-out chunk's commit. Indexed: withdraw
    # and edits find an event's recipients (a few bytes per row: PostgreSQL deduplicates the entries
    # of one event's fan-out).
    event = models.ForeignKey(NotificationEvent, on_delete=models.DO_NOTHING, related_name="+", db_constraint=False)
    # The event's kind, kept here too: the mentions tab's partial index and grouping's filters.
    kind = models.CharField(max_length=16, choices=Kind.choices)
    # Distinct actors in a group (1 for everything else).
    actor_count = models.PositiveIntegerField(default=1, db_default=1)
    # A grouped item's key (`like:<post>:<window>`): activity lands on this one row. Null otherwise.
    dedupe_key = models.CharField(max_length=100, null=True, blank=True)
    # Set only when this notification is read by itself above the read watermark (not indexed).
    read_at = models.DateTimeField(null=True, blank=True)

    objects = NotificationQuerySet.as_manager()

    class Meta:
        ordering = ["-seq"]
        constraints = [
            # The list (newest first), ?unread=true (seq above the watermark) and ?after_seq=N.
            models.UniqueConstraint(fields=["recipient", "seq"], name="notification_seq_unique"),
            # Activity finds its group; two writers never split one.
            models.UniqueConstraint(fields=["recipient", "dedupe_key"], condition=models.Q(dedupe_key__isnull=False),
                                    name="notification_group_unique"),
        ]
        indexes = [
            # The "Mentions and replies" tab (page and API ?filter=mentions): newest first, without
            # stepping over the likes and follows between them.
            models.Index(fields=["recipient", "seq"], condition=models.Q(kind__in=["mention", "reply"]),
                         name="notification_mentions_idx"),
        ]

    def __str__(self):
        return f"{self.kind} for {self.recipient_id} (seq {self.seq})"

    text = _from_event("text")
    url = _from_event("url")
    created_at = _from_event("created_at")
    post_ref = _from_event("post_ref")
    comment_ref = _from_event("comment_ref")
    actor = _from_event("actor")
    actor_id = _from_event("actor_id")

    @property
    def display_text(self) -> str:
        """The text as shown, a group's "{actors}" filled in (see groups.attach_actors)."""
        from .envelope import actor_list, render_text

        return render_text(self.text, actor_list(self), self.actor_count)

    @property
    def is_read(self) -> bool:
        """From for_user()'s annotation; without it only the row's own mark is known."""
        return bool(getattr(self, "read", self.read_at is not None))


class NotificationActor(models.Model):
    """One person in a group (a MEMBERS kind): who liked, who followed, and when (newest first in
    "Ana and 3 others"). Goes with the group, and with the person's account."""

    notification = models.ForeignKey(Notification, on_delete=models.CASCADE, related_name="members", db_index=False)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    # This person's event (their like, their follow): the group points at its newest member's when
    # the newest leaves. No database foreign key, as Notification.event.
    event = models.ForeignKey(NotificationEvent, on_delete=models.DO_NOTHING, related_name="+", db_constraint=False,
                              db_index=False, null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            # The group's members (newest first via created_at in the query); one row per person.
            models.UniqueConstraint(fields=["notification", "actor"], name="notification_actor_unique"),
        ]

    def __str__(self):
        return f"{self.actor_id} in {self.notification_id}"


class MutedPost(models.Model):
    """A post someone asked not to be notified about (comments, replies, likes, mentions on it)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+", db_index=False)
    post_ref = models.PositiveBigIntegerField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "post_ref"], name="mutedpost_unique")]

    def __str__(self):
        return f"{self.user_id} muted post {self.post_ref}"


class PendingPush(models.Model):
    """A push that is owed: the outbox row for one notification, written in the same transaction.

    It exists from the moment the notification is stored until the push succeeds (then it is
    deleted) or can never succeed (then it stays with `due_at` null, as a record of the failure).
    `due_at` is when a retry may try it: right after the commit it is a lease a few seconds ahead
    (delivery.IN_FLIGHT_LEASE), so the in-process push goes first and a push lost with its process
    is retried; after a failure it is the next attempt's time (0.5 s, 1 s, 2 s, … see delivery).
    """

    # No database-level foreign key: only notifier writes and deletes these rows, beside their
    # notification (withdraw deletes them first; an account's go by `recipient`), and the check
    # would cost a lookup per row at every commit of a fan-out chunk (a fifth of its time).
    notification = models.OneToOneField(
        Notification, on_delete=models.DO_NOTHING, primary_key=True, related_name="pending_push", db_constraint=False
    )
    # So that deleting an account takes its owed pushes with its notifications (the ORM cascade).
    # Neither a database foreign key (as Notification.recipient) nor an index: the outbox is a
    # few rows in flight and the failures kept, the cascade its only reader, and each would cost
    # every stored notification a lookup or an index entry.
    recipient = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+",
                                  db_constraint=False, db_index=False)
    attempts = models.PositiveSmallIntegerField(default=0)
    due_at = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True)

    class Meta:
        indexes = [
            # deliver_pending: what is due, oldest first. Given-up rows (null) are not in it.
            models.Index(fields=["due_at"], condition=models.Q(due_at__isnull=False), name="pendingpush_due_idx"),
        ]

    def __str__(self):
        return f"push of notification {self.notification_id} ({self.state})"

    @property
    def state(self) -> str:
        return "failed" if self.due_at is None else "pending"


class LiveClient(models.Model):
    """A client id Herald vended to a user for a live connection, kept so access can be ended.

    AWS IoT keeps a connection open after its keys expire (up to 24 hours for WebSockets), so
    ending a user's access - log-out, a password change, deleting the account - means asking IoT
    to close each connection by client id (iot-data DeleteConnection, notifier.live_clients). The
    ids are random, so Herald must remember them: one narrow row per credentials request, kept for
    CONNECTION_LIFETIME and pruned as the user asks for more.

    `ending_since` is the durable promise: set in the transaction that ends access, cleared only by
    deleting the row once IoT has closed the connection (or said there is none). A request tries
    at once after its commit; what fails or is lost with its process is found by the sweep
    (deliver_pending). No database foreign key, so an account's rows outlive its deletion until
    their connections are closed.
    """

    # AWS IoT Core closes a WebSocket connection after 24 hours at the latest.
    CONNECTION_LIFETIME = timedelta(hours=24)

    client_id = models.CharField(max_length=128, primary_key=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.DO_NOTHING, related_name="+",
                             db_constraint=False, db_index=False)
    created_at = models.DateTimeField(default=timezone.now)
    ending_since = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            # Ending a user's connections, and pruning them: one user's ids, oldest first.
            models.Index(fields=["user", "created_at"], name="liveclient_user_idx"),
            # The sweep: connections still to be closed.
            models.Index(fields=["ending_since"], condition=models.Q(ending_since__isnull=False),
                         name="liveclient_ending_idx"),
        ]

    def __str__(self):
        return f"{self.client_id} of user {self.user_id}"


class TaskLease(models.Model):
    """The heartbeat of one run of a background task (notifier.taskqueue): while a worker runs the
    task, a thread of its own renews `expires_at`, one UPDATE every quarter of the lease. The sweep
    puts back a RUNNING task whose run's lease has expired (its worker was killed), and one with no
    lease that started more than a lease ago (killed before the first renewal; a run shorter than
    a quarter of the lease never writes one).

    A run is the task row's (id, started_at): every claim sets started_at, so a worker that went
    quiet, lost its task to the sweep and wakes up renews only its own, stale run, never the run of
    the worker that took the task over. No foreign key: django-tasks-db owns the task rows, and a
    lease outliving its row is pruned by the sweep.
    """

    task_id = models.UUIDField()
    started_at = models.DateTimeField()
    expires_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["task_id", "started_at"], name="tasklease_run_unique")]

    def __str__(self):
        return f"lease of task {self.task_id} until {self.expires_at}"


class DigestDelivery(models.Model):
    """One user's email digest for one window (notifier.mail.digests): the claim that makes it go
    at most once. The row is inserted, and committed, before the mail is composed; a second run or
    a retried task finds it and sends nothing. `sent_at` is set once the mail server took the
    message; a claim without it is a window with nothing to say, or a send lost with its process
    (at most once per window: the next digest covers what it held, since the content of a digest
    starts after the `upto_seq` of the user's last *sent* one).

    "This user's last sent digest" walks the unique (user, window_start) index backwards. Rows
    older than DIGEST_MAX_AGE tell nothing a digest could still contain; send_digests prunes them
    (the window_start index)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+", db_index=False)
    window_start = models.DateTimeField()
    cadence = models.CharField(max_length=8, choices=Digest.choices)
    claimed_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)
    # The digest covered the user's notifications with seq up to this (its state's last_seq then).
    upto_seq = models.PositiveBigIntegerField(default=0)
    item_count = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "window_start"], name="digest_once_per_window")]
        indexes = [models.Index(fields=["window_start"], name="digest_window_idx")]  # pruning, the admin

    def __str__(self):
        state = "sent" if self.sent_at else "claimed"
        return f"{self.cadence} digest of {self.user_id} for {self.window_start:%Y-%m-%d %H:%M} ({state})"


class WebPushSubscription(models.Model):
    """One browser's Web Push subscription (RFC 8030): where to POST, and the keys the payload is
    encrypted to (RFC 8291). One row per endpoint, whoever registered it last: a browser that
    another person logs into moves to them (notifier.webpush.subscriptions).

    The endpoint is a URL of up to a few hundred characters (FCM's are ~190, Apple's and Mozilla's
    longer); it is unique through its SHA-256 (`endpoint_hash`), so the unique index stays small
    and within every database's key-size limit.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+", db_index=False)
    endpoint = models.TextField()
    endpoint_hash = models.CharField(max_length=64, unique=True)
    p256dh = models.CharField(max_length=100)  # base64url uncompressed P-256 point (87 characters)
    auth = models.CharField(max_length=32)  # base64url 16-byte secret (22 characters)
    user_agent = models.CharField(max_length=200, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [
            # A user's devices, oldest first (the cap drops the oldest); the fan-out's join.
            models.Index(fields=["user", "created_at"], name="webpushsub_user_idx"),
        ]

    def __str__(self):
        return f"web push subscription {self.pk} of user {self.user_id}"


class PendingWebPush(models.Model):
    """A Web Push that is owed: one row per (notification, subscription), written in the same
    transaction as the notification (notifier.services), like PendingPush for the live push.

    Deleted when the push service accepts the message; left with `due_at` null and `last_error`
    when it never will (413, another 4xx); `due_at` ahead after a 429 / 5xx (Retry-After honoured)
    for deliver_pending. `attempts` counts claims: a sender claims a row by raising it (and pushing
    `due_at` out by a lease), so two senders never take the same attempt, and a success deletes
    the row only if nobody re-owed it meanwhile (a grouped notification bumped again sets
    attempts back to 0: that newer push is still owed).

    No database foreign keys (as PendingPush): the rows go with their subscription (Django's
    cascade, and a sender that finds the subscription gone deletes the row) and with their
    notification (notifier.services deletes them beside it).
    """

    notification = models.ForeignKey(Notification, on_delete=models.DO_NOTHING, related_name="+",
                                     db_constraint=False, db_index=False)
    subscription = models.ForeignKey(WebPushSubscription, on_delete=models.CASCADE, related_name="+",
                                     db_constraint=False)
    attempts = models.PositiveSmallIntegerField(default=0)
    due_at = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True)

    class Meta:
        constraints = [
            # One owed push per device per notification; a bump upserts it. Leads with the
            # notification: withdrawing notifications finds their rows by it.
            models.UniqueConstraint(fields=["notification", "subscription"], name="pendingwebpush_unique"),
        ]
        indexes = [
            # deliver_pending: what is due, oldest first. Given-up rows (null) are not in it.
            models.Index(fields=["due_at"], condition=models.Q(due_at__isnull=False), name="pendingwebpush_due_idx"),
        ]

    def __str__(self):
        return f"web push of notification {self.notification_id} to subscription {self.subscription_id}"

    @property
    def state(self) -> str:
        return "failed" if self.due_at is None else "pending"
