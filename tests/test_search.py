"""Search (feed.search, migration 0005): people by any word of their name, posts by their words,
GET /api/search/ and the search page's People / Posts tabs, on SQLite (FTS5 tables kept by
triggers) and PostgreSQL (text search with GIN indexes) alike."""
import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from feed import search, services
from feed.models import Post, User

pytestmark = pytest.mark.django_db

URL = "/api/search/"


def people(viewer, q, **kwargs) -> list[str]:
    return [u.username for u in search.people(viewer, q, **kwargs).items]


def posts(viewer, q, **kwargs) -> list[str]:
    return [p.text for p in search.posts(viewer, q, **kwargs).items]


def results(response) -> list:
    assert response.status_code == 200, response.content
    return response.json()["results"]


def fts_intact():
    """SQLite: FTS5's own check that each index holds exactly the rows of its table (a no-op on
    PostgreSQL, whose generated column and expression index cannot drift)."""
    if connection.vendor != "sqlite":
        return
    with connection.cursor() as cursor:
        for table in ("feed_user_fts", "feed_post_fts"):
            cursor.execute(f"INSERT INTO {table} ({table}, rank) VALUES ('integrity-check', 1)")


@pytest.fixture
def me(make_user):
    return make_user("me")


# --- people ------------------------------------------------------------------------------------

def test_people_by_surname_middle_word_and_username_prefix(me, make_user):
    make_user("ana_s", display_name="Ana María Smith")
    make_user("mjordan", display_name="Michael Jeffrey Jordan")
    make_user("bob", display_name="Bob")
    assert people(me, "smith") == ["ana_s"]  # the surname
    assert people(me, "jeff") == ["mjordan"]  # a middle name, its start
    assert people(me, "mjor") == ["mjordan"]  # the start of the username
    assert people(me, "maría smi") == ["ana_s"]  # every word, the last one still being typed
    assert people(me, "smith bob") == []  # every word must match
    assert people(me, "ith") == []  # inside a word is not the start of one
    assert people(me, "JORDAN") == ["mjordan"]
    assert people(me, "s") == ["ana_s"]  # "ana_s": a username's words are split at "_" too


def test_people_accents_fold_both_ways(me, make_user):
    make_user("zoe", display_name="Zoë Ångström")
    make_user("jose", display_name="Jose Garcia")
    assert people(me, "angstrom") == ["zoe"]
    assert people(me, "zoë") == ["zoe"]
    assert people(me, "garcía") == ["jose"]


def test_people_ranking_exact_username_then_username_prefix_then_most_followed(me, make_user):
    plain = make_user("lee_plain", display_name="Lee Plain")  # username starts with "lee"
    star = make_user("starlee", display_name="Star Lee")  # a word, not the username's start
    popular = make_user("pop", display_name="Lee Popular")
    exact = make_user("lee")
    fans = [make_user(f"fan{i}") for i in range(3)]
    for fan in fans:
        services.follow(fan, popular.username)
    services.follow(fans[0], star.username)
    services.follow(fans[0], plain.username)
    services.follow(fans[1], plain.username)
    # exact; then username starts with "lee" (followed first); then the rest, most followed first
    assert people(me, "lee") == ["lee", "lee_plain", "pop", "starlee"]
    assert people(me, "@LEE") == ["lee", "lee_plain", "pop", "starlee"]  # as handles are written
    assert exact.pk and plain.pk


def test_people_ties_go_by_account_age_and_inactive_accounts_are_never_found(me, make_user):
    for name in ("kim_c", "kim_a", "kim_b"):
        make_user(name)
    make_user("kim_gone", is_active=False)
    assert people(me, "kim") == ["kim_c", "kim_a", "kim_b"]


# --- posts -------------------------------------------------------------------------------------

@pytest.fixture
def texts(alice):
    made = {}
    for text in ("Pizza in Napoli is the best pizza", "I had pizza yesterday", "Napoleon was short",
                 "Café au lait, s'il vous plaît", "Big red dog", "The dog is big and red"):
        made[text] = services.create_post(alice, text)
    return made


