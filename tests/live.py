"""The real push path for tests: the local emulator on free ports and the real boto3 publisher."""
import socket

import pytest

from notifier.localiot.server import LocalIoT
from notifier.aws.local import root_credentials as local_credentials
from notifier.push.publisher import _load


@pytest.fixture(scope="session")
def emulator():
    """One emulator for the session, keyed like `runlocaliot` keys it (from SECRET_KEY)."""
    from django.conf import settings

    key_id, secret = local_credentials()
    running = LocalIoT(access_key_id=key_id, secret_access_key=secret, token_key=settings.SECRET_KEY).start_in_thread()
    yield running.iot
    running.stop()


def point_settings_at(settings, iot, *, http_port=None):
    """Point Herald at this emulator and use the production publisher (a fresh client for it)."""
    settings.NOTIFIER_PUBLISHER = "notifier.push.publisher.IotDataPublisher"
    settings.LOCALIOT_HOST = "127.0.0.1"
    settings.LOCALIOT_MQTT_PORT = iot.mqtt_port
    settings.LOCALIOT_WS_PORT = iot.ws_port
    settings.LOCALIOT_HTTP_PORT = http_port or iot.http_port
    _load.cache_clear()


@pytest.fixture
def live_push(settings, emulator):
    point_settings_at(settings, emulator)
    yield emulator
    _load.cache_clear()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
