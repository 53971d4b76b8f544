"""Finding people: GET /api/users/?q= (prefix search on username and display name) and
?suggested=1 (who to follow), the search page, the navbar form and the "who to follow" box."""
import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from feed import queries, services
from feed.models import Follow, User

pytestmark = pytest.mark.django_db

URL = "/api/users/"


def names(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [item["username"] for item in response.json()["results"]]


def follow(follower, *followees):
    for followee in followees:
        services.follow(follower, followee.username)


# --- search -----------------------------------------------------------------------------------

def test_search_matches_the_start_of_any_word_of_a_username_or_display_name_in_any_case(api, make_user):
    me = make_user("me")
    make_user("robert", display_name="Bob Roberts")
    make_user("bobby", display_name="Robert B.")
    make_user("alice", display_name="Alice Bobson")  # a word starting with "bob"
    make_user("xrob", display_name="Xavier")  # "rob" inside a word, not at its start
    client = api.as_(me)
    assert sorted(names(client.get(URL, {"q": "rob"}))) == ["bobby", "robert"]
    assert sorted(names(client.get(URL, {"q": "BOB"}))) == ["alice", "bobby", "robert"]
    assert names(client.get(URL, {"q": "  xAv "})) == ["xrob"]
    assert names(client.get(URL, {"q": "nobody"})) == []


def test_search_items_have_the_documented_shape(api, alice, bob, carol):
    follow(alice, bob)
    follow(carol, bob)
    data = api.as_(alice).get(URL, {"q": "b"}).json()
    assert data == {"results": [{
        "username": "bob", "display_name": "Bob", "follower_count": 2, "followed_by_me": True, "url": "/u/bob/", "avatar": None,
    }]}
    assert api.as_(carol).get(URL, {"q": "alice"}).json()["results"][0]["followed_by_me"] is False


def test_exact_username_first_then_most_followed_then_username(api, make_user):
    me = make_user("me")
    sam = make_user("sam")
    popular = make_user("samantha")
    make_user("sammy")
    make_user("samuel")
    fans = [make_user(f"fan{i}") for i in range(3)]
    for i, fan in enumerate(fans):
        follow(fan, popular)
        if i:
            follow(fan, User.objects.get(username="samuel"))
    assert names(api.as_(me).get(URL, {"q": "sam"})) == ["sam", "samantha", "samuel", "sammy"]
    assert names(api.as_(me).get(URL, {"q": "SAMMY"}))[0] == "sammy"
    assert sam.pk  # the exact match wins with no followers at all


def test_like_wildcards_in_q_are_plain_characters(api, make_user):
    me = make_user("me")
    make_user("a_b")
    make_user("axb", display_name="a%c")
    make_user("abc")
    client = api.as_(me)
    # Words are letters and digits: "a_" and "a%" look for a word starting with "a"; the username
    # that starts with the text itself ranks first, then the rest by id.
    assert names(client.get(URL, {"q": "a_"})) == ["a_b", "axb", "abc"]
    assert names(client.get(URL, {"q": "a%"})) == ["a_b", "axb", "abc"]
    assert names(client.get(URL, {"q": "%"})) == []
    assert names(client.get(URL, {"q": "_%_"})) == []


def test_inactive_users_are_never_found_or_suggested(api, make_user):
    me = make_user("me")
    friend = make_user("friend")
    gone = make_user("gonzo", is_active=False)
    follow(me, friend)
    Follow.objects.create(follower=friend, followee=gone)
    assert names(api.as_(me).get(URL, {"q": "gon"})) == []
    assert "gonzo" not in names(api.as_(me).get(URL, {"suggested": "1"}))


def test_search_returns_at_most_20(api, make_user):
    me = make_user("me")
    for i in range(25):
        make_user(f"many{i:02d}")
    assert len(names(api.as_(me).get(URL, {"q": "many"}))) == 20


# --- suggestions ------------------------------------------------------------------------------

def test_suggestions_friends_of_friends_by_how_many_then_most_followed(api, make_user):
    me = make_user("me")
    f1, f2, f3 = make_user("f1"), make_user("f2"), make_user("f3")
    x, y, z = make_user("xena"), make_user("yann"), make_user("zoe")
    star = make_user("star")
    crowd = [make_user(f"crowd{i}") for i in range(7)]
    follow(me, f1, f2, f3)
    follow(f1, x, y, z, f2, me)   # f2: already followed; me: never myself
    follow(f2, x, y)
    follow(f3, x)
    for person in crowd:
        follow(person, star)
    follow(crowd[0], crowd[1])
    result = names(api.as_(me).get(URL, {"suggested": "1"}))
    assert result[:5] == ["xena", "yann", "zoe", "star", "crowd1"]
    assert "me" not in result and not {"f1", "f2", "f3"} & set(result)
    assert len(result) == 10  # then the rest by follower count and username, up to 10
    items = api.as_(me).get(URL, {"suggested": "true"}).json()["results"]
    assert items[0] == {"username": "xena", "display_name": "", "follower_count": 3, "followed_by_me": False,
                        "url": "/u/xena/", "avatar": None}


def test_suggestions_for_someone_who_follows_nobody_are_the_most_followed(api, alice, bob, carol, make_user):
    dave = make_user("dave")
    follow(bob, carol)
    follow(dave, carol)
    follow(dave, bob)
    assert names(api.as_(alice).get(URL, {"suggested": "1"})) == ["carol", "bob", "dave"]
    assert names(api.as_(carol).get(URL, {"suggested": "1"})) == ["bob", "alice", "dave"]
    assert queries.suggested_users(alice, 2) == [carol, bob]


def test_nobody_to_suggest(api, alice):
    assert names(api.as_(alice).get(URL, {"suggested": "1"})) == []


# --- refusals ---------------------------------------------------------------------------------

@pytest.mark.parametrize("params", [{"q": "a"}, {"suggested": "1"}])
def test_finding_people_needs_a_logged_in_caller(api, alice, params):
    r = api.get(URL, params)
    assert r.status_code == 401
    assert r.json() == {"detail": "Authentication credentials were not provided."}


@pytest.mark.parametrize("params, message", [
    ({}, "Give q (the start of a username or display name) or suggested=1."),
    ({"suggested": "false"}, "Give q (the start of a username or display name) or suggested=1."),
    ({"q": "a", "suggested": "1"}, "Give either q (to search) or suggested=1, not both."),
    ({"q": "", "suggested": "1"}, None),
    ({"q": ""}, "Give q (the start of a username or display name) or suggested=1."),
    ({"q": "   "}, "q: Type 1 to 30 characters to search for."),
    ({"q": "x" * 31}, "q: Search for at most 30 characters."),
    ({"suggested": "maybe"}, "suggested: Must be a valid boolean."),
])
def test_bad_queries_are_400_with_the_json_error_shape(api, alice, params, message):
    r = api.as_(alice).get(URL, params)
    assert r.status_code == 400
    data = r.json()
    assert isinstance(data["detail"], str) and data["detail"]
    if message:
        assert data["detail"] == message


def test_thirty_characters_with_spaces_around_are_fine(api, alice):
    assert api.as_(alice).get(URL, {"q": "  " + "x" * 30 + "  "}).status_code == 200


def test_signup_on_the_same_path_is_unchanged(api, alice):
    r = api.as_(alice).post(URL, {"username": "newbie", "password": "a-fine-password-1"}, format="json")
    assert r.status_code == 201 and r.json()["username"] == "newbie"
    r = api.post(URL, {"username": "newbie2", "password": "a-fine-password-2"}, format="json")
    assert r.status_code == 201


def test_signup_alone_is_throttled(api, alice, settings, monkeypatch):
    from config import throttles

    monkeypatch.setattr(throttles.SignupThrottle, "THROTTLE_RATES", {"signup": "1/min"})
    assert api.post(URL, {"username": "one", "password": "a-fine-password-1"}, format="json").status_code == 201
    assert api.post(URL, {"username": "two", "password": "a-fine-password-1"}, format="json").status_code == 429
    client = api.as_(alice)
    for _ in range(3):
        assert client.get(URL, {"q": "one"}).status_code == 200  # searching is not signing up


# --- cost ----------------------------------------------------------------------------------------

def _queries_for(client, params) -> int:
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(URL, params).status_code == 200
    return len(ctx)


def test_the_number_of_queries_does_not_grow_with_the_results(api, make_user, django_assert_max_num_queries):
    me = make_user("me")
    friends = [make_user(f"friend{i}") for i in range(3)]
    follow(me, *friends)
    client = api.as_(me)
    counts = []
    for size in (2, 12):
        while User.objects.filter(username__startswith="match").count() < size:
            n = User.objects.filter(username__startswith="match").count()
            person = make_user(f"match{n}", display_name=f"Match {n}")
            follow(friends[n % 3], person)
            follow(me, person) if n % 4 == 0 else None
        with django_assert_max_num_queries(5):  # the token; exact, followed, by username, by display name
            counts.append(_queries_for(client, {"q": "match"}))
        with django_assert_max_num_queries(4):  # the token, friends of friends, the most followed, anyone
            counts.append(_queries_for(client, {"suggested": "1"}))
    assert counts[:2] == counts[2:]


# --- pages -------------------------------------------------------------------------------------

def test_navbar_has_a_labelled_search_form(client, alice):
    client.force_login(alice)
    html = client.get("/").content.decode()
    assert '<form class="nav-search" method="get" action="/people/" role="search" aria-label="Quick search">' in html
    assert '<label for="nav-search-q" class="sr-only">Search people and posts</label>' in html
    assert '<input type="search" id="nav-search-q" name="q"' in html
    assert 'href="/static/feed/discovery.css"' in html


def test_search_page_lists_matches_with_follow_buttons(client, alice, bob, make_user):
    make_user("bobcat", display_name="<b>Cat</b>")
    follow(alice, bob)
    client.force_login(alice)
    r = client.get("/people/", {"q": "bob"})
    assert r.status_code == 200
    html = r.content.decode()
    assert 'href="/u/bob/"' in html and 'href="/u/bobcat/"' in html
    assert "&lt;b&gt;Cat&lt;/b&gt;" in html and "<b>Cat</b>" not in html
    assert 'action="/u/bobcat/follow/"' in html and 'aria-label="Follow &lt;b&gt;Cat&lt;/b&gt;"' in html
    assert 'aria-label="Unfollow Bob"' in html
    assert 'name="next" value="/people/?q=bob"' in html
    assert 'value="bob"' in html  # the search box keeps the text


def test_following_from_the_search_page_comes_back_to_it(client, alice, bob):
    client.force_login(alice)
    r = client.post("/u/bob/follow/", {"next": "/people/?q=bo"})
    assert r.status_code == 302 and r["Location"] == "/people/?q=bo"
    assert queries.is_following(alice, bob)


def test_search_page_without_results_or_with_too_long_text(client, alice):
    client.force_login(alice)
    assert "starts with “zzz”" in client.get("/people/", {"q": "zzz"}).content.decode()
    r = client.get("/people/", {"q": "x" * 101})  # the page searches posts too: longer text
    assert r.status_code == 200 and "Search for at most 100 characters." in r.content.decode()
    assert client.get("/people/").status_code == 200


def test_search_page_needs_login(client):
    r = client.get("/people/", {"q": "a"})
    assert r.status_code == 302 and r["Location"].startswith("/accounts/login/")


def test_who_to_follow_on_a_short_home_feed_and_not_on_a_long_one(client, alice, bob, carol):
    client.force_login(alice)
    html = client.get("/").content.decode()
    assert "Who to follow" in html and 'href="/u/bob/"' in html and 'href="/u/carol/"' in html
    assert '<a href="/people/">find people to follow</a>' in html
    follow(alice, bob)
    for i in range(5):
        services.create_post(bob, f"post {i}")
    html = client.get("/").content.decode()
    assert "Who to follow" not in html


def test_who_to_follow_on_profiles_leaves_out_the_profile_and_whom_you_follow(client, alice, bob, carol, make_user):
    make_user("dave")
    follow(alice, carol)
    client.force_login(alice)
    html = client.get("/u/bob/").content.decode()
    box = html[html.index("Who to follow"):]
    assert 'href="/u/dave/"' in box and 'href="/u/bob/"' not in box and 'href="/u/carol/"' not in box


def test_visitors_see_no_who_to_follow(client, bob, carol):
    assert "Who to follow" not in client.get("/u/bob/").content.decode()


# --- the index (PostgreSQL) -----------------------------------------------------------------------

FILL_USERS = """
INSERT INTO feed_user (password, is_superuser, username, first_name, last_name, email, is_staff, is_active,
                       date_joined, display_name, bio)
SELECT '!', false, 'user' || n, '', '', '', false, true, now(), 'Person ' || md5(n::text), ''
FROM generate_series(1, %s) AS n
"""


def _plans(fn) -> list[str]:
    """EXPLAIN of every query fn() runs."""
    with CaptureQueriesContext(connection) as ctx:
        fn()
    plans = []
    with connection.cursor() as cursor:
        for query in ctx.captured_queries:
            cursor.execute("EXPLAIN " + query["sql"])
            plans.append("\n".join(row[0] for row in cursor.fetchall()))
    return plans


@pytest.mark.skipif(connection.vendor != "postgresql", reason="expression indexes: PostgreSQL")
def test_search_uses_the_indexes_on_postgresql(make_user):
    me = make_user("me")
    with connection.cursor() as cursor:
        cursor.execute(FILL_USERS, [50_000])
        # One user in three has followers (stored counts), as if followed in bulk and recounted.
        cursor.execute("INSERT INTO feed_userstats (user_id, follower_count)"
                       " SELECT id, 1 + id % 997 FROM feed_user WHERE id % 3 = 0")
        cursor.execute("ANALYZE feed_user")
        cursor.execute("ANALYZE feed_userstats")
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE tablename = 'feed_user'")
        indexes = " ".join(row[0] for row in cursor.fetchall())
    assert "lower((username)::text) text_pattern_ops" in indexes
    assert "lower((display_name)::text) text_pattern_ops" in indexes
    # Rare prefixes (a few hundred rows of 50,000 or fewer) and common ones (user1: 11,111; u: all):
    # no part of the search reads the whole user table.
    for q in ("user123", "USER4567", "Person 0a", "person 7f3", "user1", "u"):
        for plan in _plans(lambda: queries.search_users(me, q)):
            assert not re.search(r"Seq Scan on feed_user\b", plan), (q, plan)
    assert any("feed_user_search_idx" in p for p in _plans(lambda: queries.search_users(me, "Person 0a")))
    assert [u.username for u in queries.search_users(me, "user12345")] == ["user12345"]
    top = queries.search_users(me, "u")
    assert [u.follower_count for u in top] == sorted((u.follower_count for u in top), reverse=True)
    assert top[0].follower_count == 997
    # Finding one user by name in any case (log-in, profiles, follows): an index on lower(username).
    plan = User.objects.named("USER4567").explain()
    assert not re.search(r"Seq Scan on feed_user\b", plan) and "Index Cond: (lower((username)::text) =" in plan, plan
    assert User.objects.get_by_natural_key("USER4567").username == "user4567"


def test_a_handle_is_found_as_written_and_results_are_not_repeated_below(api, client, make_user):
    me = make_user("me")
    make_user("alice", display_name="Alice Archer")
    assert names(api.as_(me).get(URL, {"q": "@ALI"})) == ["alice"]
    assert names(api.as_(me).get(URL, {"q": "@"})) == []
    client.force_login(me)
    html = client.get("/people/", {"q": "@alice"}).content.decode()
    assert html.count('data-username="alice"') == 1  # in the results, not again in "who to follow"
    assert "Who to follow" in client.get("/people/", {"q": "nobody"}).content.decode()
