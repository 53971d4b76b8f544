"""Web Push end to end: a notification → an owed row in its transaction → encrypted (RFC 8291) and
VAPID-signed (RFC 8292) POST → the emulator's local push service → decrypted here with the
browser's private key and compared with the notification. Outcomes: 410 drops the subscription,
429 backs off (Retry-After) for deliver_pending, 413 is permanent; preferences are honoured."""
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from feed import services
from feed.models import User
from notifier import services as notes
from notifier.models import Notification, PendingWebPush, WebPushSubscription
from notifier.webpush import delivery as web_delivery
from notifier.webpush import payload

from .webpush import Device, device, vapid, vapid_pair, web_push  # noqa: F401  (fixtures)

pytestmark = pytest.mark.django_db


def deliver_pending():
    call_command("deliver_pending", verbosity=0)


def test_a_comment_reaches_the_device_decrypted_equal_to_the_notification(api, alice, bob, device, on_commit):
    phone = device()
    phone.subscribe(api, alice)
    post = services.create_post(alice, "hello world")
    with on_commit():
        services.add_comment(bob, post.pk, "nice post, @alice")

    notification = Notification.objects.get(recipient=alice, kind="comment")
    [message] = phone.messages()
    assert message["type"] == "notification" and message["v"] == 1
    assert (message["id"], message["seq"], message["kind"]) == (notification.pk, notification.seq, "comment")
    assert message["text"] == notification.display_text and message["url"] == notification.url
    assert message["actor"] == {"username": "bob", "display_name": "Bob", "avatar": None}
    assert message["unread_count"] == 1 and message["count"] == 1
    assert set(message) == {"v", "type", "id", "seq", "kind", "text", "url", "actor", "count", "unread_count",
                            "unseen_count", "created_at"}
    [raw] = phone.raw_messages
    assert raw["headers"]["TTL"] == str(24 * 3600) and raw["headers"]["Urgency"] == "normal"
    assert raw["headers"]["Topic"] == f"n{notification.pk}"
    assert not PendingWebPush.objects.exists()  # accepted: nothing owed


def test_every_device_of_the_user_receives_it_and_nobody_else(api, alice, bob, carol, device, on_commit):
    phone, laptop, carols = device(), device(), device()
    phone.subscribe(api, alice)
    laptop.subscribe(api, alice)
    carols.subscribe(api, carol)
    post = services.create_post(alice, "hello")
    with on_commit():
        services.add_comment(bob, post.pk, "hi")
    assert [m["kind"] for m in phone.messages()] == ["comment"]
    assert [m["kind"] for m in laptop.messages()] == ["comment"]
    assert carols.messages() == []


def test_gone_410_deletes_the_subscription_and_what_it_is_owed(api, alice, bob, device, on_commit):
    phone, laptop = device(), device()
    phone.subscribe(api, alice)
    laptop.subscribe(api, alice)
    phone.mode(410)
    post = services.create_post(alice, "hello")
    with on_commit():
        services.add_comment(bob, post.pk, "hi")
    assert list(WebPushSubscription.objects.values_list("endpoint", flat=True)) == [laptop.endpoint]
    assert not PendingWebPush.objects.exists()
    assert len(laptop.messages()) == 1


def test_429_backs_off_honouring_retry_after_then_the_sweep_sends_it(api, alice, bob, device, on_commit):
    phone = device()
    phone.subscribe(api, alice)
    phone.mode(429, retry_after="120", times=1)
    post = services.create_post(alice, "hello")
    before = timezone.now()
    with on_commit():
        services.add_comment(bob, post.pk, "hi")
    row = PendingWebPush.objects.get()
    assert row.attempts == 1 and "429" in row.last_error
    assert row.due_at >= before + timedelta(seconds=119)  # Retry-After, not the 0.5 s first backoff
    deliver_pending()  # not due yet: nothing is sent
    assert phone.messages() == [] and PendingWebPush.objects.filter(attempts=1).exists()

    PendingWebPush.objects.update(due_at=timezone.now() - timedelta(seconds=1))
    deliver_pending()
    assert [m["kind"] for m in phone.messages()] == ["comment"]
    assert not PendingWebPush.objects.exists()


