"""Test pushes: an operator checks that a user's private topic is reachable, end to end.

A test push is transient: it is published like any other message (through notifier.push.batch,
so it counts against the process's rate and is refused while the publish rate is exhausted) but
nothing is stored, nothing is counted and nothing is retried. Clients that do not know the
`test` type ignore it (the envelope is versioned); `manage.py listen` prints it.
"""
from django.utils import timezone

from . import envelope
from .push.publisher import PublishError, get_publisher
from .push.batch import Outcome, publish_all
from .topics import user_topic

TEST_TEXT = "Test push from the Herald admin."


def make_test_message() -> dict:
    """`{"v": 1, "type": "test", "text": ..., "sent_at": ISO-8601}`."""
    return {"v": envelope.ENVELOPE_VERSION, "type": "test", "text": TEST_TEXT, "sent_at": timezone.now().isoformat()}


def send_test_push(user_ids) -> Outcome:
    """Publish one test message to each user's private topic; the outcome is keyed by user id.

    Urgent (one attempt within PUSH_URGENT_TIMEOUT: an operator is waiting for the answer) and a
    probe: it is tried even while the breaker is open, since finding out whether the broker is
    reachable is the point, and a success closes the breaker again.
    """
    user_ids = [int(uid) for uid in user_ids]
    try:
        publisher = get_publisher()
    except PublishError as exc:  # e.g. the data endpoint could not be discovered
        return Outcome(retry={uid: str(exc)[:300] for uid in user_ids})
    payload = envelope.encode(make_test_message())
    messages = [(uid, user_topic(uid), payload) for uid in user_ids]
    return publish_all(publisher, messages, urgent=True, probe=True)

