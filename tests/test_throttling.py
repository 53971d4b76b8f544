"""AWS throttling, through the real publisher and the real emulator: a fan-out that meets 429s
slows down and delivers every notification, none lost, none left owed.

The emulator's limiter runs on a clock each test gives it, so whether a publish is throttled never
depends on how fast this machine sends.
"""
import json
import time

import pytest
from botocore.exceptions import ClientError

from feed import services
from notifier.models import Notification, PendingPush
from notifier.push.publisher import PublishError, get_publisher
from notifier.topics import user_topic

from .helpers import make_followers
from .mqtt_client import Client

pytestmark = pytest.mark.django_db


class FakeClock:
    """A clock that moves only when the test moves it."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class StillForTheBurst:
    """Stands still for its first `reads` readings (so a full bucket of that many runs out however
    slowly it is used), then runs with time.monotonic from where it stood."""

    def __init__(self, reads: int):
        self._still = reads
        self._started = None

    def __call__(self) -> float:
        if self._still > 0:
            self._still -= 1
            return 0.0
        if self._started is None:
            self._started = time.monotonic()
        return time.monotonic() - self._started


@pytest.fixture
def throttling(live_push):
    """The emulator's Publish API, its limiter reset afterwards (each test sets its own)."""
    api = live_push.publish_api
    api.throttled = 0
    yield api
    api.max_publish_rate = None


def assert_throttled(client) -> None:
    with pytest.raises(ClientError) as raised:
        client.publish(topic=user_topic(1), qos=1, payload=b"{}")
    error = raised.value.response
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 429
    assert error["Error"]["Code"] == "ThrottlingException"


def test_the_emulator_throttles_like_aws(throttling):
    """5 publishes a second, bursts of 5: the sixth publish in the same instant is a 429, and a
    fifth of a second later there is room for exactly one more."""
    clock = FakeClock()
    throttling.limit_publishes(5, burst=5, clock=clock)
    client = get_publisher()._client(True)  # Herald's own client, the one that makes one attempt
    for _ in range(5):
        assert client.publish(topic=user_topic(1), qos=1, payload=b"{}")["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert_throttled(client)
    assert throttling.throttled == 1
    clock.advance(0.2)
    client.publish(topic=user_topic(1), qos=1, payload=b"{}")
    assert_throttled(client)
    clock.advance(10)  # a long pause refills the burst, never more
    for _ in range(5):
        client.publish(topic=user_topic(1), qos=1, payload=b"{}")
    assert_throttled(client)
    assert throttling.throttled == 3


def test_a_throttled_publish_says_so(throttling):
    throttling.limit_publishes(1, burst=1, clock=FakeClock())
    publisher = get_publisher()
    publisher.publish(user_topic(1), b"{}", urgent=True)  # the bucket's one publish
    with pytest.raises(PublishError) as raised:
        publisher.publish(user_topic(1), b"{}", urgent=True)
    exc = raised.value
    assert exc.throttled and not exc.permanent and "429" in str(exc)


def test_a_fanout_that_meets_throttling_delivers_everything(api, alice, throttling, live_push, on_commit, settings):
    """The emulator allows 150 publishes a second after a burst of 150 that runs out however slowly
    it is used; Herald's own rate is far higher, so it meets 429s and must back off by itself."""
    throttling.limit_publishes(150, burst=150, clock=StillForTheBurst(1 + 150 + 1))  # creation, burst, first 429
    settings.PUSH_RATE_LIMIT = 1000
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
        assert Notification.objects.filter(event__post_ref=post.pk, kind="new_post").count() == 600
        assert not PendingPush.objects.exists()  # ... and every push was delivered all the same
        for fan, client in zip(sampled, clients):
            message = json.loads(client.next_message(timeout=30).payload)
            stored = Notification.objects.get(recipient=fan, event__post_ref=post.pk)
            assert (message["type"], message["id"], message["seq"]) == ("notification", stored.pk, stored.seq)
            client.assert_nothing_arrives(quiet=0.2)
    finally:
        for client in clients:
            client.close()
