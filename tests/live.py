"""The real push path for tests: the local emulator on free ports and the real boto3 publisher."""
import socket

import pytest

from notifier.localiot.config import options_from_settings
from notifier.localiot.server import LocalIoT
from notifier.push.publisher import _load


@pytest.fixture(scope="session")
def emulator():
    """One emulator for the session, configured like `runlocaliot` (root keys from SECRET_KEY,
    the dev stage's Lambda policy, the browser role), on free ports."""
    running = LocalIoT(
        **options_from_settings(host="127.0.0.1", mqtt_port=0, ws_port=0, http_port=0)
    ).start_in_thread()
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
