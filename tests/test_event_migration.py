"""notifier 0014 moves what every recipient shares into event rows, in place, and back again."""
import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE, AFTER = ("notifier", "0013_webpush_subscriptions"), ("notifier", "0014_notification_events")


def _migrate(target):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate([target])
    return executor.loader.project_state([target]).apps


@pytest.fixture
def at_0013(transactional_db):
    apps = _migrate(BEFORE)
    try:
        yield apps
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())


def test_rows_move_into_events_and_back(at_0013, django_user_model):
    apps = at_0013
    User = apps.get_model("feed", "User")
    ana, ben, cy = (User.objects.create(username=n, password="!") for n in ("ana", "ben", "cy"))
    Old = apps.get_model("notifier", "Notification")
    OldActor = apps.get_model("notifier", "NotificationActor")
    comment = Old.objects.create(recipient=ana, actor=ben, kind="comment", seq=1, post_ref=7, comment_ref=70,
                                 dedupe_key="comment:70", text="Ben commented: “hi”", url="/posts/7/#c70")
    like = Old.objects.create(recipient=ana, actor=cy, kind="like", seq=2, post_ref=7, dedupe_key="like:7:1",
                              actor_count=2, text="{actors} liked your post", url="/posts/7/")
    OldActor.objects.create(notification=like, actor=ben)
    OldActor.objects.create(notification=like, actor=cy)

    apps = _migrate(AFTER)
    Event, New = apps.get_model("notifier", "NotificationEvent"), apps.get_model("notifier", "Notification")
    Actor = apps.get_model("notifier", "NotificationActor")
    c, lk = New.objects.get(pk=comment.pk), New.objects.get(pk=like.pk)
    assert (c.event_id, lk.event_id) == (comment.pk, like.pk)
    assert (c.dedupe_key, lk.dedupe_key) == (None, "like:7:1")  # a group keeps its key; the rest moves
    e = Event.objects.get(pk=comment.pk)
    assert (e.kind, e.actor_id, e.post_ref, e.comment_ref, e.dedupe_key, e.text, e.url) == (
        "comment", ben.pk, 7, 70, "comment:70", "Ben commented: “hi”", "/posts/7/#c70")
    assert Event.objects.get(pk=like.pk).actor_id == cy.pk
    # The member that is the group's actor points at its event; the other has none of its own.
    assert dict(Actor.objects.values_list("actor_id", "event_id")) == {cy.pk: like.pk, ben.pk: None}
    # New events are numbered past the migrated ones.
    assert Event.objects.create(kind="follow", text="x", url="/").pk > like.pk

    apps = _migrate(BEFORE)
    Old = apps.get_model("notifier", "Notification")
    back = {n.pk: (n.actor_id, n.post_ref, n.comment_ref, n.dedupe_key, n.text, n.url, n.actor_count)
            for n in Old.objects.all()}
    assert back == {
        comment.pk: (ben.pk, 7, 70, "comment:70", "Ben commented: “hi”", "/posts/7/#c70", 1),
        like.pk: (cy.pk, 7, None, "like:7:1", "{actors} liked your post", "/posts/7/", 2),
    }
    assert Old.objects.get(pk=comment.pk).created_at == comment.created_at
