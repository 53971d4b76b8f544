"""The IAM documents that bound what a browser may do on AWS IoT (notifier.aws.policies).

These tests read the documents the way IAM does, statement by statement and ARN by ARN, because a
policy that "looks right" as text can still be wider than intended: one '*' too many, a resource of
user 1 that also matches user 12, a client id that is a pattern. Resources are compared by equality
or by IAM's own wildcard rules (`iam_matches`), never by substring.
"""
import json
import re
import secrets

import pytest
from botocore.loaders import create_loader

from notifier.aws import policies as iot_policies
from notifier.aws.policies import (
    MAX_TOPIC_PREFIX_CHARS,
    MAX_TOPIC_PREFIX_SLASHES,
    MAX_USER_ID,
    SESSION_POLICY_MAX_CHARS,
    PolicyTooLarge,
    dumps,
    new_client_id,
    role_policy,
    session_policy,
    trust_policy,
    validate_topic_prefix,
)
from notifier.localiot import topics as localiot_topics

REGION = "us-east-1"
ACCOUNT = "123456789012"
PREFIX = "herald/dev"
ARN = f"arn:aws:iot:{REGION}:{ACCOUNT}"
# The longest prefix validate_topic_prefix accepts: 216 characters, 4 slashes (5 levels).
LONGEST_PREFIX = "/".join(["p" * 43] * 5)[:MAX_TOPIC_PREFIX_CHARS]


def iam_matches(pattern: str, value: str) -> bool:
    """IAM's resource matching: '*' is any run of characters ('/' included), '?' is one character,
    everything else is literal and case-sensitive. (fnmatch would also treat [...] as a set.)"""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, flags=re.DOTALL) is not None


def parsed(policy: dict) -> dict:
    """The document as AWS receives it: what dumps() sends, parsed back."""
    return json.loads(dumps(policy))


def by_action(policy: dict) -> dict[str, set[str]]:
    """{action: resources}, after checking each statement is a plain Allow of one action."""
    result = {}
    for statement in parsed(policy)["Statement"]:
        assert set(statement) <= {"Sid", "Effect", "Action", "Resource"}, statement  # no Not*, Condition, Principal
        assert statement["Effect"] == "Allow"
        action = statement["Action"]
        assert isinstance(action, str) and "*" not in action and "?" not in action
        resources = statement["Resource"]
        result.setdefault(action, set()).update([resources] if isinstance(resources, str) else resources)
    return result


def session(user_id=7, client_id=None, prefix=PREFIX, region=REGION, account=ACCOUNT):
    return session_policy(region=region, account=account, prefix=prefix,
                          client_id=client_id or new_client_id(user_id), user_id=user_id)


def all_regions() -> list[str]:
    """Every region botocore knows (pseudo-regions like aws-global left out)."""
    partitions = create_loader().load_data("partitions")["partitions"]
    return [r for p in partitions for r in p["regions"] if re.fullmatch(p["regionRegex"], r)]


# --- what one session may do -------------------------------------------------------------------


def test_session_policy_allows_exactly_connect_subscribe_receive_of_one_user():
    client_id = new_client_id(7)
    policy = session(7, client_id)
    document = parsed(policy)

    assert document["Version"] == "2012-10-17"
    assert len(document["Statement"]) == 3
    assert by_action(policy) == {
        "iot:Connect": {f"{ARN}:client/{client_id}"},
        "iot:Subscribe": {f"{ARN}:topicfilter/{PREFIX}/users/7/notifications",
                          f"{ARN}:topicfilter/{PREFIX}/posts/*/comments"},
        "iot:Receive": {f"{ARN}:topic/{PREFIX}/users/7/notifications", f"{ARN}:topic/{PREFIX}/posts/*/comments"},
    }
    # The client id is literal: no IAM wildcard, so it names exactly one connection.
    (connect,) = by_action(policy)["iot:Connect"]
    assert "*" not in connect and "?" not in connect


def test_session_policy_never_allows_publishing_or_everything():
    text = dumps(session(7))
    document = json.loads(text)
    actions = [s["Action"] for s in document["Statement"]]
    assert all(a.lower() != "iot:publish" and "*" not in a for a in actions)
    assert "publish" not in text.lower()
    assert not any({"NotAction", "NotResource"} & set(s) for s in document["Statement"])


