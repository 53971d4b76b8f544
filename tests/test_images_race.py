"""Avatar changes racing each other and the account's own writes, each in its own thread and
connection (PostgreSQL row locks; on SQLite a file copy of the test database, as test_races)."""
import pytest

from feed import media, services
from feed.models import Post, User

from .pictures import picture, upload
from .test_images_api import stored
from .test_races import file_backed_sqlite, race  # noqa: F401  (the fixture: SQLite writers wait, not fail)


@pytest.mark.django_db(transaction=True)
def test_concurrent_avatar_changes_leave_exactly_the_last_ones_files(media_root):
    """Five changes of one account's avatar at once, and its posts meanwhile: each change deletes
    exactly the files the one before it left, so the account ends with one avatar's three files."""
    alice = User.objects.create_user("alice", password="x-very-long-pass")
    pictures = [picture(60 + i, 60, color=(i * 40, 10, 10)) for i in range(5)]

    def changer(i):
        return lambda _round: services.set_avatar(User.objects.get(pk=alice.pk), upload(pictures[i]))

    jobs = {f"avatar{i}": changer(i) for i in range(5)}
    jobs["poster"] = lambda r: services.create_post(User.objects.get(pk=alice.pk), f"post {r}").pk
    race(jobs, rounds=3)
    alice.refresh_from_db()
    assert alice.avatar
    assert stored(media_root) == set(media.avatar_names(alice.avatar))
    assert Post.objects.filter(author=alice).count() == 3
