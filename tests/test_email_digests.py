"""The email digest: who gets one, what it holds, once per window, its one-click unsubscribe, and the
transport path through a real SMTP server (aiosmtpd) with Django's SMTP backend."""
import email
import email.policy
import socket
import threading
from datetime import timedelta

import pytest
from django.core import mail
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from feed import services
from feed.models import User
from notifier import services as notes
from notifier.mail import digests, unsubscribe
from notifier.models import DigestDelivery, Notification, NotificationState

ANY_TIME = timezone.now()


def verify(user, address=None):
    address = address or f"{user.username}@example.com"
    User.objects.filter(pk=user.pk).update(email=address, email_verified_at=timezone.now())
    user.refresh_from_db()
    return user


def run(on_commit, cadence="daily", now=None):
    """One send_digests run for `cadence` (its batches run inline, as after a commit)."""
    with on_commit():
        return digests.plan(cadence, now)


def bodies(message):
    """(plain text, html) of a sent EmailMultiAlternatives."""
    html = [content for content, kind in message.alternatives if kind == "text/html"]
    return message.body, html[0] if html else None


@pytest.fixture
def reader(alice):
    return verify(alice)


@pytest.fixture
def post(reader):
    return services.create_post(reader, "my post")


# --- what a digest holds ---------------------------------------------------------------------


@pytest.mark.django_db
def test_digest_lists_unseen_items_with_absolute_links_and_unsubscribe(reader, bob, post, on_commit, settings):
    settings.SITE_URL = "https://herald.example/dev"
    services.add_comment(bob, post.pk, "first <b>comment</b> & more")
    run(on_commit)
    assert len(mail.outbox) == 1
    sent = mail.outbox[0]
    assert sent.to == ["alice@example.com"]
    text, html = bodies(sent)
    comment = Notification.objects.get(recipient=reader, kind="comment")
    assert f"https://herald.example/dev{comment.url}" in text
    assert f'href="https://herald.example/dev{comment.url}"' in html
    assert "first <b>comment</b> & more" in text  # plain text is plain
    assert "&lt;b&gt;comment&lt;/b&gt; &amp; more" in html and "<b>comment</b>" not in html  # escaped
    token = unsubscribe.token(reader.pk)
    assert sent.extra_headers["List-Unsubscribe"] == f"<https://herald.example/dev/email/unsubscribe/{token}/>"
    assert sent.extra_headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert f"/email/unsubscribe/{token}/" in text and f"/email/unsubscribe/{token}/" in html


@pytest.mark.django_db
def test_grouped_items_read_as_the_inbox_reads_them(reader, bob, carol, post, on_commit):
    notes.set_preferences(reader, channels_on={"email": ["like", "comment"]})
    services.like(bob, post.pk)
    services.like(carol, post.pk)
    run(on_commit)
    text, html = bodies(mail.outbox[0])
    from notifier.groups import attach_actors

    [like] = attach_actors(Notification.objects.filter(recipient=reader, kind="like"))
    assert like.display_text.startswith("Carol and Bob liked")
    assert like.display_text in text and like.display_text in html
    assert mail.outbox[0].subject == f"Herald: {like.display_text}"


@pytest.mark.django_db
def test_email_preferences_decide_what_is_listed(reader, bob, carol, post, on_commit):
    other = services.create_post(reader, "another post")
    services.like(bob, post.pk)  # likes are off for email by default
    services.follow(carol, "alice")  # follows are on
    services.add_comment(bob, other.pk, "on a muted post")
    notes.mute_post(reader, other.pk)
    services.add_comment(carol, post.pk, "a comment you want")
    run(on_commit)
    text, _ = bodies(mail.outbox[0])
    assert "Carol started following you." in text
    assert "a comment you want" in text
    assert "liked" not in text
    assert "on a muted post" not in text
    assert "2 things you missed" in mail.outbox[0].subject

    mail.outbox.clear()
    notes.set_preferences(reader, muted_kinds=["comment"])  # a muted kind is on no channel
    services.add_comment(bob, post.pk, "muted kind now")
    services.follow(bob, "alice")
    run(on_commit, now=timezone.now() + timedelta(days=1))
    text, _ = bodies(mail.outbox[0])
    assert "muted kind now" not in text and "Bob" in text