def test_posts_by_words_prefix_phrase_and_exclusion(me, texts):
    assert set(posts(me, "pizza")) == {"Pizza in Napoli is the best pizza", "I had pizza yesterday"}
    assert set(posts(me, "napo")) == {"Pizza in Napoli is the best pizza", "Napoleon was short"}  # typing
    assert posts(me, "pizza napo") == ["Pizza in Napoli is the best pizza"]  # every word
    assert posts(me, "napo pizza") == []  # only the last word is a prefix
    assert posts(me, "pizza -napoli") == ["I had pizza yesterday"]
    assert posts(me, '"big red"') == ["Big red dog"]  # a phrase: together, in order
    assert set(posts(me, "red big")) == {"Big red dog", "The dog is big and red"}
    assert posts(me, "CAFE") == ["Café au lait, s'il vous plaît"]  # case and accents fold
    assert posts(me, "plait") == ["Café au lait, s'il vous plaît"]
    assert posts(me, "izza") == []  # the inside of a word is not the start of one
    for nothing in ("-pizza", '""', "!!!", "-"):
        assert posts(me, nothing) == []  # nothing to look for: no results (not every post)


def test_posts_most_relevant_first_then_newest(me, alice):
    once_old = services.create_post(alice, "tea time")
    twice = services.create_post(alice, "tea, more tea, always tea at tea time")
    once_new = services.create_post(alice, "tea time")
    found = [p.pk for p in search.posts(me, "tea").items]
    assert found[0] == twice.pk  # the word more often: more relevant
    assert found[1:] == [once_new.pk, once_old.pk]  # equally relevant: the newest first


def test_deleted_posts_never_appear_and_edited_text_is_found_by_its_new_words(me, alice, texts):
    post = texts["Big red dog"]
    Post.objects.filter(pk=post.pk).update(text="Small blue cat")  # an edit (admin) changes the text
    assert posts(me, "cat") == ["Small blue cat"]
    assert posts(me, '"big red"') == []
    services.delete_post(alice, post.pk)
    assert posts(me, "cat") == [] and posts(me, "small") == []
    fts_intact()


def test_renamed_and_deleted_people_leave_the_index(me, make_user):
    user = make_user("rename_me", display_name="Old Name")
    user.display_name = "Fresh Name"
    user.save()
    assert people(me, "old") == [] and people(me, "fresh") == ["rename_me"]
    User.objects.filter(pk=user.pk).update(username="renamed")
    assert people(me, "rename") == ["renamed"] and people(me, "rename_me") == []
    user.delete()
    assert people(me, "fresh") == []
    fts_intact()


@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's FTS5 tables and their triggers")
def test_sqlite_triggers_keep_the_fts_tables_in_step(alice):
    def indexed(table, word):
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT rowid FROM {table} WHERE {table} MATCH %s", [word])
            return [row[0] for row in cursor.fetchall()]

    post = services.create_post(alice, "walrus")
    assert indexed("feed_post_fts", "walrus") == [post.pk]  # insert
    Post.objects.filter(pk=post.pk).update(text="narwhal")
    assert indexed("feed_post_fts", "walrus") == [] and indexed("feed_post_fts", "narwhal") == [post.pk]  # update
    Post.objects.filter(pk=post.pk).update(live_seq=5)  # other columns: the index is not touched
    assert indexed("feed_post_fts", "narwhal") == [post.pk]
    Post.objects.filter(pk=post.pk).delete()
    assert indexed("feed_post_fts", "narwhal") == []  # delete
    assert indexed("feed_user_fts", "alice") == [alice.pk]
    fts_intact()


def test_post_pages_have_no_duplicates_and_end(me, alice, bob):
    made = {services.create_post(alice if i % 2 else bob, f"otter {'otter ' * (i % 3)}number {i}").pk
            for i in range(45)}
    seen, after, sizes = [], None, []
    while True:
        page = search.posts(me, "otter", after=after, size=20)
        seen += [p.pk for p in page.items]
        sizes.append(len(page.items))
        if page.next_cursor is None:
            break
        after = search.decode_cursor(page.next_cursor)
    assert sizes == [20, 20, 5]
    assert len(seen) == len(set(seen)) and set(seen) == made


