"""AWS throttling, through the real publisher and the real emulator: a fan-out that meets 429s
slows down and delivers every notification, none lost, none left owed."""
import json

import pytest
from botocore.exceptions import ClientError

from feed import services
from notifier.models import Notification, PendingPush
from notifier.push.publisher import PublishError, get_publisher
from notifier.topics import user_topic

from .helpers import make_followers
from .mqtt_client import Client

pytestmark = pytest.mark.django_db


@pytest.fixture
def throttling(live_push):
    """The emulator answers 429 past 150 publishes a second, as AWS does past an account's limit."""
    api = live_push.publish_api
    api.max_publish_rate, api.throttled = 150, 0
    yield api
    api.max_publish_rate = None


def test_the_emulator_throttles_like_aws(throttling, live_push):
    client = get_publisher()._client(True)  # Herald's own client, the one that makes one attempt
    with pytest.raises(ClientError) as raised:
        for _ in range(400):  # well past a second's burst
            client.publish(topic=user_topic(1), qos=1, payload=b"{}")
    error = raised.value.response
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 429
    assert error["Error"]["Code"] == "ThrottlingException"
    assert throttling.throttled >= 1


def test_a_throttled_publish_says_so(throttling, live_push):
    publisher = get_publisher()
    throttling.max_publish_rate = 0.001  # the bucket starts empty after its one token
    with pytest.raises(PublishError):
        for _ in range(3):
            publisher.publish(user_topic(1), b"{}", urgent=True)
    try:
        publisher.publish(user_topic(1), b"{}", urgent=True)
    except PublishError as exc:
        assert exc.throttled and not exc.permanent and "429" in str(exc)
    else:
        pytest.fail("not throttled")


def test_a_fanout_that_meets_throttling_delivers_everything(api, alice, throttling, live_push, on_commit, settings):
    settings.PUSH_RATE_LIMIT = 1000  # well over the emulator's 150/s: Herald must back off by itself
    fans = make_followers(alice, 600)
    sampled = [fans[0], fans[299], fans[599]]
    clients = []
    for fan in sampled:
        creds = api.as_(fan).post("/api/notifications/credentials/").json()
        client = Client.over_websocket(creds["url"], creds["client_id"])
        assert client.connect() == 0 and client.subscribe(creds["topics"]["notifications"]) == 1
        clients.append(client)
    try:
        with on_commit():
            post = services.create_post(alice, "to six hundred people")
        assert throttling.throttled > 0  # it was throttled...
        assert Notification.objects.filter(post_ref=post.pk, kind="new_post").count() == 600
        assert not PendingPush.objects.exists()  # ... and every push was delivered all the same
        for fan, client in zip(sampled, clients):
            message = json.loads(client.next_message(timeout=5).payload)
            stored = Notification.objects.get(recipient=fan, post_ref=post.pk)
            assert (message["type"], message["id"], message["seq"]) == ("notification", stored.pk, stored.seq)
            client.assert_nothing_arrives(quiet=0.2)
    finally:
        for client in clients:
            client.close()
