"""The email digest: what a user has not seen yet, once an hour or once a day, grouped as the inbox.

Who gets one (`eligible`): an active account with a verified address whose digest setting is the
run's cadence and who has something unseen (`last_seq > seen_seq` on the state row). What it
holds (`compose`): that user's notifications still unseen and unread, of the kinds on for email
(notifier.channels: never a muted kind, never a muted post), newer than the last digest *sent*
(its `upto_seq`) and not older than DIGEST_MAX_AGE, newest first, the first DIGEST_MAX_ITEMS with
"and N more". Grouped items read as the inbox reads them ("Ana and 3 others liked your post": the
same groups.attach_actors and display_text). Nothing new: nothing is sent.

How it runs (`plan`, `send_digest_batch`): `manage.py send_digests` (and the Zappa cron events)
cuts the eligible users into id ranges of DIGEST_BATCH_SIZE with one keyset query and enqueues one
background task per range (notifier.taskqueue, as feed.fanout does), so 100,000 users are a few
hundred short tasks spread over workers or Lambda invocations, not one long run.

Once per window: a task first claims its users for the window, inserting one DigestDelivery row
per (user, window_start) with ON CONFLICT DO NOTHING ... RETURNING, committed on its own, and
mails only the users it claimed. A second run, a retried task, or two runs at the same moment on
PostgreSQL (the insert waits on the other's uncommitted row, then does nothing) send nothing more.

Failures: the mail goes after its claim commits and the claim is marked sent after the mail server
took the message. So across a crash between the two the digest is sent *at most once* per window;
what a lost one held is not lost, since the next digest starts after the last one marked sent (if
the lost one did reach the server, the next repeats its items: a repeat rather than a hole). A
send that fails with an error releases its claim and fails the task once the batch is done, so the
task queue's retries (with backoff, TASK_MAX_ATTEMPTS) send it later in the window; users already
sent keep their claims and are skipped. A permanent refusal (the address is refused) keeps the
claim: retrying cannot help, and bounces turn the address off (notifier.mail.bounces).
"""
import logging
from datetime import datetime, timedelta, timezone as dt_timezone

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.db.models import Exists, F, Max, OuterRef, Window
from django.db.models.functions import RowNumber
from django.template.loader import render_to_string
from django.utils import timezone

from .. import channels, groups, inbox
from ..models import Digest, DigestDelivery, MutedPost, Notification, NotificationState
from ..sql import int_array, table
from ..taskqueue import background, enqueue
from . import unsubscribe

log = logging.getLogger(__name__)

PERIODS = {Digest.HOURLY: timedelta(hours=1), Digest.DAILY: timedelta(days=1)}
CADENCES = tuple(PERIODS)


class DigestSendFailed(Exception):
    """Some digests of a batch could not be sent; their claims were released for the retry."""


def window_start(cadence: str, now: datetime | None = None) -> datetime:
    """The start of the window `now` is in: the hour, or the day (UTC, like the site's TIME_ZONE
    default; the daily cron decides the hour of the day the mail goes)."""
    now = (now or timezone.now()).astimezone(dt_timezone.utc)
    start = now.replace(minute=0, second=0, microsecond=0)
    return start.replace(hour=0) if cadence == Digest.DAILY else start


def eligible(cadence: str):
    """Users who get a `cadence` digest if they have something new (ids, ascending)."""
    return (
        get_user_model().objects.filter(
            is_active=True, email_verified_at__isnull=False, notification_state__email_digest=cadence,
            notification_state__last_seq__gt=F("notification_state__seen_seq"),
        ).exclude(email="")
    )


def due(cadence: str, start: datetime):
    """Eligible users not yet claimed for the window starting at `start`."""
    claimed = DigestDelivery.objects.filter(user_id=OuterRef("pk"), window_start=start)
    return eligible(cadence).exclude(Exists(claimed))


def batch_bounds(queryset, size: int) -> list[tuple[int, int]]:
    """(after_id, upto_id] ranges of `size` users each over `queryset`'s ids, in one query."""
    ends = list(
        queryset.annotate(n=Window(RowNumber(), order_by=F("pk").asc())).annotate(m=F("n") % size)
        .filter(m=0).order_by("pk").values_list("pk", flat=True)
    )
    last = queryset.order_by("-pk").values_list("pk", flat=True).first()
    if last is not None and (not ends or ends[-1] != last):
        ends.append(last)
    return list(zip([0, *ends[:-1]], ends))