def test_session_resources_cover_the_topics_herald_uses(settings):
    """The ARNs are not just well-formed: they match the topics the browser really subscribes to."""
    from notifier.topics import (
        post_comments_topic,
        post_comments_topic_filter,
        user_topic,
    )

    settings.IOT_TOPIC_PREFIX = PREFIX
    rights = by_action(session(7))
    for topic_filter in (user_topic(7), post_comments_topic_filter(), post_comments_topic(31)):
        assert any(iam_matches(r, f"{ARN}:topicfilter/{topic_filter}") for r in rights["iot:Subscribe"])
    for topic in (user_topic(7), post_comments_topic(31)):
        assert any(iam_matches(r, f"{ARN}:topic/{topic}") for r in rights["iot:Receive"])
    # ...and not the personal topic of anybody else, nor another stage's topics.
    for topic in (user_topic(70), user_topic(8), "herald/prod/users/7/notifications", "herald/dev2/posts/1/comments"):
        assert not any(iam_matches(r, f"{ARN}:topic/{topic}") for r in rights["iot:Receive"])
        assert not any(iam_matches(r, f"{ARN}:topicfilter/{topic}") for r in rights["iot:Subscribe"])
    assert not any(iam_matches(r, f"{ARN}:topicfilter/{PREFIX}/users/+/notifications") for r in rights["iot:Subscribe"])


@pytest.mark.parametrize("user_a, user_b", [(1, 12), (12, 1), (1, 2), (7, 70)])
def test_one_users_policy_names_nothing_of_another_user(user_a, user_b):
    client_a, client_b = new_client_id(user_a), new_client_id(user_b)
    rights_a = by_action(session(user_a, client_a))
    rights_b = by_action(session(user_b, client_b))
    shared = {f"{ARN}:topicfilter/{PREFIX}/posts/*/comments", f"{ARN}:topic/{PREFIX}/posts/*/comments"}
    resources_a = set().union(*rights_a.values())
    only_b = set().union(*rights_b.values()) - shared
    assert only_b and not resources_a & only_b
    # Nor does any of A's resources match B's as a pattern ('1' must not reach '12').
    assert not any(iam_matches(a, b) for a in resources_a for b in only_b)
    # B's client id has a random part: it can appear in A's document only by a bug.
    assert client_b not in dumps(session(user_a, client_a))


@pytest.mark.parametrize("client_id", [
    "herald-u7-*", "herald-u7-?", "*", "+", "#", "herald-u7/x", "herald-u7-+", "herald-u7-#",
    "herald-u7-${iot:ClientId}", "", "herald-u7 x", "someone-else-7", "herald-u" + "x" * 121, None,
])
def test_session_policy_refuses_a_client_id_that_is_not_literal(client_id):
    with pytest.raises(ValueError):
        session_policy(region=REGION, account=ACCOUNT, prefix=PREFIX, client_id=client_id, user_id=7)


@pytest.mark.parametrize("user_id", [0, -1, MAX_USER_ID + 1, True])
def test_session_policy_refuses_an_impossible_user_id(user_id):
    with pytest.raises(ValueError):
        session_policy(region=REGION, account=ACCOUNT, prefix=PREFIX, client_id="herald-u1-abc", user_id=user_id)


@pytest.mark.parametrize("region, account", [
    ("*", ACCOUNT), (REGION, "*"), (REGION, "12345678901?"), ("us-east-1:x", ACCOUNT), (REGION, "${aws:x}"),
])
def test_arns_refuse_a_pattern_for_region_or_account(region, account):
    with pytest.raises(ValueError):
        session(7, region=region, account=account)
    with pytest.raises(ValueError):
        role_policy(region=region, account=account, prefix=PREFIX)


def test_arns_use_the_regions_partition():
    (connect,) = by_action(session(7, region="us-gov-west-1"))["iot:Connect"]
    assert connect.startswith("arn:aws-us-gov:iot:us-gov-west-1:")
    (connect,) = by_action(session(7, region="cn-north-1"))["iot:Connect"]
    assert connect.startswith("arn:aws-cn:iot:cn-north-1:")


# --- the topic prefix and the size limit --------------------------------------------------------


