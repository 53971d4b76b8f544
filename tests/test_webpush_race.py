"""Subscribing races (real threads, PostgreSQL and file-backed SQLite): the same endpoint from many
requests at once is one row and never a 500; a device moving between users mid-race ends with
one owner; the per-user cap holds."""
import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from config.throttles import WriteThrottle
from feed.models import User
from notifier.models import WebPushSubscription

from .test_races import file_backed_sqlite, race  # noqa: F401 (fixture)
from .test_webpush_api import subscription
from .webpush import vapid, vapid_pair  # noqa: F401  (fixtures)

THREADS = 8


def client_for(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=user)[0].key}")
    return client


@pytest.mark.django_db(transaction=True)
def test_many_requests_subscribing_one_endpoint_make_one_row(file_backed_sqlite, vapid, settings, monkeypatch):  # noqa: F811
    monkeypatch.setattr(WriteThrottle, "THROTTLE_RATES", {"write": "100000/min"})
    users = [User.objects.create_user(f"u{i}", password="pw-123456789") for i in range(2)]
    clients = [client_for(u) for u in users]
    body = subscription("https://fcm.googleapis.com/fcm/send/shared")

    def job(i):
        return lambda r: clients[i % 2 if r % 2 else 0].post("/api/push/subscriptions/", body, format="json").status_code

    results = race({f"t{i}": job(i) for i in range(THREADS)}, rounds=4)
    codes = {code for codes in results.values() for code in codes}
    assert codes <= {200, 201}, codes
    assert WebPushSubscription.objects.filter(endpoint=body["endpoint"]).count() == 1


@pytest.mark.django_db(transaction=True)
def test_one_user_subscribing_many_devices_at_once_keeps_the_cap(file_backed_sqlite, vapid, settings, monkeypatch):  # noqa: F811
    settings.WEB_PUSH_MAX_SUBSCRIPTIONS = 3
    monkeypatch.setattr(WriteThrottle, "THROTTLE_RATES", {"write": "100000/min"})
    user = User.objects.create_user("u", password="pw-123456789")
    client = client_for(user)

    def job(i):
        return lambda r: client.post("/api/push/subscriptions/",
                                     subscription(f"https://fcm.googleapis.com/fcm/send/{i}-{r}"),
                                     format="json").status_code

    results = race({f"t{i}": job(i) for i in range(THREADS)}, rounds=3)
    assert {code for codes in results.values() for code in codes} == {201}
    assert WebPushSubscription.objects.filter(user=user).count() <= 3
