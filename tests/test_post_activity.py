"""What a post's public topic carries (feed.live): comments, removals and counts, after commit,
and the home feed's "newer" cards for the new-posts button."""
import pytest
from django.db import transaction

from feed import services
from feed.models import Post
from notifier.push.publisher import PublishError
from notifier.topics import post_comments_topic

pytestmark = pytest.mark.django_db


def post_messages(publisher, post):
    return publisher.messages(topic=post_comments_topic(post.pk))


def test_a_comment_is_published_to_the_post_topic_after_commit(alice, bob, memory_publisher, on_commit):
    post = services.create_post(alice, "hello")
    services.like(bob, post.pk)
    memory_publisher.reset()
    with on_commit() as callbacks:
        comment = services.add_comment(bob, post.pk, "<b>hi</b> @alice")
        assert post_messages(memory_publisher, post) == []  # nothing before the commit
    assert callbacks
    [message] = post_messages(memory_publisher, post)
    assert message == {
        "v": 1, "type": "comment", "post": post.pk, "seq": 2,  # the like was 1
        "comment": {"id": comment.pk, "parent": None, "author": {"username": "bob", "display_name": "Bob", "avatar": None},
                    "text": "<b>hi</b> @alice",
                    "mentions": ["alice"], "created_at": comment.created_at.isoformat(),
                    "url": f"/posts/{post.pk}/#comment-{comment.pk}"},
        "comment_count": 1, "like_count": 1,
    }
    post.refresh_from_db()
    assert post.live_seq == 2


def test_a_comment_reads_and_writes_the_feed_tables_once_each_before_its_commit(alice, bob, carol, on_commit):
    """The statements before a comment's commit are what its push waits for: the post is locked
    once and bumped once (seq and counts in one statement), who follows it (the commenter's own
    row included) is one read, and mentions are not read back for the live message."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from feed.models import PostFollow

    post = services.create_post(alice, "hello")
    services.add_comment(bob, post.pk, "first")
    with on_commit(), CaptureQueriesContext(connection) as queries:
        services.add_comment(bob, post.pk, "again, @carol")
    sql = [q["sql"] for q in queries.captured_queries]
    assert len([s for s in sql if '"feed_postfollow"' in s]) == 1
    assert len([s for s in sql if s.startswith('UPDATE "feed_post" ') or 'FROM "feed_post" ' in s]) == 2
    assert not [s for s in sql if "feed_comment_mentions" in s and s.startswith("SELECT")]
    # A first comment follows the post (one more statement); an explicit unfollow stays.
    with on_commit():
        services.add_comment(carol, post.pk, "me too")
    assert PostFollow.objects.get(post=post, user=carol).following
    services.follow_post(carol, post.pk, following=False)
    with on_commit():
        services.add_comment(carol, post.pk, "still here")
    assert not PostFollow.objects.get(post=post, user=carol).following


def test_likes_unlikes_and_removed_comments_publish_counts(alice, bob, carol, memory_publisher, on_commit):
    post = services.create_post(alice, "hello")
    with on_commit():
        comment = services.add_comment(carol, post.pk, "first")
        services.add_comment(bob, post.pk, "second")
    memory_publisher.reset()
    with on_commit():
        assert services.like(bob, post.pk)
        assert not services.like(bob, post.pk)  # liking twice is one like: no second message
        services.like(carol, post.pk)
        services.unlike(bob, post.pk)
        services.unlike(bob, post.pk)  # nothing to take back: no message
        services.delete_comment(carol, comment.pk)
    assert post_messages(memory_publisher, post) == [  # numbered on from the two comments' 1 and 2
        {"v": 1, "type": "post_counts", "post": post.pk, "seq": 3, "comment_count": 2, "like_count": 1},
        {"v": 1, "type": "post_counts", "post": post.pk, "seq": 4, "comment_count": 2, "like_count": 2},
        {"v": 1, "type": "post_counts", "post": post.pk, "seq": 5, "comment_count": 2, "like_count": 1},
        {"v": 1, "type": "comment_removed", "post": post.pk, "seq": 6, "comment": comment.pk, "comment_count": 1,
         "like_count": 1},
    ]


def test_a_rolled_back_comment_publishes_nothing(alice, bob, memory_publisher, on_commit):
    post = services.create_post(alice, "hello")
    memory_publisher.reset()
    with on_commit():
        with pytest.raises(RuntimeError), transaction.atomic():
            services.add_comment(bob, post.pk, "never")
            raise RuntimeError
    assert post_messages(memory_publisher, post) == []
    post.refresh_from_db()
    assert post.live_seq == 0  # its number went with it


def test_the_post_page_and_api_carry_live_seq_and_saving_a_post_never_moves_it(client, alice, bob):
    post = services.create_post(alice, "hello")
    services.like(bob, post.pk)
    services.add_comment(bob, post.pk, "hi")
    client.force_login(alice)
    assert client.get(f"/api/posts/{post.pk}/").json()["live_seq"] == 2
    assert f'data-live-post="{post.pk}" data-live-seq="2"' in client.get(f"/posts/{post.pk}/").content.decode()
    stale = Post.objects.get(pk=post.pk)
    services.unlike(bob, post.pk)  # 3
    stale.text = "hello, edited"
    stale.save()  # as the admin's change form does, with the live_seq it read before the unlike
    post.refresh_from_db()
    assert (post.text, post.live_seq) == ("hello, edited", 3)


def test_a_broker_failure_does_not_fail_the_write(alice, bob, memory_publisher, on_commit):
    post = services.create_post(alice, "hello")
    memory_publisher.fail = PublishError("broker down")
    with on_commit():
        comment = services.add_comment(bob, post.pk, "still saved")
    assert comment.pk and post.comments.count() == 1


def test_newer_cards_for_the_home_feed(client, alice, bob, carol):
    services.follow(alice, "bob")
    mine = services.create_post(alice, "mine")
    seen = services.create_post(bob, "seen")
    newer = services.create_post(bob, "newer from bob")
    services.create_post(carol, "not followed")
    services.create_post(alice, "my newest")
    assert client.get(f"/feed/newer/?after={seen.pk}").status_code == 302  # login required
    client.force_login(alice)
    html = client.get(f"/feed/newer/?after={seen.pk}").content.decode()
    assert html.index("my newest") < html.index("newer from bob")  # newest first
    assert f'id="post-{newer.pk}"' in html and "not followed" not in html and f'id="post-{mine.pk}"' not in html
    assert 'name="next" value="/"' in html  # their forms come back home, not to this fragment
    assert client.get("/feed/newer/?after=x").status_code == 400
    assert client.get(f"/feed/newer/?after={10**9}").content.decode().strip() == ""
