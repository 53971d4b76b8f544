"""Open tabs hear of notifications that went because what they were about was deleted
(notifier.removals, called by notifier.services.withdraw): a `removed` message per recipient
with the counts the deletion left, after the commit only; straight away for a few recipients,
through background tasks (durable, enqueued with the deletion) for a post's whole fan-out."""
import pytest
from django.db import transaction
from django_tasks_db.models import DBTaskResult

from feed import services
from feed.models import User
from notifier import removals
from notifier.models import Notification
from notifier.topics import user_topic

from .conftest import DATABASE_TASKS
from .helpers import assert_count_exact, make_followers

pytestmark = pytest.mark.django_db


def removed_for(publisher, user) -> list[dict]:
    return [m for m in publisher.messages(topic=user_topic(user.pk)) if m["type"] == "removed"]


def test_a_deleted_comment_is_taken_out_of_every_recipients_tabs(alice, bob, carol, memory_publisher, on_commit):
    post = services.create_post(alice, "hello")
    services.add_comment(carol, post.pk, "first")
    services.like(carol, post.pk)
    comment = services.add_comment(bob, post.pk, "hi @carol")  # alice: comment; carol: mention
    told = {u: Notification.objects.get(recipient=u, event__comment_ref=comment.pk).pk for u in (alice, carol)}
    memory_publisher.reset()
    with on_commit() as callbacks:
        services.delete_comment(bob, comment.pk)
        assert removed_for(memory_publisher, alice) == []  # nothing before the commit
    assert callbacks
    [to_alice] = removed_for(memory_publisher, alice)
    assert to_alice == {"v": 1, "type": "removed", "seq": 3, "ids": [told[alice]], "unread_count": 2,
                        "unseen_count": 2}  # carol's comment and like are still there
    [to_carol] = removed_for(memory_publisher, carol)
    assert to_carol["ids"] == [told[carol]] and to_carol["unread_count"] == 0
    assert removed_for(memory_publisher, bob) == []
    assert_count_exact(alice, carol)


def test_a_rolled_back_deletion_tells_nobody(alice, bob, memory_publisher, on_commit):
    post = services.create_post(alice, "hello")
    comment = services.add_comment(bob, post.pk, "hi")
    memory_publisher.reset()
    with on_commit():
        with pytest.raises(RuntimeError), transaction.atomic():
            services.delete_comment(bob, comment.pk)
            raise RuntimeError
    assert removed_for(memory_publisher, alice) == []
    assert Notification.objects.filter(event__comment_ref=comment.pk).count() == 1


def test_a_post_with_many_recipients_is_taken_out_by_background_chunks(alice, memory_publisher, on_commit,
                                                                        monkeypatch):
    monkeypatch.setattr(removals, "INLINE", 3)
    monkeypatch.setattr(removals, "CHUNK", 4)
    fans = make_followers(alice, 10)
    with on_commit():
        post = services.create_post(alice, "to everyone")
    items = dict(Notification.objects.filter(event__post_ref=post.pk).values_list("recipient_id", "pk"))
    assert len(items) == 10
    memory_publisher.reset()
    with on_commit():
        services.delete_post(alice, post.pk)
    for fan in fans:
        [message] = removed_for(memory_publisher, fan)
        assert message["ids"] == [items[fan.pk]] and message["unread_count"] == 0, message
    assert_count_exact(*fans)


@pytest.mark.django_db(transaction=True)
def test_the_background_chunks_exist_exactly_when_the_deletion_commits(settings, monkeypatch):
    monkeypatch.setattr(removals, "INLINE", 1)
    monkeypatch.setattr(removals, "CHUNK", 2)
    alice = User.objects.create(username="alice")
    make_followers(alice, 5)
    post = services.create_post(alice, "to everyone")  # immediate tasks: fanned out at commit
    settings.TASKS = DATABASE_TASKS
    with pytest.raises(RuntimeError), transaction.atomic():
        services.delete_post(alice, post.pk)
        raise RuntimeError
    assert not DBTaskResult.objects.filter(task_path="notifier.removals.tell").exists()
    services.delete_post(alice, post.pk)
    chunks = list(DBTaskResult.objects.filter(task_path="notifier.removals.tell").values_list("args_kwargs", flat=True))
    assert sorted(len(c["args"][0]) for c in chunks) == [1, 2, 2]  # 5 recipients, 2 a task
