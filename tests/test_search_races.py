"""Search indexes under concurrent writes: posts made, edited and deleted and people renamed in
threads at once (each thread on its own connection, as in test_races), after which search finds
exactly the rows that exist, by their current words. On SQLite the FTS5 tables are kept by
triggers inside each writer's transaction; FTS5's integrity check then compares them with the
tables. On PostgreSQL the vector is a generated column and an expression index: nothing can drift,
and the same checks hold."""
import pytest

from feed import search, services
from feed.models import Post, User

from .test_races import file_backed_sqlite, race  # noqa: F401 - the fixture runs this module on a file
from .test_search import fts_intact

pytestmark = pytest.mark.django_db(transaction=True)

ROUNDS = 6


def test_posts_and_names_written_at_once_are_found_exactly():
    authors = [User.objects.create_user(f"writer{i}", display_name=f"Writer {i}") for i in range(3)]
    viewer = User.objects.create_user("reader")
    doomed = [services.create_post(authors[0], f"heron doomed {i}").pk for i in range(ROUNDS)]
    edited = [services.create_post(authors[1], f"heron draft {i}").pk for i in range(ROUNDS)]

    def post(r):
        return services.create_post(authors[2], f"heron new {r}").pk

    def delete(r):
        services.delete_post(authors[0], doomed[r])

    def edit(r):
        Post.objects.filter(pk=edited[r]).update(text=f"egret final {r}")

    def rename(r):
        User.objects.filter(pk=authors[r % 3].pk).update(display_name=f"Renamed {r}")

    made = race({"post": post, "delete": delete, "edit": edit, "rename": rename}, rounds=ROUNDS)

    def all_pages(find, q):
        found, after = [], None
        while True:
            page = find(viewer, q, after=after, size=5)
            found += [item.pk for item in page.items]
            if page.next_cursor is None:
                return found
            after = search.decode_cursor(page.next_cursor)

    assert sorted(all_pages(search.posts, "heron")) == sorted(made["post"])
    assert sorted(all_pages(search.posts, "egret final")) == sorted(edited)
    assert all_pages(search.posts, "draft") == [] and all_pages(search.posts, "doomed") == []
    last = {r % 3: r for r in range(ROUNDS)}
    assert sorted(all_pages(search.people, "renamed")) == sorted(a.pk for a in authors)
    for index, r in last.items():
        assert all_pages(search.people, f"renamed {r}") == [authors[index].pk]
    fts_intact()