def test_retry_after_as_an_http_date_and_5xx(api, alice, bob, device, on_commit):
    from email.utils import format_datetime

    phone = device()
    phone.subscribe(api, alice)
    later = timezone.now() + timedelta(minutes=10)
    phone.mode(503, retry_after=format_datetime(later, usegmt=True), times=1)
    post = services.create_post(alice, "hello")
    with on_commit():
        services.add_comment(bob, post.pk, "hi")
    row = PendingWebPush.objects.get()
    assert abs((row.due_at - later).total_seconds()) < 5 and "503" in row.last_error


def test_413_is_a_permanent_failure_kept_as_a_record(api, alice, bob, device, on_commit):
    phone = device()
    phone.subscribe(api, alice)
    phone.mode(413)
    post = services.create_post(alice, "hello")
    with on_commit():
        services.add_comment(bob, post.pk, "hi")
    row = PendingWebPush.objects.get()
    assert row.due_at is None and row.state == "failed" and "413" in row.last_error
    phone.mode(None)
    deliver_pending()  # never retried
    assert phone.messages() == [] and PendingWebPush.objects.get().due_at is None


def test_a_crash_between_commit_and_send_is_sent_by_the_sweep(api, alice, bob, device, django_capture_on_commit_callbacks):
    phone = device()
    phone.subscribe(api, alice)
    post = services.create_post(alice, "hello")
    with django_capture_on_commit_callbacks(execute=False):  # committed, but the process "died" before sending
        services.add_comment(bob, post.pk, "hi")
    row = PendingWebPush.objects.get()
    assert row.attempts == 0 and row.due_at > timezone.now()  # leased for the in-process send
    deliver_pending()
    assert phone.messages() == []  # the lease still belongs to the (lost) in-process send
    PendingWebPush.objects.update(due_at=timezone.now())
    deliver_pending()
    assert [m["kind"] for m in phone.messages()] == ["comment"]
    assert not PendingWebPush.objects.exists()


def test_preferences_push_off_and_muted_kinds_owe_nothing(api, alice, bob, carol, device, on_commit):
    phone = device()
    phone.subscribe(api, alice)
    r = api.as_(alice).put("/api/notifications/preferences/", {
        "channels": {"web_push": ["mention", "reply", "like", "follow", "new_post"]},  # comments off on Web Push
        "muted_kinds": ["like"]}, format="json")
    assert r.status_code == 200, r.content
    post = services.create_post(alice, "hello")
    with on_commit():
        services.add_comment(bob, post.pk, "just a comment")
        services.like(bob, post.pk)
    assert Notification.objects.filter(recipient=alice, kind="comment").exists()  # in the inbox
    assert not Notification.objects.filter(recipient=alice, kind="like").exists()  # muted: nowhere
    assert not PendingWebPush.objects.exists()
    elsewhere = services.create_post(carol, "hi all")
    with on_commit():
        services.add_comment(bob, elsewhere.pk, "hey @alice")  # a mention is still on
    assert [m["kind"] for m in phone.messages()] == ["mention"]


def test_a_muted_post_sends_nothing(api, alice, bob, device, on_commit):
    phone = device()
    phone.subscribe(api, alice)
    post = services.create_post(alice, "hello")
    services.mute_post(alice, post.pk)
    with on_commit():
        services.add_comment(bob, post.pk, "hi")
    assert phone.messages() == [] and not PendingWebPush.objects.exists()


def test_a_bumped_group_owes_its_push_again(api, alice, bob, carol, device, on_commit):
    phone = device()
    phone.subscribe(api, alice)
    phone.mode(503, times=1)
    post = services.create_post(alice, "hello")
    with on_commit():
        services.like(bob, post.pk)
    failed = PendingWebPush.objects.get()
    assert failed.attempts == 1
    with on_commit():
        services.like(carol, post.pk)  # bumps the same item: the owed row is reused, due afresh
    assert not PendingWebPush.objects.exists()
    [message] = phone.messages()
    assert message["kind"] == "like" and message["count"] == 2 and message["id"] == failed.notification_id
    assert message["text"].startswith("Carol and Bob")


