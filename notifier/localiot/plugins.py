"""amqtt plugins: token authentication and topic authorization for MQTT clients.

They are listed by dotted path in the broker config's `plugins` dict, which replaces amqtt's
defaults: with only these two listed, anonymous access is off. The rules mirror the session policy
the AWS backend attaches to vended credentials:

* CONNECT (iot:Connect on client/{client_id}): the password must be a token from
  tokens.issue_token() signed with the emulator's key, unexpired, and bound to the CONNECT's client
  id. The username is ignored (MQTT requires one whenever a password is sent, so clients send the
  user id or anything else): the token alone says who the client is. A CONNECT with a will message
  is refused, because amqtt publishes wills (retained ones too) without any topic check, which
  would let a client publish by disconnecting.
* SUBSCRIBE (iot:Subscribe on topicfilter/...): only filters inside the token's filters
  (topics.filter_is_covered), and only until the token expires; anything else gets SUBACK 0x80.
* RECEIVE (iot:Receive on topic/...): only topics matched by the token's filters.
* PUBLISH: never. Only the server publishes, through the HTTP Publish API. amqtt drops a refused
  PUBLISH (QoS 1 is still acknowledged) and, since the check runs before retaining, a refused
  retained PUBLISH is not stored either.
"""
import logging
import time
from dataclasses import dataclass

from amqtt.contexts import Action
from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin
from amqtt.session import Session

from . import topics
from .tokens import InvalidToken, verify_token

log = logging.getLogger(__name__)

# Where the verified token claims live on an amqtt session (namespaced, as amqtt recommends).
CLAIMS = "herald.localiot.claims"


def session_claims(session: Session | None) -> dict | None:
    return session.attributes.get(CLAIMS) if session is not None else None


class TokenAuthPlugin(BaseAuthPlugin):
    """Accept a CONNECT only with a valid token bound to its client id; keep the claims on the session."""

    @dataclass
    class Config:
        key: str = ""
        """The token signing key (Django's SECRET_KEY in the management command)."""

    async def authenticate(self, *, session: Session) -> bool:
        session.attributes.pop(CLAIMS, None)
        if not self.config.key:
            log.error("No token key configured: refusing every client.")
            return False
        if session.will_flag:
            log.info("Refused %s: will messages are not allowed.", session.client_id)
            return False
        try:
            claims = verify_token(key=self.config.key, token=session.password or "", client_id=session.client_id)
        except InvalidToken as exc:
            log.info("Refused %s: %s.", session.client_id, exc.reason)
            return False
        session.attributes[CLAIMS] = claims
        return True


class TokenTopicPlugin(BaseTopicPlugin):
    """Confine each session to the topic filters of its token; refuse every client PUBLISH."""

    async def topic_filtering(
        self, *, session: Session | None = None, topic: str | None = None, action: Action | None = None
    ) -> bool:
        claims = session_claims(session)
        if claims is None or not topic:
            return False
        if action == Action.SUBSCRIBE:
            # New subscriptions need an unexpired token; what was granted keeps being delivered, as
            # an open AWS IoT connection outlives its credentials.
            allowed = time.time() < claims["exp"] and topics.filter_is_covered(topic, claims["filters"])
        elif action == Action.RECEIVE:
            allowed = any(topics.topic_matches(topic, f) for f in claims["filters"])
        else:  # Action.PUBLISH, or anything amqtt adds later
            allowed = False
        if not allowed:
            log.info("Refused %s %s on %r.", session.client_id, action, topic)
        return allowed
