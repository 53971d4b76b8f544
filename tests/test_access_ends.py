"""Live access ends with the user's access: log-out, a password change and deleting the account close
the user's open connections (iot-data DeleteConnection against the emulator, which closes the
socket), the old API token stops working after a password change, and log-out tells the browser
to drop its stored credentials. A close that fails is retried by deliver_pending."""
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.test import Client as PageClient
from django.utils import timezone

from feed import services
from notifier.models import LiveClient

from .conftest import PASSWORD
from .live import free_port, point_settings_at
from .mqtt_client import Client

pytestmark = pytest.mark.django_db

CREDENTIALS = "/api/notifications/credentials/"
NEW_PASSWORD = "a-brand-new-passphrase-7"


def pages_as(user) -> PageClient:
    pages = PageClient()
    assert pages.login(username=user.username, password=PASSWORD)
    return pages


def live_connection(creds) -> Client:
    """A subscriber on the vended presigned URL, as a browser tab holds one."""
    client = Client.over_websocket(creds["url"], creds["client_id"])
    assert client.connect() == 0
    assert client.subscribe(creds["topics"]["notifications"]) == 1
    return client


def closed(client: Client, timeout: float = 10.0) -> bool:
    """Whether the broker closed the connection (a generous guard: it happens well within a second)."""
    return client.disconnected.wait(timeout)


def test_log_out_closes_the_live_connection_and_clears_site_storage(alice, live_push, on_commit):
    pages = pages_as(alice)
    creds = pages.post(CREDENTIALS).json()
    tab = live_connection(creds)
    try:
        assert LiveClient.objects.filter(user=alice, client_id=creds["client_id"]).exists()
        with on_commit():
            response = pages.post("/accounts/logout/")
        assert response.status_code == 302
        assert response["Clear-Site-Data"] == '"storage"'
        assert closed(tab)
        assert not LiveClient.objects.filter(user=alice).exists()  # closed: nothing left to do
        assert pages.post(CREDENTIALS).status_code in (401, 403)  # the page's next try is refused
    finally:
        tab.close()


def test_log_out_leaves_other_users_connected(alice, bob, api, live_push, on_commit):
    pages = pages_as(alice)
    mine = live_connection(pages.post(CREDENTIALS).json())
    theirs = live_connection(api.as_(bob).post(CREDENTIALS).json())
    try:
        with on_commit():
            pages.post("/accounts/logout/")
        assert closed(mine)
        assert not theirs.disconnected.is_set()
        assert theirs.paho.is_connected()
    finally:
        mine.close()
        theirs.close()


def test_password_change_ends_tokens_other_sessions_and_connections(alice, api, live_push, on_commit):
    from rest_framework.authtoken.models import Token

    here, elsewhere = pages_as(alice), pages_as(alice)
    token_client = api.as_(alice)
    tab = live_connection(token_client.post(CREDENTIALS).json())
    try:
        with on_commit():
            response = here.post("/settings/password/", {
                "old_password": PASSWORD, "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
        assert response.status_code == 302, response.content
        assert closed(tab)
        assert not Token.objects.filter(user=alice).exists()
        assert token_client.post(CREDENTIALS).status_code == 401  # the old API token is refused
        assert elsewhere.get("/notifications/").status_code == 302  # the other session is logged out
        assert here.get("/notifications/").status_code == 200  # this one stays
        assert here.post(CREDENTIALS).status_code == 200  # and may connect again
    finally:
        tab.close()


def test_a_wrong_old_password_changes_nothing(alice, api, live_push, on_commit):
    here = pages_as(alice)
    token_client = api.as_(alice)
    tab = live_connection(token_client.post(CREDENTIALS).json())
    try:
        with on_commit():
            response = here.post("/settings/password/", {
                "old_password": "not-it", "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
        assert response.status_code == 200
        assert "incorrect" in response.content.decode()
        assert token_client.post(CREDENTIALS).status_code == 200
        tab.assert_nothing_arrives()
        assert tab.paho.is_connected()
    finally:
        tab.close()


def test_deleting_the_account_closes_its_connections(alice, api, live_push, on_commit):
    tab = live_connection(api.as_(alice).post(CREDENTIALS).json())
    try:
        with on_commit():
            services.delete_account(alice)
        assert closed(tab)
        assert not LiveClient.objects.exists()
    finally:
        tab.close()


def test_a_close_that_fails_is_retried_by_deliver_pending(alice, api, settings, live_push, on_commit):
    tab = live_connection(api.as_(alice).post(CREDENTIALS).json())
    try:
        point_settings_at(settings, live_push, http_port=free_port())  # the emulator is out of reach
        pages = pages_as(alice)
        with on_commit():
            pages.post("/accounts/logout/")
        assert tab.paho.is_connected()
        [row] = LiveClient.objects.filter(user=alice)
        assert row.ending_since is not None  # promised in the log-out's transaction, still owed
        point_settings_at(settings, live_push)  # back
        call_command("deliver_pending", verbosity=0)
        assert closed(tab)
        assert not LiveClient.objects.exists()
    finally:
        tab.close()


def test_ids_of_connections_that_cannot_be_open_any_more_are_forgotten(alice, api, live_push, monkeypatch):
    from notifier import live_clients

    monkeypatch.setattr(live_clients, "PRUNE_ONE_IN", 1)  # (about one request in 20 does it)
    api.as_(alice).post(CREDENTIALS)
    LiveClient.objects.update(created_at=timezone.now() - LiveClient.CONNECTION_LIFETIME - timedelta(seconds=1))
    api.post(CREDENTIALS)
    assert LiveClient.objects.filter(user=alice).count() == 1  # only the new one
