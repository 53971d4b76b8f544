"""Stored follower counts (feed.counters, feed.models.UserStats): exact after every follow,
unfollow and account deletion, filled in for follows made in bulk, and rebuilt by
`manage.py recount_followers`. (Concurrent writers: tests/test_races.py checks counts after every
race.)"""
import pytest
from django.core.management import CommandError, call_command

from feed import counters, queries, services
from feed.models import Follow, User, UserStats

from .helpers import assert_follower_counts_exact

pytestmark = pytest.mark.django_db


def stored(user) -> int | None:
    return UserStats.objects.filter(user=user).values_list("follower_count", flat=True).first()


def test_follow_unfollow_and_following_twice(alice, bob, carol):
    assert stored(bob) is None and queries.profile_stats(bob)["follower_count"] == 0
    assert services.follow(alice, "bob")
    assert not services.follow(alice, "bob")  # one follow, one count
    services.follow(carol, "bob")
    assert stored(bob) == 2
    assert services.unfollow(alice, "bob")
    assert not services.unfollow(alice, "bob")
    assert stored(bob) == 1 and queries.profile_stats(bob)["follower_count"] == 1
    assert_follower_counts_exact()


def test_deleting_an_account_takes_it_out_of_every_count(alice, bob, carol, make_user):
    dave = make_user("dave")
    for who in ("alice", "bob", "carol"):
        services.follow(dave, who)
    services.follow(alice, "dave")
    services.follow(bob, "carol")
    services.delete_account(dave)
    assert [stored(u) for u in (alice, bob, carol)] == [0, 0, 1]
    assert not UserStats.objects.filter(user_id=dave.pk).exists()
    assert_follower_counts_exact()


def test_follows_made_in_bulk_are_counted_the_first_time_a_write_touches_them(alice, bob, carol):
    fans = User.objects.bulk_create([User(username=f"bulk{i}") for i in range(5)])
    Follow.objects.bulk_create([Follow(follower=f, followee=bob) for f in fans])
    Follow.objects.bulk_create([Follow(follower=f, followee=carol) for f in fans])
    assert stored(bob) is None
    assert queries.profile_stats(bob)["follower_count"] == 5  # counted until it has a row
    services.follow(alice, "bob")
    assert (stored(alice), stored(bob)) == (0, 6)  # the follower's row is made (and held) too
    services.unfollow(fans[0], "carol")  # no row yet: made from the follows, then one less
    assert stored(carol) == 4
    assert_follower_counts_exact()
    # Follows loaded in bulk once a row exists are not seen until recounted (recount_followers).
    Follow.objects.bulk_create([Follow(follower=f, followee=alice) for f in fans])
    assert counters.wrong_counts() == [(alice.pk, 0, 5)]


def test_recount_rebuilds_everyone_or_the_users_given(alice, bob, carol):
    services.follow(alice, "bob")
    services.follow(carol, "bob")
    UserStats.objects.filter(user=bob).update(follower_count=40)
    UserStats.objects.filter(user=carol).update(follower_count=7)  # nobody follows carol
    Follow.objects.create(follower=bob, followee=alice)  # not through the service: no row
    assert counters.wrong_counts() == [(alice.pk, 0, 1), (bob.pk, 40, 2), (carol.pk, 7, 0)]
    counters.recount([bob.pk])
    assert counters.wrong_counts() == [(alice.pk, 0, 1), (carol.pk, 7, 0)]
    counters.recount()
    assert counters.wrong_counts() == []
    assert (stored(alice), stored(bob), stored(carol)) == (1, 2, 0)


def test_recount_followers_command(alice, bob, capsys):
    services.follow(alice, "bob")
    UserStats.objects.filter(user=bob).update(follower_count=3)
    with pytest.raises(CommandError, match="Follower counts are off"):
        call_command("recount_followers", "--check")
    assert f"user {bob.pk}: stored 3, actual 1" in capsys.readouterr().out
    with pytest.raises(CommandError, match="No such user: nobody"):
        call_command("recount_followers", "bob", "nobody")
    call_command("recount_followers", "bob")
    assert "1 count(s) were off" in capsys.readouterr().out
    call_command("recount_followers", "--check")
    assert "0 count(s) off." in capsys.readouterr().out


def test_a_stale_user_save_cannot_touch_a_count(client, alice, bob):
    """The count lives in its own row: saving a user loaded before a follow (the profile form,
    the admin) writes nothing over it."""
    stale = User.objects.get(pk=bob.pk)
    services.follow(alice, "bob")
    stale.bio = "edited"
    stale.save()
    assert stored(bob) == 1


def test_the_migration_fills_counts_from_existing_follows(alice, bob, carol):
    """Migration 0004's statement, run against follows that exist without counts."""
    from importlib import import_module

    from django.db import connection

    services.follow(alice, "bob")
    services.follow(carol, "bob")
    services.follow(bob, "carol")
    UserStats.objects.all().delete()
    fill = import_module("feed.migrations.0004_user_stats").Migration.operations[-1]
    with connection.cursor() as cursor:
        cursor.execute(fill.sql)
    assert (stored(alice), stored(bob), stored(carol)) == (None, 2, 1)
    assert_follower_counts_exact()


def test_search_and_profile_show_the_stored_count(api, client, alice, bob, carol):
    services.follow(alice, "bob")
    services.follow(carol, "bob")
    [item] = api.as_(alice).get("/api/users/", {"q": "bob"}).json()["results"]
    assert item["follower_count"] == 2
    assert api.as_(alice).get("/api/users/bob/").json()["follower_count"] == 2
    client.force_login(alice)
    assert '<strong id="follower-count">2</strong> followers' in client.get("/u/bob/").content.decode()
