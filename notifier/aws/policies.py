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

Every name that ends up in a Resource is checked here, because IAM gives meaning to characters that
are harmless elsewhere: `*` and `?` are wildcards and `${...}` is a policy variable in a resource
ARN. A topic prefix or client id containing one of them would silently widen what a browser may do,
so such values are refused instead of being written into a policy.
"""
import functools
import json
import re
import secrets

POLICY_VERSION = "2012-10-17"
# STS limit for inline session policies: the documented 2,048-character plain-text limit.
SESSION_POLICY_MAX_CHARS = 2048
CLIENT_ID_PREFIX = "herald-u"
# AWS IoT Core: a client id is at most 128 bytes.
MAX_CLIENT_ID_CHARS = 128

# AWS IoT Core message broker limits: a topic name is at most 256 bytes and has at most 7 slashes
# (the same limits apply to topic filters).
MAX_TOPIC_BYTES = 256
MAX_TOPIC_SLASHES = 7
# User ids are BigAutoField primary keys: the largest one has 19 digits.
MAX_USER_ID = 2**63 - 1
# What Herald appends to IOT_TOPIC_PREFIX (README "Topics and messages"), for the longest id.
_LONGEST_TOPIC_SUFFIXES = (f"/users/{MAX_USER_ID}/notifications", f"/posts/{MAX_USER_ID}/comments")
# So the longest prefix Herald supports keeps every topic inside AWS IoT's limits: 4 slashes
# (5 levels) and 216 characters. At that length the session policy is still about 1,530 characters
# in the region with the longest ARNs, well inside STS's 2,048 (tests/test_iot_policies.py).
MAX_TOPIC_PREFIX_SLASHES = MAX_TOPIC_SLASHES - max(s.count("/") for s in _LONGEST_TOPIC_SUFFIXES)
MAX_TOPIC_PREFIX_CHARS = MAX_TOPIC_BYTES - max(len(s) for s in _LONGEST_TOPIC_SUFFIXES)

# One level of a topic prefix: ASCII letters, digits, '-', '_' and '.'. No MQTT wildcards (+ #),
# no IAM wildcards or variables (* ? $ { }), no '$' at the start (reserved topics), all one byte.
_PREFIX_LEVEL = re.compile(r"[A-Za-z0-9_.-]+")
_CLIENT_ID = re.compile(r"[A-Za-z0-9_-]+")
# Characters that would turn a region or account into a pattern or break the ARN's structure.
_ARN_PART_FORBIDDEN = set("*?${}:/ ")


class PolicyTooLarge(ValueError):
    pass


def validate_topic_prefix(prefix: str) -> str:
    """Return `prefix` if Herald can use it as IOT_TOPIC_PREFIX, else raise ValueError saying why.

    Accepted: 1 to MAX_TOPIC_PREFIX_SLASHES + 1 levels separated by single slashes, each made of
    ASCII letters, digits, '-', '_' or '.', at most MAX_TOPIC_PREFIX_CHARS characters in all (no
    leading or trailing slash: settings strips those). Settings should call this at start-up so a
    bad prefix fails there rather than on the first push or credential request.
    """
    if not isinstance(prefix, str) or not prefix:
        raise ValueError("IOT_TOPIC_PREFIX must be a non-empty string such as 'herald/dev'.")
    if len(prefix) > MAX_TOPIC_PREFIX_CHARS:
        raise ValueError(
            f"IOT_TOPIC_PREFIX is {len(prefix)} characters; at most {MAX_TOPIC_PREFIX_CHARS} keep every "
            f"topic within AWS IoT's {MAX_TOPIC_BYTES}-byte limit."
        )
    if prefix.count("/") > MAX_TOPIC_PREFIX_SLASHES:
        raise ValueError(
            f"IOT_TOPIC_PREFIX has {prefix.count('/')} slashes; at most {MAX_TOPIC_PREFIX_SLASHES} keep every "
            f"topic within AWS IoT's limit of {MAX_TOPIC_SLASHES}."
        )
    for level in prefix.split("/"):
        if not _PREFIX_LEVEL.fullmatch(level):
            raise ValueError(
                f"IOT_TOPIC_PREFIX {prefix!r} is not allowed: each level must be non-empty and use only "
                "ASCII letters, digits, '-', '_' or '.' (no wildcards, no '$')."
            )
    return prefix


def validate_client_id(client_id: str) -> str:
    """Return `client_id` if it is a literal Herald client id, else raise ValueError.

    A literal id is what makes iot:Connect name exactly one connection: '*' or '?' would be IAM
    wildcards, '+', '#' and '/' are MQTT topic syntax, '${' starts a policy variable. The id must
    also start with CLIENT_ID_PREFIX, because the role policy allows nothing else: failing here is
    clearer than a refused CONNECT in the browser.
    """
    if (
        not isinstance(client_id, str)
        or not _CLIENT_ID.fullmatch(client_id)
        or len(client_id) > MAX_CLIENT_ID_CHARS
        or not client_id.startswith(CLIENT_ID_PREFIX)
    ):
        raise ValueError(
            f"client id must be a literal id of letters, digits, '-' and '_' starting with "
            f"{CLIENT_ID_PREFIX!r} (at most {MAX_CLIENT_ID_CHARS} characters), not {client_id!r}"
        )
    return client_id


def new_client_id(user_id: int) -> str:
    """A fresh client id for one connection: the user id for humans, a random part for safety.

    The random part (128 bits) makes the id unguessable, so nobody can aim a CONNECT (or a
    DeleteConnection) at someone else's session. Only letters, digits, '-' and '_' are used: valid
    in MQTT client ids and literal in IAM resources (never a wildcard).
    """
    return f"{CLIENT_ID_PREFIX}{int(user_id)}-{secrets.token_urlsafe(16)}"


@functools.lru_cache(maxsize=64)
def partition(region: str) -> str:
    """The ARN partition of a region: 'aws', or e.g. 'aws-us-gov' and 'aws-cn' for those regions.

    Read from botocore's bundled partition data (no network), so GovCloud and China ARNs are right.
    Unknown regions fall back to 'aws'.
    """
    from botocore.loaders import create_loader

    for entry in create_loader().load_data("partitions")["partitions"]:
        if region in entry["regions"] or re.match(entry["regionRegex"], region):
            return entry["id"]
    return "aws"


def iot_arn(region: str, account: str, kind: str, name: str) -> str:
    """arn:{partition}:iot:{region}:{account}:{kind}/{name}, kind being client, topic or topicfilter."""
    for label, value in (("region", region), ("account", account)):
        if not isinstance(value, str) or not value or _ARN_PART_FORBIDDEN & set(value):
            raise ValueError(f"{label} must be a literal value, not {value!r}")
    return f"arn:{partition(region)}:iot:{region}:{account}:{kind}/{name}"


def user_filters(prefix: str, user_id: int) -> list[str]:
    """The MQTT names one user may subscribe to and receive from (as IAM resource names)."""
    return [f"{prefix}/users/{int(user_id)}/notifications", f"{prefix}/posts/*/comments"]


def session_policy(*, region: str, account: str, prefix: str, client_id: str, user_id: int) -> dict:
    """The rights of ONE browser connection of ONE user; see the module docstring.

    Raises ValueError for a client id that is not literal, a bad prefix or user id, and
    PolicyTooLarge (a ValueError) if STS would refuse the document's size.
    """
    validate_client_id(client_id)
    validate_topic_prefix(prefix)
    if isinstance(user_id, bool) or not 0 < int(user_id) <= MAX_USER_ID:
        raise ValueError(f"user id must be a positive 64-bit integer, not {user_id!r}")
    names = user_filters(prefix, user_id)
    policy = {
        "Version": POLICY_VERSION,
        "Statement": [
            {"Effect": "Allow", "Action": "iot:Connect", "Resource": iot_arn(region, account, "client", client_id)},
            {"Effect": "Allow", "Action": "iot:Subscribe",
             "Resource": [iot_arn(region, account, "topicfilter", n) for n in names]},
            {"Effect": "Allow", "Action": "iot:Receive",
             "Resource": [iot_arn(region, account, "topic", n) for n in names]},
        ],
    }
    size = len(dumps(policy))
    if size > SESSION_POLICY_MAX_CHARS:
        raise PolicyTooLarge(f"session policy is {size} characters, STS allows {SESSION_POLICY_MAX_CHARS}")
    return policy


def role_policy(*, region: str, account: str, prefix: str) -> dict:
    """What any Herald browser session may ever do; each session policy narrows it to one user."""
    validate_topic_prefix(prefix)
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
    """Who may assume the role: exactly one principal, never a pattern.

    A '*' principal would let any AWS account mint Herald IoT keys, so wildcards are refused. The
    ARN's format is otherwise left to IAM, which rejects a malformed or unknown principal itself.
    """
    if not isinstance(principal_arn, str) or not principal_arn or set("*? ") & set(principal_arn):
        raise ValueError(f"the trusted principal must be one literal ARN or account id, not {principal_arn!r}")
    return {
        "Version": POLICY_VERSION,
        "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": principal_arn}, "Action": "sts:AssumeRole"},
        ],
    }


def dumps(policy: dict) -> str:
    """Compact JSON: what is sent to AWS and what counts against the size limits."""
    return json.dumps(policy, separators=(",", ":"), sort_keys=False)