def test_fan_out_owes_followers_with_devices_and_background_tasks_send_them(api, make_user, alice, device, on_commit):
    followers = [make_user(f"f{i}") for i in range(5)]
    phones = {}
    for user in followers:
        services.follow(user, "alice")
    for user in followers[:3]:
        phones[user.pk] = device()
        phones[user.pk].subscribe(api, user)
    with on_commit():  # the fan-out runs as tasks (immediate backend), its Web Pushes as tasks of their own
        services.create_post(alice, "news for everyone")
    for user in followers[:3]:
        [message] = phones[user.pk].messages()
        assert message["kind"] == "new_post" and "news for everyone" in message["text"]
        assert message["actor"]["username"] == "alice"
    assert not PendingWebPush.objects.exists()
    assert Notification.objects.filter(kind="new_post").count() == 5


def test_fan_out_enqueues_send_tasks_in_its_transaction(settings, api, make_user, alice, device):
    """On the database queue, the chunk's transaction holds its send_owed task next to the rows."""
    from django_tasks_db.models import DBTaskResult

    from feed import fanout

    followers = [make_user(f"f{i}") for i in range(3)]
    for user in followers:
        services.follow(user, "alice")
        device().subscribe(api, user)
    post = services.create_post(alice, "news")
    settings.TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
    fanout.fan_out_chunk.call(post.pk, 0, 10**9)
    owed = set(PendingWebPush.objects.values_list("pk", flat=True))
    assert len(owed) == 3
    queued = [r for r in DBTaskResult.objects.all() if r.task_path.endswith("send_owed")]
    assert len(queued) == 1 and set(queued[0].args_kwargs["args"][0]) == owed


def test_deleting_the_notification_or_the_account_leaves_no_owed_rows(api, alice, bob, device, django_capture_on_commit_callbacks):
    phone = device()
    phone.subscribe(api, alice)
    post = services.create_post(alice, "hello")
    with django_capture_on_commit_callbacks(execute=False):
        comment = services.add_comment(bob, post.pk, "hi")
    assert PendingWebPush.objects.count() == 1
    services.delete_comment(bob, comment.pk)
    assert not PendingWebPush.objects.exists()

    with django_capture_on_commit_callbacks(execute=False):
        services.add_comment(bob, post.pk, "again")
    assert PendingWebPush.objects.count() == 1
    services.delete_account(User.objects.get(pk=alice.pk))
    assert not PendingWebPush.objects.exists() and not WebPushSubscription.objects.exists()


def test_web_push_off_owes_nothing(settings, api, alice, bob, device, on_commit):
    phone = device()
    phone.subscribe(api, alice)
    settings.WEB_PUSH_VAPID_PRIVATE_KEY = ""
    settings.DEBUG = False
    post = services.create_post(alice, "hello")
    with on_commit():
        services.add_comment(bob, post.pk, "hi")
    assert not PendingWebPush.objects.exists() and phone.messages() == []


class LongActor:
    """An actor with a long name and a long (presigned) avatar URL."""

    display_name = "N" * 150
    avatar_urls = {"small": "https://example.com/" + "a" * 3900, "medium": "m", "large": "l"}

    def get_username(self):
        return "n" * 150


def test_a_long_payload_stays_under_4_kb_encrypted(api, alice, device):
    bob = LongActor()
    phone = device()
    phone.subscribe(api, alice)
    item = web_delivery.live.Outgoing(pk=1, recipient_id=alice.pk, seq=1, kind="comment", actor=bob,
                                      text="x" * 300, url="/posts/1/", created_at=timezone.now(), unread_count=1)
    message = payload.message(item)
    assert message["actor"]["avatar"] == {"small": bob.avatar_urls["small"]}
    body = payload.encode(message)
    assert payload.encrypted_size(len(body)) <= payload.MAX_ENCRYPTED
    decoded = __import__("json").loads(body)
    assert decoded["actor"]["avatar"] is None and decoded["text"] == "x" * 300  # the avatar went first

    huge = {**message, "text": "é" * 4000}
    body = payload.encode(huge)
    assert payload.encrypted_size(len(body)) <= payload.MAX_ENCRYPTED
    assert __import__("json").loads(body)["text"].endswith("…")

    from notifier.webpush.sender import encrypt

    assert len(encrypt(body, phone.p256dh, Device.subscription(phone)["keys"]["auth"])) <= 4096