def test_people_pages_have_no_duplicates_across_ties(me, make_user):
    made = {make_user(f"walker{i:02d}", display_name="Sam Walker").pk for i in range(25)}
    fan = make_user("fan")
    for i in (3, 7, 11):
        services.follow(fan, f"walker{i:02d}")
    first = search.people(me, "walker", size=10)
    assert [u.username for u in first.items][:3] == ["walker03", "walker07", "walker11"]
    seen, page = [], first
    while True:
        seen += [u.pk for u in page.items]
        if page.next_cursor is None:
            break
        page = search.people(me, "walker", after=search.decode_cursor(page.next_cursor), size=10)
    assert len(seen) == len(set(seen)) == 25 and set(seen) == made


# --- the API -----------------------------------------------------------------------------------

def test_api_people_and_posts_pages(api, me, alice, bob):
    services.follow(me, "bob")
    post = services.create_post(bob, "Herons at dawn")
    client = api.as_(me)
    data = client.get(URL, {"q": "bo"}).json()  # type=people by default
    assert data == {"next": None, "previous": None, "results": [{
        "username": "bob", "display_name": "Bob", "follower_count": 1, "followed_by_me": True, "url": "/u/bob/", "avatar": None}]}
    items = results(client.get(URL, {"q": "heron", "type": "posts"}))
    assert [(i["id"], i["text"], i["author"]["username"], i["url"]) for i in items] == [
        (post.pk, "Herons at dawn", "bob", f"/posts/{post.pk}/")]
    assert set(items[0]) >= {"comment_count", "like_count", "liked", "created_at"}


def test_api_follows_next_links_to_the_end(api, me, alice):
    for i in range(5):
        services.create_post(alice, f"kestrel {i}")
    client = api.as_(me)
    response = client.get(URL, {"q": "kestrel", "type": "posts", "page_size": 2})
    texts = []
    while True:
        data = response.json()
        texts += [item["text"] for item in data["results"]]
        if not data["next"]:
            break
        assert "type=posts" in data["next"] and "page_size=2" in data["next"]
        response = client.get(data["next"])
    assert sorted(texts) == [f"kestrel {i}" for i in range(5)]


@pytest.mark.parametrize("params, message", [
    ({}, "q: Give q, the text to search for."),
    ({"q": ""}, "q: Type 1 to 100 characters to search for."),
    ({"q": "   "}, "q: Type 1 to 100 characters to search for."),
    ({"q": "x" * 101}, "q: Search for at most 100 characters."),
    ({"q": "a", "type": "comments"}, "type: type must be people or posts."),
    ({"q": "a", "cursor": "abc"}, f"cursor: {search.INVALID_CURSOR}"),
    ({"q": "a", "cursor": "1.2"}, f"cursor: {search.INVALID_CURSOR}"),
    ({"q": "a", "page_size": "0"}, "page_size: A whole number from 1 to 100."),
    ({"q": "a", "page_size": "x"}, "page_size: A whole number from 1 to 100."),
])
def test_api_bad_input_is_a_400_that_says_why(api, me, params, message):
    response = api.as_(me).get(URL, params)
    assert response.status_code == 400
    assert response.json()["detail"] == message


def test_api_any_well_formed_cursor_is_a_position_and_spaces_around_q_do_not_count(api, me, alice):
    services.create_post(alice, "plover")
    client = api.as_(me)
    assert results(client.get(URL, {"q": "plover", "type": "posts", "cursor": "2.-5.7"})) == []  # past the end
    assert len(results(client.get(URL, {"q": "  plover  ", "type": "posts", "cursor": "-1.0.0"}))) == 1
    assert results(client.get(URL, {"q": "  " + "x" * 100 + "  "})) == []


