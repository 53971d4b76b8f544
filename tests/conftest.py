import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from feed.models import User
from notifier.push.publisher import get_publisher

PASSWORD = "correct-horse-battery"


@pytest.fixture(autouse=True)
def memory_publisher(settings):
    """Every test pushes into memory unless it sets up the real emulator itself."""
    settings.NOTIFIER_PUBLISHER = "tests.publishers.MemoryPublisher"
    publisher = get_publisher()
    publisher.reset()
    return publisher


@pytest.fixture(scope="session", autouse=True)
def _limit_connections_closed(django_db_setup, django_db_blocker):
    """The limit counters' own connections (PostgreSQL, inside transactions) are closed before the
    test database is dropped, which PostgreSQL refuses while anyone is connected."""
    yield
    from limits import counters

    counters._database.close_all()


@pytest.fixture(scope="session")
def _closed_port():
    """A loopback port bound by nobody listening: connecting to it is refused at once."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # held, never listen()ed, so nothing else can take it
        yield sock.getsockname()[1]


@pytest.fixture(autouse=True)
def _no_stray_emulator(settings, _closed_port):
    """Tests reach an emulator only through the `live_push` fixture (or their own): never one a
    developer left running on the default ports, keyed from another SECRET_KEY."""
    settings.LOCALIOT_HTTP_PORT = settings.LOCALIOT_WS_PORT = settings.LOCALIOT_MQTT_PORT = _closed_port


IMMEDIATE_TASKS = {"default": {"BACKEND": "django_tasks.backends.immediate.ImmediateBackend"}}
DATABASE_TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}


@pytest.fixture(autouse=True)
def _inline_background_work(settings):
    # Background tasks (follower fan-out) run inline, after commit, in the test's thread: a test
    # sees their effect when it runs on_commit callbacks. Tests of the database queue and its
    # worker set DATABASE_TASKS themselves.
    settings.TASKS = IMMEDIATE_TASKS


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path_factory):
    """Uploaded pictures go to a directory of the test's own (filesystem storage), never into the
    repository; the test's live server serves them from there."""
    root = tmp_path_factory.mktemp("media")
    settings.MEDIA_ROOT = root
    settings.MEDIA_BUCKET = ""
    return root


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # Hashing strength is not under test; PBKDF2's cost would dominate the suite's run time.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _fresh_throttles():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture(autouse=True)
def _no_chance_sweeps(monkeypatch):
    """The occasional sweeps (1 hit in 200 prunes old limit counters, 1 request in 20 old live
    clients) are off unless a test turns them on: a query count must not depend on a dice roll."""
    from limits import counters
    from notifier import live_clients

    monkeypatch.setattr(counters, "PRUNE_ONE_IN", 10**18)
    monkeypatch.setattr(live_clients, "PRUNE_ONE_IN", float("inf"))


@pytest.fixture
def make_user(db):
    def make(username, **extra):
        return User.objects.create_user(username=username, password=PASSWORD, **extra)

    return make


@pytest.fixture
def alice(make_user):
    return make_user("alice", display_name="Alice")


@pytest.fixture
def bob(make_user):
    return make_user("bob", display_name="Bob")


@pytest.fixture
def carol(make_user):
    return make_user("carol", display_name="Carol")


@pytest.fixture
def api():
    """An API client; call api.as_(user) to authenticate with that user's DRF token."""
    client = APIClient()

    def as_(user):
        from rest_framework.authtoken.models import Token

        token, _ = Token.objects.get_or_create(user=user)
        client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
        return client

    client.as_ = as_
    return client


@pytest.fixture
def on_commit(django_capture_on_commit_callbacks):
    """Run transaction.on_commit callbacks (pushes) as they would run after a real commit."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


from .live import emulator, live_push  # noqa: E402,F401  (fixtures)