@pytest.mark.django_db
def test_seen_or_read_items_are_not_sent(reader, bob, post, on_commit):
    services.add_comment(bob, post.pk, "seen already")
    notes.mark_seen(reader)
    run(on_commit)
    assert mail.outbox == []
    services.add_comment(bob, post.pk, "read already")
    notes.mark_all_read(reader)
    run(on_commit, now=timezone.now() + timedelta(days=1))
    assert mail.outbox == []


@pytest.mark.django_db
def test_nothing_new_sends_nothing(reader, on_commit):
    assert run(on_commit)[1] == 0
    assert mail.outbox == []
    assert not DigestDelivery.objects.exists()


@pytest.mark.django_db
def test_unverified_address_or_digest_off_gets_nothing(alice, bob, carol, on_commit):
    User.objects.filter(pk=alice.pk).update(email="alice@example.com")  # never verified
    verify(carol)
    notes.set_preferences(carol, email_digest="off")
    for who in (alice, carol):
        services.follow(bob, who.username)
    run(on_commit)
    assert mail.outbox == []
    notes.set_preferences(carol, email_digest="hourly")
    run(on_commit, "daily")
    assert mail.outbox == []  # an hourly reader is not in the daily run
    run(on_commit, "hourly")
    assert [m.to for m in mail.outbox] == [["carol@example.com"]]


# --- once per window -------------------------------------------------------------------------


@pytest.mark.django_db
def test_once_per_window_then_only_what_is_new(reader, bob, carol, post, on_commit):
    services.add_comment(bob, post.pk, "one")
    run(on_commit)
    run(on_commit)  # a second run in the same window
    digests.send_digest_batch.call("daily", digests.window_start("daily").isoformat(), 0, 10**9)  # a retried task
    assert len(mail.outbox) == 1
    claim = DigestDelivery.objects.get(user=reader)
    assert claim.sent_at and claim.item_count == 1 and claim.upto_seq == NotificationState.of(reader).last_seq

    tomorrow = timezone.now() + timedelta(days=1)
    run(on_commit, now=tomorrow)  # next window, nothing new (the old item is still unseen)
    assert len(mail.outbox) == 1
    services.add_comment(carol, post.pk, "two")
    run(on_commit, now=tomorrow + timedelta(seconds=1))  # same window: it already had its (empty) claim
    assert len(mail.outbox) == 1
    run(on_commit, now=tomorrow + timedelta(days=1))
    assert len(mail.outbox) == 2
    text, _ = bodies(mail.outbox[1])
    assert "two" in text and "“one”" not in text


@pytest.mark.django_db
def test_a_lost_digest_is_covered_by_the_next(reader, bob, post, on_commit):
    """At most once per window: a claim whose mail never went (the process died) is not sent again
    in its window, and the next digest holds its items (since the last *sent* one)."""
    services.add_comment(bob, post.pk, "held by the lost one")
    DigestDelivery.objects.create(user=reader, window_start=digests.window_start("daily"), cadence="daily")
    run(on_commit)
    assert mail.outbox == []
    run(on_commit, now=timezone.now() + timedelta(days=1))
    assert "held by the lost one" in bodies(mail.outbox[0])[0]


@pytest.mark.django_db
def test_a_failed_send_releases_its_claim_and_the_retry_sends(reader, bob, carol, post, on_commit, settings, monkeypatch):
    verify(bob)
    services.add_comment(bob, post.pk, "for alice")
    services.follow(reader, "bob")
    from django.core.mail.backends.locmem import EmailBackend

    real = EmailBackend.send_messages

    def flaky(self, messages):
        if messages[0].to == ["alice@example.com"]:
            raise ConnectionRefusedError("mail server down")
        return real(self, messages)

    monkeypatch.setattr(EmailBackend, "send_messages", flaky)
    with pytest.raises(digests.DigestSendFailed):
        digests.send_digest_batch.call("daily", digests.window_start("daily").isoformat(), 0, 10**9)
    assert [m.to for m in mail.outbox] == [["bob@example.com"]]
    assert not DigestDelivery.objects.filter(user=reader).exists()  # released for the retry
    monkeypatch.setattr(EmailBackend, "send_messages", real)
    digests.send_digest_batch.call("daily", digests.window_start("daily").isoformat(), 0, 10**9)
    assert sorted(m.to[0] for m in mail.outbox) == ["alice@example.com", "bob@example.com"]


