"""Follower counts (feed.models.UserStats), kept exact by the writes that change them, and the
row every write by (or follow of) a user holds while it runs.

A count moves in the transaction that adds or removes the follow, so it is exact at every commit.
The row is also what serialises an account's deletion with that account's own writes: every write
*by* a user (post, comment, like, unlike, follow, unfollow) and every follow or unfollow *of* a
user first holds that user's row (`hold`), and deleting the account holds it too. A deletion that
holds it therefore sees every write of the account committed or not yet begun, so what it reads
(the account's follows, comments, likes) stays as read until it commits. Rows are held in the lock
order of feed.services: posts, then the comment, then these rows (ascending user id), then
notification state rows.

A user without a row (accounts and follows made in bulk, or before counts existed) gets one the
first time a write holds it, counted from the follows: every follow of that user holds the row
before it inserts, so none is in flight while the count is taken. `recount()` rebuilds counts from scratch (the migration that introduced them, and
`manage.py recount_followers` after loading follows in bulk).
"""
from django.db import connection
from django.db.models import Exists, F, OuterRef, Value
from django.db.models.functions import Coalesce

from .models import Follow, User, UserStats


def _table(model) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def _upsert(user_ids, delta: int) -> None:
    """Add `delta` to each user's count, creating missing rows from their follows; rows are
    locked in ascending user id."""
    stats, follows = _table(UserStats), _table(Follow)
    for ids in _batches(user_ids):
        marks = ", ".join(["%s"] * len(ids))
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {stats} (user_id, follower_count)"
                # Counted only for a row that is missing (a CASE evaluates one branch): an existing
                # row takes the conflict path, and its value here is never used.
                f" SELECT u.id, CASE WHEN EXISTS (SELECT 1 FROM {stats} s WHERE s.user_id = u.id) THEN 0"
                f" ELSE (SELECT COUNT(*) FROM {follows} f WHERE f.followee_id = u.id) END"
                f" FROM {_table(User)} u WHERE u.id IN ({marks}) ORDER BY u.id"
                f" ON CONFLICT (user_id) DO UPDATE SET follower_count = {stats}.follower_count + %s",
                [*ids, delta],
            )


def _batches(user_ids, size: int = 5000):
    """Ascending, in batches that stay under the databases' limits on query parameters."""
    ids = sorted(set(user_ids))
    for start in range(0, len(ids), size):
        yield ids[start:start + size]


def hold(user_ids) -> None:
    """Lock these users' rows (creating missing ones), ascending, until the transaction ends."""
    _upsert(user_ids, 0)


def followed(user_id: int) -> None:
    """After inserting a follow of `user_id` (its row held): one more follower."""
    UserStats.objects.filter(user_id=user_id).update(follower_count=F("follower_count") + 1)


def unfollowed(user_ids) -> None:
    """After deleting one follow of each of `user_ids` (their rows held): one fewer each."""
    for ids in _batches(user_ids):
        UserStats.objects.filter(user_id__in=ids).update(follower_count=F("follower_count") - 1)


def follower_count(user) -> int:
    row = UserStats.objects.filter(user=user).values_list("follower_count", flat=True).first()
    return row if row is not None else Follow.objects.filter(followee=user).count()


def recount(user_ids=None) -> None:
    """Set counts from the follows as they are (every user's, or those given). For quiet moments
    (the migration that introduced counts, after a bulk load): it does not lock out writers."""
    stats, follows = _table(UserStats), _table(Follow)
    where, params = "TRUE", []
    stale = UserStats.objects.filter(~Exists(Follow.objects.filter(followee_id=OuterRef("user_id"))))
    if user_ids is not None:
        user_ids = sorted(set(user_ids))
        if not user_ids:
            return
        where, params = f"followee_id IN ({', '.join(['%s'] * len(user_ids))})", user_ids
        stale = stale.filter(user_id__in=user_ids)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {stats} (user_id, follower_count)"
            f" SELECT followee_id, COUNT(*) FROM {follows} WHERE {where} GROUP BY followee_id"
            f" ON CONFLICT (user_id) DO UPDATE SET follower_count = EXCLUDED.follower_count",
            params,
        )
    stale.exclude(follower_count=0).update(follower_count=0)


def wrong_counts(user_ids=None) -> list[tuple[int, int, int]]:
    """(user id, stored, actual) for every count that is off (a missing row counts as 0 stored)."""
    from .queries import count_of

    users = User.objects.all() if user_ids is None else User.objects.filter(pk__in=list(user_ids))
    rows = users.annotate(
        stored=Coalesce("stats__follower_count", Value(0)),
        actual=count_of(Follow, followee=OuterRef("pk")),
    ).exclude(stored=F("actual")).order_by("pk").values_list("pk", "stored", "actual")
    return list(rows)