def test_api_needs_a_logged_in_caller(api):
    assert api.get(URL, {"q": "a"}).status_code == 401


def test_api_queries_do_not_grow_with_the_page(api, me, alice, django_assert_max_num_queries):
    client = api.as_(me)
    for n in (1, 15):
        while Post.objects.count() < n:
            services.create_post(alice, f"@me curlew {Post.objects.count()}")
        with django_assert_max_num_queries(5):  # the token, (PostgreSQL: the last id), the keys, the posts, mentions
            assert len(results(client.get(URL, {"q": "curlew", "type": "posts"}))) == n
        with django_assert_max_num_queries(4):  # the token, by username, by words, the people
            results(client.get(URL, {"q": "alice"}))


def test_the_schema_documents_the_endpoint(api, me):
    schema = api.as_(me).get("/api/schema/", HTTP_ACCEPT="application/json").json()
    operation = schema["paths"]["/api/search/"]["get"]
    parameters = {p["name"]: p for p in operation["parameters"]}
    assert set(parameters) >= {"q", "type", "cursor", "page_size"}
    assert parameters["type"]["schema"]["enum"] == ["people", "posts"]
    assert parameters["cursor"]["schema"]["pattern"] == search.CURSOR_PATTERN
    assert "SearchPage" in str(operation["responses"]["200"])


# --- the page ----------------------------------------------------------------------------------

def test_search_page_tabs_are_links_with_aria_current(client, alice, bob):
    services.create_post(bob, "Bob's <b>bold</b> bobsled")
    client.force_login(alice)
    html = client.get("/people/", {"q": "bob"}).content.decode()
    assert '<a href="?q=bob&amp;type=people" aria-current="page">People</a>' in html
    assert '<a href="?q=bob&amp;type=posts">Posts</a>' in html
    assert 'data-username="bob"' in html and "bobsled" not in html
    html = client.get("/people/", {"q": "bob", "type": "posts"}).content.decode()
    assert '<a href="?q=bob&amp;type=posts" aria-current="page">Posts</a>' in html
    assert '<input type="hidden" name="type" value="posts">' in html  # searching again stays on the tab
    assert "&lt;b&gt;bold&lt;/b&gt; bobsled" in html and "<b>bold</b>" not in html
    assert 'data-username="bob"' not in html and "Who to follow" not in html
    assert "No post has the words “zzz”." in client.get("/people/", {"q": "zzz", "type": "posts"}).content.decode()


def test_search_page_more_results_link(client, alice):
    for i in range(25):
        services.create_post(alice, f"puffin {i}")
    client.force_login(alice)
    html = client.get("/people/", {"q": "puffin", "type": "posts"}).content.decode()
    assert html.count('class="card post"') == 20
    link = re.search(r'href="(\?q=puffin&amp;type=posts&amp;cursor=[-0-9.]+)">More results</a>', html).group(1)
    html = client.get("/people/" + link.replace("&amp;", "&")).content.decode()
    assert html.count('class="card post"') == 5 and "More results" not in html
    assert client.get("/people/", {"q": "puffin", "type": "posts", "cursor": "junk"}).status_code == 200


# --- PostgreSQL plans ----------------------------------------------------------------------------

@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's GIN index on posts")
def test_post_search_uses_the_gin_index_on_postgresql(me, alice):
    with connection.cursor() as cursor:
        cursor.execute("INSERT INTO feed_post (author_id, text, created_at, live_seq)"
                       " SELECT %s, 'common words ' || md5(n::text), now(), 0 FROM generate_series(1, 20000) n",
                       [alice.pk])
        # What autovacuum does after a bulk load: GIN's pending list of new entries (fastupdate)
        # goes into the index proper, and the planner's statistics are made.
        cursor.execute("SELECT gin_clean_pending_list('feed_post_search_idx')")
        cursor.execute("ANALYZE feed_post")
    services.create_post(alice, "one rare bittern")
    with CaptureQueriesContext(connection) as ctx:
        # Quoted, the word is a whole word, which the planner knows to be rare from the column's
        # statistics; a prefix it guesses at 2% of the rows, too many for an index at this size
        # (bench/search.py shows the plans at 1,000,000 posts).
        assert posts(me, '"bittern"') == ["one rare bittern"]
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + next(q["sql"] for q in ctx.captured_queries if "search_vector" in q["sql"]))
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "feed_post_search_idx" in plan and not re.search(r"Seq Scan on feed_post\b", plan), plan


