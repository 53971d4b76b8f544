"""amqtt plugins: IoT Core's policy checks on SUBSCRIBE, RECEIVE and PUBLISH, per connection.

A connection is authenticated and its `iot:Connect` judged by HeraldBroker before amqtt touches
any session (see notifier.localiot.broker); what that leaves on the session is a Grant: the
caller's identity (role policy + session policy, notifier.localiot.accounts), the client id and a
way to drop the connection. These plugins ask the Grant, where IoT Core asks its policy engine:

* SUBSCRIBE: `iot:Subscribe` on `topicfilter/{filter}`, per filter; refused -> SUBACK 0x80 for
  that filter. New subscriptions need unexpired credentials.
* RECEIVE: `iot:Receive` on `topic/{topic}`, per delivered message; refused -> silently not
  delivered. An open connection keeps receiving after its credentials expire, as on AWS.
* PUBLISH: `iot:Publish` on `topic/{topic}`; refused -> the client is disconnected, as AWS IoT
  disconnects a client on an unauthorised publish. (Herald's browser sessions never may.)

They are listed by dotted path in the broker config's `plugins` dict, which replaces amqtt's
defaults: with only these two listed, anonymous access is off.
"""
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from amqtt.contexts import Action
from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin
from amqtt.session import Session

from .accounts import Account, Identity

log = logging.getLogger(__name__)

# Where a connection's Grant lives on an amqtt session (namespaced, as amqtt recommends).
GRANT = "herald.localiot.grant"


@dataclass
class Grant:
    """What one authenticated connection may do, judged against its identity's policies."""

    account: Account
    identity: Identity
    client_id: str
    disconnect: Callable[[str], None] = field(repr=False)

    def allows(self, action: str, kind: str, name: str) -> bool:
        resource = self.account.iot_arn(kind, name)
        allowed = self.account.allowed(self.identity, action, resource, {"iot:ClientId": self.client_id})
        if not allowed:
            log.info("Refused %s (%s) %s on %s.", self.client_id, self.identity.arn, action, resource)
        return allowed


def session_grant(session: Session | None) -> Grant | None:
    return session.attributes.get(GRANT) if session is not None else None


class GrantAuthPlugin(BaseAuthPlugin):
    """Accept a session only if HeraldBroker authenticated its CONNECT and left a Grant on it.

    amqtt runs auth plugins after its session bookkeeping; the real check already happened before
    it (HeraldBroker._initialize_client_session), so this only confirms it.
    """

    async def authenticate(self, *, session: Session) -> bool:
        return session_grant(session) is not None


class PolicyTopicPlugin(BaseTopicPlugin):
    """iot:Subscribe, iot:Receive and iot:Publish, judged for each filter, message and publish."""

    async def topic_filtering(
        self, *, session: Session | None = None, topic: str | None = None, action: Action | None = None
    ) -> bool:
        grant = session_grant(session)
        if grant is None or not topic:
            return False
        if action == Action.SUBSCRIBE:
            if grant.identity.expired(time.time()):
                log.info("Refused SUBSCRIBE of %s: its credentials have expired.", grant.client_id)
                return False
            return grant.allows("iot:Subscribe", "topicfilter", topic)
        if action == Action.RECEIVE:
            return grant.allows("iot:Receive", "topic", topic)
        if action == Action.PUBLISH:
            if grant.allows("iot:Publish", "topic", topic) and not grant.identity.expired(time.time()):
                return True
            grant.disconnect(f"not authorized to publish to {topic[:200]!r}")
            return False
        return False  # anything amqtt adds later