@pytest.mark.parametrize("prefix", ["herald/dev", "h", "a/b/c/d/e", "Herald_2.0/prod-eu", LONGEST_PREFIX])
def test_validate_topic_prefix_accepts(prefix):
    assert validate_topic_prefix(prefix) == prefix


@pytest.mark.parametrize("prefix", [
    "", "/herald", "herald/", "herald//dev", "a/b/c/d/e/f", "x" * (MAX_TOPIC_PREFIX_CHARS + 1),
    "herald/*", "herald/+", "herald/#", "herald/d?v", "herald/${aws:username}", "$aws/things", "héraut", "herald dev",
])
def test_validate_topic_prefix_refuses(prefix):
    with pytest.raises(ValueError):
        validate_topic_prefix(prefix)
    with pytest.raises(ValueError):
        session(7, prefix=prefix)
    with pytest.raises(ValueError):
        role_policy(region=REGION, account=ACCOUNT, prefix=prefix)


def test_longest_prefix_keeps_every_topic_within_aws_iot_limits():
    """The limits in iot_policies follow from the emulator's copy of AWS IoT's topic limits."""
    assert len(LONGEST_PREFIX) == MAX_TOPIC_PREFIX_CHARS and LONGEST_PREFIX.count("/") == MAX_TOPIC_PREFIX_SLASHES
    for topic in (f"{LONGEST_PREFIX}/users/{MAX_USER_ID}/notifications",
                  f"{LONGEST_PREFIX}/posts/{MAX_USER_ID}/comments", f"{LONGEST_PREFIX}/posts/+/comments"):
        assert len(topic.encode()) <= localiot_topics.MAX_TOPIC_BYTES
        assert topic.count("/") <= localiot_topics.MAX_TOPIC_SLASHES
    # One more character or slash would push the longest topic over a limit.
    longest = f"{LONGEST_PREFIX}x/users/{MAX_USER_ID}/notifications"
    assert len(longest.encode()) > localiot_topics.MAX_TOPIC_BYTES


def test_session_policy_fits_sts_for_the_longest_everything():
    """Longest prefix, largest user id, longest client id new_client_id makes, every known region."""
    client_id = max((new_client_id(MAX_USER_ID) for _ in range(20)), key=len)
    sizes = {
        region: len(dumps(session(MAX_USER_ID, client_id, prefix=LONGEST_PREFIX, region=region)))
        for region in all_regions()
    }
    worst = max(sizes, key=sizes.get)
    assert sizes[worst] <= SESSION_POLICY_MAX_CHARS, (worst, sizes[worst])
    # Even a client id at AWS IoT's 128-character maximum would fit.
    longest_client_id = f"herald-u{MAX_USER_ID}-" + "x" * (128 - len(f"herald-u{MAX_USER_ID}-"))
    longest = session(MAX_USER_ID, longest_client_id, prefix=LONGEST_PREFIX, region=worst)
    assert len(dumps(longest)) <= SESSION_POLICY_MAX_CHARS


def test_session_policy_too_large_for_sts_is_refused(monkeypatch):
    client_id = f"herald-u7-{secrets.token_urlsafe(16)}"
    size = len(dumps(session(7, client_id)))
    monkeypatch.setattr(iot_policies, "SESSION_POLICY_MAX_CHARS", size)
    session(7, client_id)  # exactly at the limit: fine
    monkeypatch.setattr(iot_policies, "SESSION_POLICY_MAX_CHARS", size - 1)
    with pytest.raises(PolicyTooLarge, match=f"{size} characters"):
        session(7, client_id)
    monkeypatch.undo()
    # An absurd (but pattern-free) account string makes a real-size policy too long for STS.
    with pytest.raises(PolicyTooLarge):
        session(7, client_id, account="9" * 600)
    assert issubclass(PolicyTooLarge, ValueError)  # the credential view handles ValueError


# --- the role bounds every session; the trust policy names one principal ----------------------


