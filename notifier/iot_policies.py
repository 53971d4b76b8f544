"""IAM policy documents for AWS IoT: least privilege, per user, no publishing from browsers.

Three documents, built in one place so they cannot drift apart:

- `session_policy(...)`: passed to sts.assume_role for ONE user and ONE connection. It allows
  exactly iot:Connect as that literal client id, iot:Subscribe to the user's own notifications
  filter and the public post-comments filter, and iot:Receive on the matching topics. Nothing else,
  never iot:Publish. The effective rights of the temporary keys are the intersection of this and
  the role's policy.
- `role_policy(...)`: the inline policy of the role Herald assumes (created by `iot_setup`). It
  bounds every session: Herald's client ids and topics under the stage's prefix only.
- `trust_policy(...)`: who may assume that role (the principal Herald runs as).

STS counts a session policy after packing it ("packed size"), and refuses it past 2,048 characters;
compact JSON is what we send, and `session_policy` checks its own length against that limit.
"""
import json

POLICY_VERSION = "2012-10-17"
# STS limit for inline session policies: the documented 2,048-character plain-text limit.
SESSION_POLICY_MAX_CHARS = 2048
CLIENT_ID_PREFIX = "herald-u"


class PolicyTooLarge(ValueError):
    pass


def iot_arn(region: str, account: str, kind: str, name: str) -> str:
    """arn:aws:iot:{region}:{account}:{kind}/{name}, kind being client, topic or topicfilter."""
    return f"arn:aws:iot:{region}:{account}:{kind}/{name}"


def user_filters(prefix: str, user_id: int) -> list[str]:
    """The MQTT names one user may subscribe to and receive from (as IAM resource names)."""
    return [f"{prefix}/users/{int(user_id)}/notifications", f"{prefix}/posts/*/comments"]


def session_policy(*, region: str, account: str, prefix: str, client_id: str, user_id: int) -> dict:
    if not client_id or any(c in client_id for c in "*?+#/"):
        raise ValueError(f"client id must be a literal id, not {client_id!r}")
    names = user_filters(prefix, user_id)
    policy = {
        "Version": POLICY_VERSION,
        "Statement": [
            {"Effect": "Allow", "Action": "iot:Connect", "Resource": iot_arn(region, account, "client", client_id)},
            {"Effect": "Allow", "Action": "iot:Subscribe",
             "Resource": [iot_arn(region, account, "topicfilter", n) for n in names]},
            {"Effect": "Allow", "Action": "iot:Receive", "Resource": [iot_arn(region, account, "topic", n) for n in names]},
        ],
    }
    size = len(dumps(policy))
    if size > SESSION_POLICY_MAX_CHARS:
        raise PolicyTooLarge(f"session policy is {size} characters, STS allows {SESSION_POLICY_MAX_CHARS}")
    return policy


def role_policy(*, region: str, account: str, prefix: str) -> dict:
    """What any Herald browser session may ever do; each session policy narrows it to one user."""
    names = [f"{prefix}/users/*/notifications", f"{prefix}/posts/*/comments"]
    return {
        "Version": POLICY_VERSION,
        "Statement": [
            {"Sid": "ConnectAsHeraldClient", "Effect": "Allow", "Action": "iot:Connect",
             "Resource": iot_arn(region, account, "client", f"{CLIENT_ID_PREFIX}*")},
            {"Sid": "SubscribeToHeraldTopics", "Effect": "Allow", "Action": "iot:Subscribe",
             "Resource": [iot_arn(region, account, "topicfilter", n) for n in names]},
            {"Sid": "ReceiveHeraldTopics", "Effect": "Allow", "Action": "iot:Receive",
             "Resource": [iot_arn(region, account, "topic", n) for n in names]},
        ],
    }


def trust_policy(principal_arn: str) -> dict:
    return {
        "Version": POLICY_VERSION,
        "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": principal_arn}, "Action": "sts:AssumeRole"},
        ],
    }


def dumps(policy: dict) -> str:
    """Compact JSON: what is sent to AWS and what counts against the size limits."""
    return json.dumps(policy, separators=(",", ":"), sort_keys=False)