@pytest.mark.django_db
def test_a_batch_that_breaks_while_composing_releases_the_users_it_did_not_reach(make_user, monkeypatch):
    author = make_user("author")
    readers = [verify(make_user(f"r{i}")) for i in range(3)]
    for r in readers:
        services.follow(author, r.username)
    real, calls = digests.unseen_items, []

    def breaks_on_the_second(state, **kwargs):
        calls.append(state.user_id)
        if len(calls) == 2:
            raise RuntimeError("database went away")
        return real(state, **kwargs)

    monkeypatch.setattr(digests, "unseen_items", breaks_on_the_second)
    with pytest.raises(RuntimeError):
        digests.send_digest_batch.call("daily", digests.window_start("daily").isoformat(), 0, 10**9)
    assert [m.to for m in mail.outbox] == [[readers[0].email]]
    assert list(DigestDelivery.objects.values_list("user_id", flat=True)) == [readers[0].pk]
    monkeypatch.setattr(digests, "unseen_items", real)
    digests.send_digest_batch.call("daily", digests.window_start("daily").isoformat(), 0, 10**9)
    assert sorted(m.to[0] for m in mail.outbox) == sorted(r.email for r in readers)


@pytest.mark.django_db
def test_command_plans_batches_of_the_batch_size(make_user, on_commit, settings):
    settings.DIGEST_BATCH_SIZE = 2
    author = make_user("author")
    readers = [verify(make_user(f"r{i}")) for i in range(5)]
    for r in readers:
        services.follow(author, r.username)
    from io import StringIO

    out = StringIO()
    with on_commit():
        call_command("send_digests", window=["daily"], stdout=out)
    assert "3 batches queued" in out.getvalue()
    assert sorted(m.to[0] for m in mail.outbox) == sorted(r.email for r in readers)


@pytest.mark.django_db
def test_old_claims_are_pruned_a_batch_at_a_time(reader, bob, settings):
    now = timezone.now()
    for days in (1, 9, 10, 11):
        DigestDelivery.objects.create(user=reader, window_start=now - timedelta(days=days), cadence="daily")
    assert digests.prune(now, batch=2) == 2  # the two oldest
    assert digests.prune(now, batch=2) == 1
    assert sorted((now - d.window_start).days for d in DigestDelivery.objects.all()) == [1]


def test_zappa_events_call_send_digests():
    from notifier import tasks

    assert callable(tasks.hourly_digests_event) and callable(tasks.daily_digests_event)


# --- one-click unsubscribe ---------------------------------------------------------------------


@pytest.mark.django_db
def test_one_click_unsubscribe_needs_no_login_or_csrf_and_get_changes_nothing(reader):
    client = Client(enforce_csrf_checks=True)
    url = f"/email/unsubscribe/{unsubscribe.token(reader.pk)}/"
    page = client.get(url)
    assert page.status_code == 200 and b"unsubscribe-confirm" in page.content
    assert NotificationState.of(reader).email_digest == "daily"  # a GET (a link scanner) changes nothing
    done = client.post(url, "List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded")
    assert done.status_code == 200
    assert NotificationState.of(reader).email_digest == "off"
    assert client.post(url).status_code == 200  # twice is fine


@pytest.mark.django_db
@pytest.mark.parametrize("token", ["garbage", unsubscribe.SALT, "eyJ1IjoxfQ:1abc:forged"])
def test_unsubscribe_with_a_bad_token_is_404(reader, token):
    assert Client().post(f"/email/unsubscribe/{token}/").status_code == 404
    assert Client().get(f"/email/unsubscribe/{token}/").status_code == 404
    assert NotificationState.of(reader).email_digest == "daily"


@pytest.mark.django_db
def test_an_unsubscribe_token_of_another_purpose_is_refused(reader):
    from django.core import signing

    other = signing.dumps({"u": reader.pk, "p": "digest"}, salt="herald.email.verify")
    assert Client().post(f"/email/unsubscribe/{other}/").status_code == 404


# --- the transport: a real SMTP server ----------------------------------------------------------


@pytest.fixture
def smtp_server(settings):
    from aiosmtpd.controller import Controller

    received = []

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            received.append(envelope)
            return "250 OK"

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_USE_TLS = "127.0.0.1", port, False
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    yield received
    controller.stop()


