"""Who is asking: the local account's identities and the IAM policies each one carries.

IoT Core and STS judge every call by the caller's identity, and so does the emulator. It knows two
kinds of caller, as an AWS account does:

* the root identity: the account's long-term key pair (`AKIA…`, what Herald's server signs with
  locally). Its policy is `root_policy`, the stage's `extra_permissions` from zappa_settings.json,
  i.e. exactly what the Lambda function may do in production (publish to the stage's topics,
  assume the browser role, end live connections).
* role sessions issued by the local STS (`ASIA…` keys plus a session token, see
  notifier.localiot.sessions). Their policies are the role's policy AND the session policy passed
  to AssumeRole: both must allow a call, and an explicit Deny in either wins - the intersection
  AWS computes for session policies.

`Account.resolve` is the `resolve` callback of notifier.localiot.sigv4: it turns the access key id
(and session token) of a signed request into (Identity, secret key), or refuses with AWS's codes.
No Django, no amqtt.
"""
import functools
import hmac
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from . import policy as iam
from .sessions import ACCESS_KEY_PREFIX, InvalidSessionToken, SessionTokens
from .sigv4 import SignatureError

INVALID_TOKEN = "The security token included in the request is invalid."


@dataclass(frozen=True)
class Identity:
    """A caller: its ARN, the policies that must all allow an action, and when it stops being valid."""

    arn: str
    policies: tuple = field(repr=False)
    expires_at: float | None = None
    session_name: str | None = None

    def expired(self, now: float | None = None) -> bool:
        return self.expires_at is not None and (time.time() if now is None else now) >= self.expires_at


def _partition(region: str) -> str:
    from notifier.aws.policies import partition  # plain botocore data, no Django or SDK client

    return partition(region)


@functools.lru_cache(maxsize=256)
def _parse_session_policy(text: str):
    return iam.parse(text)


class Account:
    """One local AWS account: its root key pair, its roles and the sessions its STS issued."""

    def __init__(
        self,
        *,
        root_access_key_id: str,
        root_secret_access_key: str,
        region: str,
        account: str,
        root_policy: Mapping,
        roles: Mapping[str, Mapping],
    ):
        if not root_access_key_id or not root_secret_access_key:
            raise ValueError("root_access_key_id and root_secret_access_key are required.")
        if not (isinstance(account, str) and len(account) == 12 and account.isdigit()):
            raise ValueError(f"account must be a 12-digit AWS account id, not {account!r}")
        self.region = region
        self.account = account
        self.partition = _partition(region)
        self.root_access_key_id = root_access_key_id
        self._root_secret = root_secret_access_key
        try:
            self.root_policy = iam.parse(dict(root_policy))
            self.roles = {arn: iam.parse(dict(document)) for arn, document in roles.items()}
        except iam.MalformedPolicy as exc:
            raise ValueError(f"Invalid policy: {exc}") from exc
        self.root = Identity(arn=f"arn:{self.partition}:iam::{account}:root", policies=(self.root_policy,))
        self.sessions = SessionTokens(
            root_access_key_id=root_access_key_id, root_secret_access_key=root_secret_access_key
        )

    # -- naming ----------------------------------------------------------------------------------

    def iot_arn(self, kind: str, name: str) -> str:
        """arn:{partition}:iot:{region}:{account}:{kind}/{name} (kind: client, topic, topicfilter)."""
        return iam.iot_resource(self.region, self.account, kind, name, partition=self.partition)

    def assumed_role_arn(self, role_arn: str, session_name: str) -> str:
        role_name = role_arn.rsplit("/", 1)[-1]
        return f"arn:{self.partition}:sts::{self.account}:assumed-role/{role_name}/{session_name}"

    # -- authorisation -----------------------------------------------------------------------------

    @staticmethod
    def allowed(
        identity: Identity, action: str, resource: str, variables: Mapping[str, str] | None = None
    ) -> bool:
        return iam.allowed(identity.policies, action, resource, variables)

    # -- authentication ----------------------------------------------------------------------------

    def resolve(self, access_key_id: str, session_token: str | None, now: float | None = None) -> tuple[Identity, str]:
        """(identity, secret key) for a request signed with `access_key_id`; SignatureError otherwise."""
        if hmac.compare_digest(access_key_id.encode(), self.root_access_key_id.encode()):
            if session_token:  # long-term keys never come with a session token
                raise SignatureError(INVALID_TOKEN, "InvalidClientTokenId", 403)
            return self.root, self._root_secret
        if not access_key_id.startswith(ACCESS_KEY_PREFIX) or not session_token:
            raise SignatureError(INVALID_TOKEN, "InvalidClientTokenId", 403)
        try:
            session = self.sessions.open(access_key_id, session_token)
        except InvalidSessionToken:
            raise SignatureError(INVALID_TOKEN, "InvalidClientTokenId", 403) from None
        if session.expired(now):
            raise SignatureError("The security token included in the request is expired", "ExpiredToken", 403)
        role_policy = self.roles.get(session.role_arn)
        if role_policy is None:  # the role is gone: so are its sessions
            raise SignatureError(INVALID_TOKEN, "InvalidClientTokenId", 403)
        policies = (role_policy,) if session.policy is None else (role_policy, _parse_session_policy(session.policy))
        identity = Identity(
            arn=self.assumed_role_arn(session.role_arn, session.session_name),
            policies=policies,
            expires_at=session.expires_at,
            session_name=session.session_name,
        )
        return identity, self.sessions.secret_for(access_key_id)