def test_the_vapid_token_is_signed_once_per_origin(api, alice, bob, device, on_commit):
    from notifier.webpush import sender

    phone, laptop = device(), device()
    phone.subscribe(api, alice)
    laptop.subscribe(api, alice)
    signer = sender.signer()
    before = signer.signed
    post = services.create_post(alice, "hello")
    with on_commit():
        services.add_comment(bob, post.pk, "one")
        services.add_comment(bob, post.pk, "two")
    assert len(phone.messages()) == 2 and len(laptop.messages()) == 2
    assert signer.signed - before <= 1
    headers = {m["headers"]["Authorization"] for m in phone.raw_messages + laptop.raw_messages}
    assert len(headers) == 1


def test_mark_read_messages_are_not_pushed(api, alice, bob, device, on_commit):
    phone = device()
    phone.subscribe(api, alice)
    post = services.create_post(alice, "hello")
    with on_commit():
        services.add_comment(bob, post.pk, "hi")
        notes.mark_all_read(alice)
    assert [m["type"] for m in phone.messages()] == ["notification"]


def test_an_unreachable_push_service_backs_off_for_the_sweep(settings, api, alice, bob, device, _closed_port, on_commit):
    phone = device()
    phone.subscribe(api, alice)
    down = f"http://127.0.0.1:{_closed_port}"
    settings.WEB_PUSH_EXTRA_ORIGINS = [*settings.WEB_PUSH_EXTRA_ORIGINS, down]
    r = api.as_(alice).post("/api/push/subscriptions/", {**phone.subscription(), "endpoint": f"{down}/push/x"},
                            format="json")
    assert r.status_code == 201
    post = services.create_post(alice, "hello")
    before = timezone.now()
    with on_commit():
        services.add_comment(bob, post.pk, "hi")
    assert len(phone.messages()) == 1  # the device whose service answers got it
    row = PendingWebPush.objects.get()
    assert row.attempts == 1 and "unreachable" in row.last_error
    assert before < row.due_at <= timezone.now() + timedelta(seconds=1)  # the first backoff, 0.5 s
    PendingWebPush.objects.update(due_at=timezone.now())
    deliver_pending()
    assert PendingWebPush.objects.get().attempts == 2  # tried again by the sweep, still owed


def test_ttl_and_urgency_follow_the_kind(api, alice, bob, device, on_commit):
    phone = device()
    phone.subscribe(api, alice)
    post = services.create_post(alice, "hello")
    with on_commit():
        services.like(bob, post.pk)
    [raw] = phone.raw_messages
    assert (raw["headers"]["TTL"], raw["headers"]["Urgency"]) == (str(4 * 3600), "low")


def test_a_hiccup_is_retried_through_the_task_queue_when_due(settings, api, alice, bob, device, on_commit):
    """A 5xx's first backoff (0.5 s) is a deferred send_owed task on a queue that can defer, not a
    wait for the next deliver_pending."""
    from django_tasks_db.models import DBTaskResult

    phone = device()
    phone.subscribe(api, alice)
    phone.mode(503, times=1)
    post = services.create_post(alice, "hello")
    settings.TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
    with on_commit():
        services.add_comment(bob, post.pk, "hi")
    row = PendingWebPush.objects.get()
    [task] = [t for t in DBTaskResult.objects.all() if t.task_path.endswith("send_owed")]
    assert task.args_kwargs["args"][0] == [row.pk]
    assert task.run_after is not None and abs((task.run_after - row.due_at).total_seconds()) < 0.01
    PendingWebPush.objects.update(due_at=timezone.now())
    web_delivery.send_owed.call([row.pk])  # what the worker runs when it is due
    assert [m["kind"] for m in phone.messages()] == ["comment"] and not PendingWebPush.objects.exists()
