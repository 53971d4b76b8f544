"""Live connections end when the user's access does: log-out, a password change, account deletion.

Credentials are short-lived, but a connection opened with them is not: AWS IoT keeps it open (up
to 24 hours) after the keys expire. So every client id the credential view vends is recorded
(LiveClient), and ending a user's access asks IoT to close each of their connections with iot-data
DeleteConnection, which needs `iot:DeleteConnection` on `client/herald-u*` (zappa_settings.json).

Durable and prompt, like pushes: `end_access()` marks the rows in the transaction that ends the
access; right after the commit the request closes them itself (one short attempt per id, side by
side), and whatever fails, or is lost with the process, is closed by `sweep()` (deliver_pending).
A closed connection, or one IoT does not know (404: already gone), deletes its row.

What is left: a copied key pair can open a new connection until the keys expire
(IOT_CREDENTIALS_TTL, 15 minutes by default, STS's minimum); IoT has no way to revoke STS keys.
"""
import logging
import random
from concurrent.futures import ThreadPoolExecutor

from django.conf import settings
from django.utils import timezone

from .models import LiveClient
from .oncommit import after_commit

log = logging.getLogger(__name__)

# DeleteConnection calls in flight at once for one user (AWS allows 100 per second per account).
PARALLEL = 8
# A request's own attempt: one try, well inside a second, so log-out stays quick.
URGENT_TIMEOUT = 1.0
SWEEP_BATCH = 500
# A user's ids older than a connection can live are forgotten on about one credentials request in
# this many (log-out already passes them over; until then they only take room).
PRUNE_ONE_IN = 20


def vend(user) -> dict:
    """Credentials for a new live connection of `user` (notifier.aws.issuer), its client id recorded.

    Raises issuer.CredentialsUnavailable when STS cannot be reached or refuses."""
    from .aws.issuer import get_issuer

    creds = get_issuer().issue(user)
    record(user.pk, creds["client_id"])
    return creds


def record(user_id: int, client_id: str) -> None:
    """Remember a vended client id; now and then forget this user's ids whose connections cannot be
    open any more."""
    now = timezone.now()
    LiveClient.objects.create(client_id=client_id, user_id=user_id, created_at=now)
    if random.random() < 1 / PRUNE_ONE_IN:  # one statement per request; the sweep of old ids now and then
        LiveClient.objects.filter(
            user_id=user_id, created_at__lt=now - LiveClient.CONNECTION_LIFETIME, ending_since__isnull=True
        ).delete()


def end_access(user_id: int) -> None:
    """Close every live connection of this user once the current transaction commits (durably)."""
    now = timezone.now()
    LiveClient.objects.filter(
        user_id=user_id, ending_since__isnull=True, created_at__gte=now - LiveClient.CONNECTION_LIFETIME
    ).update(ending_since=now)
    after_commit(_close_for_user, user_id)


def _close_for_user(user_id: int) -> None:
    # Newest first: the connections most likely still open are the ones vended last.
    ids = list(LiveClient.objects.filter(user_id=user_id, ending_since__isnull=False)
               .order_by("-created_at").values_list("client_id", flat=True))
    close(ids, urgent=True)


def sweep(batch: int = SWEEP_BATCH) -> int:
    """Close connections still marked for closing (a failed or lost attempt); returns how many went."""
    ids = list(
        LiveClient.objects.filter(ending_since__isnull=False).order_by("ending_since")
        .values_list("client_id", flat=True)[:batch]
    )
    return close(ids, urgent=False)


def close(client_ids: list[str], *, urgent: bool) -> int:
    """DeleteConnection for each id; rows of the closed ones (or unknown to IoT) are deleted."""
    from botocore.exceptions import BotoCoreError, ClientError

    if not client_ids:
        return 0
    try:
        client = _client(urgent)
    except (BotoCoreError, ClientError) as exc:  # the data endpoint could not be discovered
        log.warning("could not close %d live connection(s): %s", len(client_ids), exc)
        return 0
    with ThreadPoolExecutor(min(PARALLEL, len(client_ids)), thread_name_prefix="herald-end") as pool:
        outcomes = list(pool.map(lambda cid: _close_one(client, cid), client_ids))
    done = [cid for cid, closed in zip(client_ids, outcomes) if closed]
    LiveClient.objects.filter(client_id__in=done).delete()
    return len(done)


def _close_one(client, client_id: str) -> bool:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        client.delete_connection(clientId=client_id, cleanSession=True, preventWillMessage=True)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            return True  # not connected: nothing left to close
        log.warning("could not close live connection %s: %s", client_id, exc)
        return False
    except BotoCoreError as exc:
        log.warning("could not close live connection %s: %s", client_id, exc)
        return False
    return True


_clients = {}


def _client(urgent: bool):
    """iot-data clients for DeleteConnection: urgent (one short try) or patient (the sweep)."""
    from botocore.config import Config

    from .aws.clients import make_client

    key = (urgent, settings.NOTIFIER_BACKEND, settings.LOCALIOT_HTTP_PORT, settings.IOT_DATA_ENDPOINT)
    if key not in _clients:
        if urgent:
            config = Config(retries={"total_max_attempts": 1}, connect_timeout=URGENT_TIMEOUT / 2,
                            read_timeout=URGENT_TIMEOUT / 2, max_pool_connections=PARALLEL)
        else:
            config = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=2, read_timeout=5,
                            max_pool_connections=PARALLEL)
        _clients[key] = make_client("iot-data", settings.AWS_REGION, config=config)
    return _clients[key]