@pytest.mark.parametrize("user_id", [1, 12, MAX_USER_ID])
@pytest.mark.parametrize("prefix", [PREFIX, LONGEST_PREFIX])
def test_role_policy_covers_every_session_policy(user_id, prefix):
    """Effective rights are session ∩ role: a session resource outside the role would be dead."""
    role = by_action(role_policy(region=REGION, account=ACCOUNT, prefix=prefix))
    rights = by_action(session(user_id, prefix=prefix))
    assert set(rights) == set(role) == {"iot:Connect", "iot:Subscribe", "iot:Receive"}
    for action, resources in rights.items():
        for resource in resources:
            assert any(iam_matches(pattern, resource) for pattern in role[action]), (action, resource)


def test_role_policy_stays_inside_its_prefix_and_never_publishes():
    role = by_action(role_policy(region=REGION, account=ACCOUNT, prefix=PREFIX))
    assert "iot:Publish" not in role
    assert role["iot:Connect"] == {f"{ARN}:client/herald-u*"}
    for action in ("iot:Subscribe", "iot:Receive"):
        for pattern in role[action]:
            for outside in ("herald/prod/users/1/notifications", "herald/dev2/posts/1/comments",
                            "herald/dev/admin/x", "other/herald/dev/posts/1/comments"):
                kind = "topicfilter" if action == "iot:Subscribe" else "topic"
                assert not iam_matches(pattern, f"{ARN}:{kind}/{outside}")


def test_trust_policy_names_exactly_one_principal():
    principal = f"arn:aws:iam::{ACCOUNT}:role/service-role/herald-lambda"
    document = parsed(trust_policy(principal))
    assert document["Statement"] == [
        {"Effect": "Allow", "Principal": {"AWS": principal}, "Action": "sts:AssumeRole"}
    ]


@pytest.mark.parametrize("principal", [
    "*", "", f"arn:aws:iam::{ACCOUNT}:role/*", f"arn:aws:iam::{ACCOUNT}:role/herald?",
])
def test_trust_policy_refuses_a_pattern(principal):
    with pytest.raises(ValueError):
        trust_policy(principal)


# --- a maintained IAM linter agrees -------------------------------------------------------------
#
# Every parliament finding counts, whatever its severity (LOW included): the documents are small
# and were made clean rather than filtered. The community auditors (privilege escalation,
# credentials exposure, NotResource with Allow...) run too.


def lint(document: dict, community: bool = True) -> list[tuple[str, object]]:
    from parliament import analyze_policy_string

    return [(f.issue, f.detail) for f in
            analyze_policy_string(dumps(document), include_community_auditors=community).findings]


def test_linter_is_really_checking_iot_policies():
    """Guard against a linter that passes everything: it knows IoT's actions and resource types."""
    assert lint({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "iot:Connect", "Resource": f"{ARN}:topic/x"}]})[0][0] == "RESOURCE_MISMATCH"
    assert lint({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "iot:Subscrbe", "Resource": f"{ARN}:topicfilter/x"}]})[0][0] == "UNKNOWN_ACTION"


@pytest.mark.parametrize("region", [REGION, "us-gov-west-1", "ap-southeast-5"])
def test_linter_finds_nothing_in_session_and_role_policies(region):
    assert lint(session(MAX_USER_ID, prefix=LONGEST_PREFIX, region=region)) == []
    assert lint(session(7, region=region)) == []
    assert lint(role_policy(region=region, account=ACCOUNT, prefix=PREFIX)) == []


def test_linter_finds_nothing_wrong_in_trust_policy():
    """parliament lints identity policies and does not support trust policies (issue #229 in
    duo-labs/parliament): it reports every statement without Resource as MALFORMED, while IAM
    refuses a Resource in a trust policy. That one finding is the known false positive and the only
    one allowed. To still lint the action and the principal, the same statement is linted with the
    role as its Resource: the core checks then find nothing. The community auditors add
    CREDENTIALS_EXPOSURE for sts:AssumeRole, which is the purpose of any trust policy."""
    principal = f"arn:aws:iam::{ACCOUNT}:role/service-role/herald-lambda"
    trust = trust_policy(principal)
    assert lint(trust) == [("MALFORMED", "Statement contains neither Resource nor NotResource")]

    with_resource = parsed(trust)
    with_resource["Statement"][0]["Resource"] = f"arn:aws:iam::{ACCOUNT}:role/herald-iot-browser-herald-dev"
    assert lint(with_resource, community=False) == []
    assert [issue for issue, _ in lint(with_resource)] == ["CREDENTIALS_EXPOSURE"]