@pytest.mark.django_db
def test_digest_through_a_real_smtp_server(reader, bob, post, on_commit, smtp_server, settings):
    settings.DEFAULT_FROM_EMAIL = "Herald <digest@herald.example>"
    services.add_comment(bob, post.pk, "über <i>cool</i>")
    run(on_commit)
    run(on_commit)
    assert len(smtp_server) == 1
    envelope = smtp_server[0]
    assert envelope.rcpt_tos == ["alice@example.com"] and envelope.mail_from == "digest@herald.example"
    message = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
    assert message.get_content_type() == "multipart/alternative"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert str(message["List-Unsubscribe"]).strip().startswith("<http://127.0.0.1:8000/email/unsubscribe/")
    plain = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert "über <i>cool</i>" in plain
    assert "über &lt;i&gt;cool&lt;/i&gt;" in html
    # The link in the mail unsubscribes with one POST.
    url = str(message["List-Unsubscribe"]).strip().strip("<>").removeprefix("http://127.0.0.1:8000")
    assert Client(enforce_csrf_checks=True).post(url).status_code == 200
    assert NotificationState.of(reader).email_digest == "off"


# --- two runs at once ----------------------------------------------------------------------------

from .test_races import file_backed_sqlite, race  # noqa: E402,F401 (fixture)


@pytest.mark.django_db(transaction=True)
def test_two_runs_at_once_send_each_user_one_email(file_backed_sqlite, settings):
    settings.DIGEST_BATCH_SIZE = 7
    author = User.objects.create_user("author", password="pw-123456789")
    readers = []
    for i in range(30):
        reader = User.objects.create_user(f"reader{i}", password="pw-123456789")
        verify(reader)
        services.follow(author, reader.username)
        readers.append(reader)
    lock = threading.Lock()
    sent = []

    from django.core.mail.backends.base import BaseEmailBackend

    class Recording(BaseEmailBackend):
        def send_messages(self, messages):
            with lock:
                sent.extend(m.to[0] for m in messages)
            return len(messages)

    settings.EMAIL_BACKEND = f"{__name__}.RecordingBackend"
    globals()["RecordingBackend"] = Recording
    race({"run-1": lambda r: digests.plan("daily"), "run-2": lambda r: digests.plan("daily"),
          "run-3": lambda r: digests.plan("daily")}, rounds=2)
    assert sorted(sent) == sorted(r.email for r in readers)
    assert DigestDelivery.objects.filter(sent_at__isnull=False).count() == 30


@pytest.mark.django_db
def test_admin_lists_digests_and_verified_addresses(reader, bob, post, on_commit):
    services.add_comment(bob, post.pk, "x")
    run(on_commit)
    admin = User.objects.create_superuser("root", password="pw-123456789")
    client = Client()
    client.force_login(admin)
    page = client.get("/admin/notifier/digestdelivery/?q=alice")
    assert page.status_code == 200 and b"alice" in page.content
    assert client.get(f"/admin/feed/user/{reader.pk}/change/").status_code == 200


# --- the transport on Lambda: SES through django-ses ------------------------------------------------


@pytest.mark.django_db
def test_digest_through_ses_with_django_ses(reader, bob, post, on_commit, settings, monkeypatch):
    """EMAIL_BACKEND=ses: django-ses's SESBackend sends the raw multipart message with botocore's
    `ses` client (SendRawEmail), here against moto."""
    import boto3
    from moto import mock_aws

    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    settings.EMAIL_BACKEND = "django_ses.SESBackend"
    settings.DEFAULT_FROM_EMAIL = "Herald <digest@herald.example>"
    services.add_comment(bob, post.pk, "via SES")
    with mock_aws():
        from moto.ses.models import ses_backends

        boto3.client("ses", region_name="us-east-1").verify_domain_identity(Domain="herald.example")
        run(on_commit)
        [raw] = ses_backends["123456789012"]["us-east-1"].sent_messages
    assert set(raw.destinations) == {"alice@example.com"} and raw.source == "Herald <digest@herald.example>"
    message = email.message_from_string(raw.raw_data, policy=email.policy.default)
    assert message.get_content_type() == "multipart/alternative"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "via SES" in message.get_body(("plain",)).get_content()
    assert DigestDelivery.objects.get(user=reader).sent_at is not None