def plan(cadence: str, now: datetime | None = None) -> tuple[datetime, int]:
    """Enqueue one `send_digest_batch` per DIGEST_BATCH_SIZE users due a `cadence` digest in the
    current window; returns the window's start and the number of batches."""
    start = window_start(cadence, now)
    bounds = batch_bounds(due(cadence, start), settings.DIGEST_BATCH_SIZE)
    with transaction.atomic():
        for after_id, upto_id in bounds:
            enqueue(send_digest_batch, cadence, start.isoformat(), after_id, upto_id)
    return start, len(bounds)


PRUNE_BATCH = 20_000


def prune(now: datetime | None = None, batch: int = PRUNE_BATCH) -> int:
    """Delete up to `batch` claims older than any digest can reach back (DIGEST_MAX_AGE, and a day
    to spare): a short statement per run (hourly), which keeps up with 480,000 a day."""
    cutoff = (now or timezone.now()) - timedelta(seconds=settings.DIGEST_MAX_AGE) - timedelta(days=1)
    old = DigestDelivery.objects.filter(window_start__lt=cutoff).order_by("window_start").values_list("pk", flat=True)
    return DigestDelivery.objects.filter(pk__in=list(old[:batch])).delete()[0]


@background
def send_digest_batch(cadence: str, start_iso: str, after_id: int, upto_id: int) -> int:
    """Claim and mail the due users with ids in (after_id, upto_id]; returns how many were sent."""
    start = datetime.fromisoformat(start_iso)
    ids = list(due(cadence, start).filter(pk__gt=after_id, pk__lte=upto_id).order_by("pk").values_list("pk", flat=True))
    claimed = claim(ids, start, cadence)
    if not claimed:
        return 0
    from django.core.mail import get_connection

    sent, failed, done = 0, [], set()
    mail = get_connection()
    try:
        for user, message, upto_seq, count in compose_all(claimed, cadence, start):
            done.add(user.pk)
            if message is None:
                _finish(user.pk, start, upto_seq=upto_seq, count=0, sent=False)
                continue
            message.connection = mail
            try:
                message.send()
            except Exception as exc:  # the transport's own errors: SMTP, SES (botocore), sockets
                if permanent(exc):
                    log.warning("digest for user %s refused for good: %s", user.pk, exc)
                    _finish(user.pk, start, upto_seq=upto_seq, count=0, sent=False)
                else:
                    log.warning("digest for user %s not sent, to be retried: %s", user.pk, exc)
                    release(user.pk, start)
                    failed.append(user.pk)
                continue
            _finish(user.pk, start, upto_seq=upto_seq, count=count, sent=True)
            sent += 1
    except BaseException:
        # Composing failed (the database went away...): the users not reached yet are released
        # for the task's retry; the one being sent when it failed, if any, keeps its claim.
        try:
            for uid in sorted(set(claimed) - done):
                release(uid, start)
        except Exception:  # the database is gone too: those claims stay (at most once); the next digest covers them
            log.exception("digest claims of users %s not released", sorted(set(claimed) - done)[:10])
        raise
    finally:
        mail.close()
    if failed:
        raise DigestSendFailed(f"{len(failed)} of {len(claimed)} digests not sent (users {failed[:10]}...); retried")
    return sent


def claim(user_ids: list[int], start: datetime, cadence: str) -> list[int]:
    """Insert the (user, window) claims that nobody holds yet, committed at once; the ids taken."""
    if not user_ids:
        return []
    at = connection.ops.adapt_datetimefield_value(start)
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    t = table(DigestDelivery)
    with transaction.atomic():
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                source, param = "SELECT u, %s, %s, %s, 0, 0 FROM unnest(%s::bigint[]) AS u ORDER BY u", int_array(user_ids)
            else:
                import json

                source, param = "SELECT value, %s, %s, %s, 0, 0 FROM json_each(%s) WHERE true", json.dumps(user_ids)
            cursor.execute(
                f"INSERT INTO {t} (user_id, window_start, cadence, claimed_at, upto_seq, item_count) {source}"
                f" ON CONFLICT (user_id, window_start) DO NOTHING RETURNING user_id",
                [at, cadence, now, param],
            )
            return sorted(row[0] for row in cursor.fetchall())


def release(user_id: int, start: datetime) -> None:
    DigestDelivery.objects.filter(user_id=user_id, window_start=start, sent_at__isnull=True).delete()