def test_the_search_text_is_read_once_the_same_way_for_both_databases():
    Q = search.Query
    assert search.parse('  "Big red" e-mail -Spam napo ') == Q(
        phrases=(("big", "red"), ("e",), ("mail",)), excluded=("spam",), prefixes=("napo",))
    assert search.parse("pizza!") == Q(phrases=(("pizza",),))  # ends with punctuation: a whole word
    assert search.parse("x'; DROP TABLE feed_post; --") == Q(
        phrases=(("x",), ("drop",), ("table",), ("feed",), ("post",)))  # only letters and digits reach SQL
    assert search.parse("& | ! :* _").empty and search.parse("-only -excluded").empty


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL asks the newest posts first")
def test_asking_the_newest_posts_first_gives_the_same_pages(me, alice, monkeypatch):
    for i in range(40):
        services.create_post(alice, f"wren {'often ' if i % 2 else ''}{'seldom' if i % 13 == 0 else ''} {i}")
    monkeypatch.setattr(search, "POST_CANDIDATES", 6)

    def pages(q):
        found, after = [], None
        while True:
            page = search.posts(me, q, after=after, size=4)
            found += [p.pk for p in page.items]
            if page.next_cursor is None:
                return found
            after = search.decode_cursor(page.next_cursor)

    for q in ("wren", "often", "seldom", "wren -often"):
        monkeypatch.setattr(search, "RECENT_POSTS", 10**9)  # every post at once
        everything = pages(q)
        monkeypatch.setattr(search, "RECENT_POSTS", 10)  # the newest 10 first ("seldom": too few there)
        with CaptureQueriesContext(connection) as ctx:
            assert pages(q) == everything, q
        assert any("p.id >" in query["sql"] for query in ctx.captured_queries)
        assert len(everything) == min(6, Post.objects.filter(text__contains=q.split()[0]).count()
                                      - (Post.objects.filter(text__contains="often").count() if "-" in q else 0))


def test_the_migration_reverses_and_indexes_the_rows_that_exist(me, alice):
    """feed 0007 backwards then forwards (inside this test's transaction, rolled back after): the
    search objects go, and come back holding rows written while they were away."""
    import importlib

    migration = importlib.import_module("feed.migrations.0007_search")

    class Editor:  # what the migration's functions use of a schema editor
        def __init__(self):
            self.connection = connection

        def execute(self, sql, params=None):
            with connection.cursor() as cursor:
                if connection.vendor == "postgresql":  # the rows' deferred key checks first, as a
                    cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # commit before migrating would
                cursor.execute(sql, params)

    def search_objects() -> int:
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute("SELECT COUNT(*) FROM pg_indexes WHERE indexname LIKE 'feed_%%_search_idx'")
                indexes = cursor.fetchone()[0]
                cursor.execute("SELECT COUNT(*) FROM information_schema.columns WHERE column_name = 'search_vector'")
                return indexes + cursor.fetchone()[0]
            cursor.execute("SELECT COUNT(*) FROM sqlite_master WHERE name LIKE 'feed_%%_fts%%'")
            return cursor.fetchone()[0]

    services.create_post(alice, "a heron from before")
    assert search_objects() > 0
    migration.backward(None, Editor())
    assert search_objects() == 0
    services.create_post(alice, "a heron while nothing indexed")
    alice.display_name = "Alice Heronsdóttir"
    alice.save()
    migration.forward(None, Editor())
    assert set(posts(me, "heron")) == {"a heron from before", "a heron while nothing indexed"}
    assert people(me, "heronsdottir") == ["alice"]
    fts_intact()
