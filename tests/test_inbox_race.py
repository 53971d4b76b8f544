"""Mark as unread racing read, mark-all-read and new activity on one user's inbox, in threads (see
test_races for how they run on PostgreSQL and SQLite): the counts stay equal to a recount."""
import random

import pytest

from feed import services
from feed.models import User
from notifier import services as notes
from notifier.models import Notification, NotificationState

from .helpers import assert_count_exact
from .test_races import SEED, check_consistency, file_backed_sqlite, race  # noqa: F401 (fixture)

ROUNDS = 12


@pytest.mark.django_db(transaction=True)
def test_read_unread_and_mark_all_read_keep_counts_exact():
    alice, bob, carol = (User.objects.create_user(name, password="pw-123456789") for name in ("alice", "bob", "carol"))
    post = services.create_post(alice, "hello")
    for i in range(20):
        services.add_comment(bob, post.pk, f"comment {i}")
    notes.mark_all_read(alice)  # the first ten are read by the watermark, the rest as they come
    for i in range(10):
        services.add_comment(bob, post.pk, f"more {i}")
    ids = list(Notification.objects.filter(recipient=alice).order_by("seq").values_list("pk", flat=True))

    def pick(name, r):
        return random.Random(f"{SEED}:{name}:{r}").choice(ids)

    def unread(name):
        return lambda r: [notes.mark_unread(alice, pick(f"{name}:{i}", r)) for i in range(3)]

    def read(r):
        return [notes.mark_read(alice, pick(f"read:{i}", r)) for i in range(3)]

    def all_read(r):
        return notes.mark_all_read(alice) if r % 3 == 0 else notes.mark_unread(alice, pick("all", r))

    def activity(r):
        services.like(carol, post.pk) if r % 2 == 0 else services.unlike(carol, post.pk)  # a group bumped, then gone
        return services.add_comment(carol, post.pk, f"news {r}").pk

    race({"unread-1": unread("u1"), "unread-2": unread("u2"), "read": read, "all": all_read, "activity": activity},
         rounds=ROUNDS)

    check_consistency([alice], withdrawn=True, bumped=True)
    assert_count_exact(alice)
    state = NotificationState.objects.get(pk=alice.pk)
    assert state.unread_count == Notification.objects.for_user(alice).unread().count()
    assert state.read_seq <= state.last_seq