def _finish(user_id: int, start: datetime, *, upto_seq: int, count: int, sent: bool) -> None:
    """Mark the claim sent (or empty). On PostgreSQL without waiting for the disk: a mark lost
    with the database server only makes the next digest repeat these items, and waiting for the
    flush was a third of a batch's time."""
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL synchronous_commit TO OFF")
        DigestDelivery.objects.filter(user_id=user_id, window_start=start).update(
            sent_at=timezone.now() if sent else None, upto_seq=upto_seq, item_count=count)


def permanent(exc: BaseException) -> bool:
    """Whether a send failed for good for this recipient (retrying cannot help)."""
    import smtplib

    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return True
    code = getattr(exc, "response", None)
    code = code.get("Error", {}).get("Code") if isinstance(code, dict) else None
    return code in {"MessageRejected", "InvalidParameterValue"}  # SES: e.g. an unverified recipient in the sandbox


def compose_all(user_ids: list[int], cadence: str, start: datetime):
    """(user, message or None, upto_seq, item count) for each claimed user still eligible."""
    users = eligible(cadence).filter(pk__in=user_ids).select_related("notification_state").order_by("pk")
    last_sent = dict(
        DigestDelivery.objects.filter(user_id__in=user_ids, sent_at__isnull=False)
        .values("user_id").annotate(upto=Max("upto_seq")).values_list("user_id", "upto")
    )
    muted: dict[int, list[int]] = {}
    for uid, post_ref in MutedPost.objects.filter(user_id__in=user_ids).values_list("user_id", "post_ref"):
        muted.setdefault(uid, []).append(post_ref)
    found = set()
    for user in users:
        found.add(user.pk)
        state = user.notification_state
        items, total = unseen_items(state, since_seq=last_sent.get(user.pk, 0), muted_posts=muted.get(user.pk, []))
        yield user, (message(user, items, total, cadence) if items else None), state.last_seq, total
    for uid in set(user_ids) - found:  # no longer eligible (verified address gone, digest turned off)
        _finish(uid, start, upto_seq=0, count=0, sent=False)


def unseen_items(state: NotificationState, *, since_seq: int = 0, muted_posts=(), now: datetime | None = None):
    """The digest's notifications for the user of `state` (newest first, at most DIGEST_MAX_ITEMS,
    grouped actors attached) and how many there are in all."""
    kinds = channels.kinds_on(state, channels.EMAIL)
    items = (
        Notification.objects.filter(
            recipient_id=state.user_id, seq__gt=max(since_seq, state.seen_seq, state.read_seq), seq__lte=state.last_seq,
            read_at__isnull=True, kind__in=kinds,
            event__created_at__gte=(now or timezone.now()) - timedelta(seconds=settings.DIGEST_MAX_AGE),
        )
        .exclude(event__post_ref__in=list(muted_posts))
        .select_related("event__actor")
        .order_by("-seq")
    )
    shown = list(items[: settings.DIGEST_MAX_ITEMS])
    total = len(shown) if len(shown) < settings.DIGEST_MAX_ITEMS else items.count()
    return groups.attach_actors(shown), total


def message(user, items, total: int, cadence: str):
    """The digest as a multipart (plain text + HTML) message with RFC 8058 one-click unsubscribe."""
    from django.core.mail import EmailMultiAlternatives

    unsubscribe_url = unsubscribe.url(user.pk)
    context = {
        "user": user,
        "items": [{
            "text": n.display_text,
            "url": settings.SITE_URL + n.url,
            "kind": inbox.KIND_LABELS.get(n.kind, "Notification"),
            "created_at": n.created_at,
        } for n in items],
        "total": total,
        "more": total - len(items),
        "cadence": cadence,
        "site_name": settings.SITE_NAME,
        "inbox_url": settings.SITE_URL + "/notifications/",
        "settings_url": settings.SITE_URL + "/settings/notifications/",
        "unsubscribe_url": unsubscribe_url,
    }
    if total == 1:
        subject = f"{settings.SITE_NAME}: {items[0].display_text}"
    else:
        subject = f"{settings.SITE_NAME}: {total} things you missed"
    subject = " ".join(subject.split())[:150]  # one line, whatever the user's text held
    mail = EmailMultiAlternatives(
        subject=subject,
        body=render_to_string("notifier/email/digest.txt", context),
        to=[user.email],
        headers={
            "List-Unsubscribe": f"<{unsubscribe_url}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            "Auto-Submitted": "auto-generated",
        },
    )
    mail.attach_alternative(render_to_string("notifier/email/digest.html", context), "text/html")
    return mail
