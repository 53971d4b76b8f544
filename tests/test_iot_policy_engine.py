"""The emulator's IAM evaluator (notifier.localiot.policy) against AWS's documented behaviour.

Each group of the table comes from a documented AWS example (named by page title in a comment),
so a verdict here is the verdict AWS IoT Core gives, not what the emulator happens to do.
"""
import json
import time

import pytest

from notifier.aws.policies import role_policy, session_policy
from notifier.localiot import policy
from notifier.localiot.policy import MalformedPolicy, allowed, iot_resource, parse

REGION = "us-east-1"
ACCOUNT = "123456789012"
ARN = f"arn:aws:iot:{REGION}:{ACCOUNT}"


def doc(*statements, version="2012-10-17"):
    document = {"Statement": list(statements)}
    if version is not None:
        document["Version"] = version
    return document


def allow(action, resource, key="Action", rkey="Resource"):
    return {"Effect": "Allow", key: action, rkey: resource}


def deny(action, resource, key="Action", rkey="Resource"):
    return {"Effect": "Deny", key: action, rkey: resource}


def client(name):
    return iot_resource(REGION, ACCOUNT, "client", name)


def topic(name):
    return iot_resource(REGION, ACCOUNT, "topic", name)


def topicfilter(name):
    return iot_resource(REGION, ACCOUNT, "topicfilter", name)


# "Publish/Subscribe policy examples", Unregistered devices (5): connect as client1..3, publish
# under the client id.
PUBLISH_OWN = doc(
    allow(["iot:Connect"], [f"{ARN}:client/client1", f"{ARN}:client/client2", f"{ARN}:client/client3"]),
    allow(["iot:Publish"], [f"{ARN}:topic/${{iot:ClientId}}/*"]),
)
# "Publish/Subscribe policy examples", Unregistered devices (6): subscribe to and receive
# "<client id>/room*".
ROOMS = doc(
    allow(["iot:Connect"], [f"{ARN}:client/client1"]),
    allow(["iot:Subscribe"], [f"{ARN}:topicfilter/${{iot:ClientId}}/room*"]),
    allow(["iot:Receive"], [f"{ARN}:topic/${{iot:ClientId}}/room*"]),
)
# "Publish/Subscribe policy examples", Unregistered devices (4): '+' is literal, '*' is a wildcard.
PLUS_LITERAL = doc(allow(["iot:Subscribe"], [f"{ARN}:topicfilter/some/+/topic"]))
STAR_LEVEL = doc(allow(["iot:Subscribe"], [f"{ARN}:topicfilter/some/*/topic"]))
# Same page, "The MQTT wildcards + and # are treated as literal strings": '#' likewise.
HASH_LITERAL = doc(allow(["iot:Subscribe"], [f"{ARN}:topicfilter/some/#"]))
# "Publish/Subscribe policy examples", Unregistered devices (9): publish under the client id except
# "<client id>/bar" (an explicit Deny overrides the Allow).
EXCEPT_BAR = doc(
    allow(["iot:Publish"], [f"{ARN}:topic/${{iot:ClientId}}/*"]),
    deny(["iot:Publish"], [f"{ARN}:topic/${{iot:ClientId}}/bar"]),
)
# "Publish/Subscribe policy examples", Receive policy examples, Unregistered devices (11).
RECEIVE_ONE = doc(
    allow(["iot:Connect"], [f"{ARN}:client/client1"]),
    allow(["iot:Subscribe"], [f"{ARN}:topicfilter/my/topic"]),
    allow(["iot:Receive"], [f"{ARN}:topic/my/topic"]),
)
# "IAM JSON policy elements: Action" and "... Resource": '*' and '?' in actions and in any ARN
# segment; "?" is exactly one character.
QUESTION = doc(allow("iot:Connec?", f"{ARN}:client/client?"))
ACTION_STAR = doc(allow("iot:*", f"arn:aws:iot:*:{ACCOUNT}:topic/*"))
# "IAM JSON policy elements: NotAction" / "NotResource".
ALL_BUT_PUBLISH = doc(allow("iot:Publish", "*", key="NotAction"))
ONLY_UNDER_MY = doc(allow("iot:*", "*"), deny("iot:*", f"{ARN}:topic/my/*", rkey="NotResource"))
OWN_PREFIX_ONLY = doc(allow("iot:*", "*"), deny("iot:Publish", f"{ARN}:topic/${{iot:ClientId}}/*", rkey="NotResource"))
# "IAM policy elements: Variables and tags", Special characters: ${*}, ${?}, ${$} are literal.
ESCAPES = doc(allow("iot:Publish", [f"{ARN}:topic/star${{*}}", f"{ARN}:topic/what${{?}}", f"{ARN}:topic/${{$}}aws/x"]))
# "IAM JSON policy elements: Version": with 2008-10-17 variables are literal text.
OLD_VERSION = doc(allow("iot:Publish", f"{ARN}:topic/${{iot:ClientId}}/x"), version="2008-10-17")
# "Policies for HTTP and WebSocket clients": "An action is allowed only if both policies allow the
# requested action" (role policy and the narrower policy; as with a session policy).
ROLE_WIDE = doc(allow("iot:*", f"{ARN}:*"))
SESSION_NARROW = doc(allow("iot:Receive", f"{ARN}:topic/a/*"))
ROLE_NARROW = doc(allow("iot:Receive", f"{ARN}:topic/a/*"))
SESSION_WIDE = doc(allow("iot:*", "*"))

C1 = {"iot:ClientId": "client1"}

CASES = [
    # (id, policies, action, resource, variables, expected)
    ("connect-listed-client", [PUBLISH_OWN], "iot:Connect", client("client1"), C1, True),
    ("connect-unlisted-client", [PUBLISH_OWN], "iot:Connect", client("client4"), None, False),
    ("connect-resource-case-sensitive", [PUBLISH_OWN], "iot:Connect", client("Client1"), None, False),
    ("action-case-insensitive-upper", [PUBLISH_OWN], "IOT:CONNECT", client("client2"), None, True),
    ("action-case-insensitive-lower", [PUBLISH_OWN], "iot:connect", client("client3"), None, True),
    ("publish-under-own-client-id", [PUBLISH_OWN], "iot:Publish", topic("client1/temp"), C1, True),
    ("publish-under-other-client-id", [PUBLISH_OWN], "iot:Publish", topic("client2/temp"), C1, False),
    ("publish-without-client-id-variable", [PUBLISH_OWN], "iot:Publish", topic("client1/temp"), None, False),
    # No value is not an empty string: "topic/${iot:ClientId}/*" must not become "topic//*".
    ("missing-variable-is-not-empty", [PUBLISH_OWN], "iot:Publish", topic("/temp"), None, False),
    ("subscribe-not-granted", [PUBLISH_OWN], "iot:Subscribe", topicfilter("client1/temp"), C1, False),
    ("subscribe-room-star", [ROOMS], "iot:Subscribe", topicfilter("client1/room1"), C1, True),
    ("subscribe-room-star-empty-run", [ROOMS], "iot:Subscribe", topicfilter("client1/room"), C1, True),
    ("subscribe-other-prefix", [ROOMS], "iot:Subscribe", topicfilter("client1/kitchen"), C1, False),
    ("receive-room", [ROOMS], "iot:Receive", topic("client1/room2"), C1, True),
    ("receive-needs-topic-not-topicfilter", [ROOMS], "iot:Receive", topicfilter("client1/room2"), C1, False),
    ("client-id-star-stays-literal", [ROOMS], "iot:Subscribe", topicfilter("client1/room1"), {"iot:ClientId": "cli*"}, False),
    ("client-id-star-matches-itself", [ROOMS], "iot:Subscribe", topicfilter("cli*/room1"), {"iot:ClientId": "cli*"}, True),
    ("client-id-question-stays-literal", [ROOMS], "iot:Receive", topic("client1/room1"), {"iot:ClientId": "client?"}, False),
    ("variable-name-case-insensitive", [ROOMS], "iot:Receive", topic("client1/room1"), {"IOT:CLIENTID": "client1"}, True),
    ("plus-literal-matches-plus", [PLUS_LITERAL], "iot:Subscribe", topicfilter("some/+/topic"), None, True),
    ("plus-literal-not-a-level", [PLUS_LITERAL], "iot:Subscribe", topicfilter("some/x/topic"), None, False),
    ("plus-literal-not-hash", [PLUS_LITERAL], "iot:Subscribe", topicfilter("some/#"), None, False),
    ("hash-literal-matches-hash", [HASH_LITERAL], "iot:Subscribe", topicfilter("some/#"), None, True),
    ("hash-literal-not-subtopic", [HASH_LITERAL], "iot:Subscribe", topicfilter("some/a"), None, False),
    ("star-level", [STAR_LEVEL], "iot:Subscribe", topicfilter("some/string1/topic"), None, True),
    ("star-matches-plus-filter", [STAR_LEVEL], "iot:Subscribe", topicfilter("some/+/topic"), None, True),
    ("star-crosses-slashes", [STAR_LEVEL], "iot:Subscribe", topicfilter("some/a/b/topic"), None, True),
    ("deny-wins-over-allow", [EXCEPT_BAR], "iot:Publish", topic("client1/bar"), C1, False),
    ("allow-beside-deny", [EXCEPT_BAR], "iot:Publish", topic("client1/foo"), C1, True),
    ("deny-is-exact", [EXCEPT_BAR], "iot:Publish", topic("client1/bar/baz"), C1, True),
    ("receive-one-topic", [RECEIVE_ONE], "iot:Receive", topic("my/topic"), None, True),
    ("receive-other-topic", [RECEIVE_ONE], "iot:Receive", topic("my/other"), None, False),
    ("subscribe-one-filter", [RECEIVE_ONE], "iot:Subscribe", topicfilter("my/topic"), None, True),
    ("publish-never-granted", [RECEIVE_ONE], "iot:Publish", topic("my/topic"), None, False),
    ("question-one-char", [QUESTION], "iot:Connect", client("client7"), None, True),
    ("question-not-two-chars", [QUESTION], "iot:Connect", client("client10"), None, False),
    ("question-not-zero-chars", [QUESTION], "iot:Connect", client("client"), None, False),
    ("action-star", [ACTION_STAR], "iot:DeleteConnection", topic("x"), None, True),
    ("action-star-other-service", [ACTION_STAR], "sts:AssumeRole", topic("x"), None, False),
    ("region-star", [ACTION_STAR], "iot:Publish", f"arn:aws:iot:eu-west-1:{ACCOUNT}:topic/x", None, True),
    ("star-does-not-cross-arn-segments", [ACTION_STAR], "iot:Publish",
     f"arn:aws:iot:eu-west-1:999999999999:{ACCOUNT}:topic/x", None, False),
    ("notaction-allows-others", [ALL_BUT_PUBLISH], "iot:Subscribe", topicfilter("any"), None, True),
    ("notaction-excludes-publish", [ALL_BUT_PUBLISH], "iot:Publish", topic("any"), None, False),
    ("deny-notresource-inside", [ONLY_UNDER_MY], "iot:Publish", topic("my/x"), None, True),
    ("deny-notresource-outside", [ONLY_UNDER_MY], "iot:Publish", topic("other/x"), None, False),
    ("deny-notresource-own-prefix", [OWN_PREFIX_ONLY], "iot:Publish", topic("client1/x"), C1, True),
    ("deny-notresource-other-prefix", [OWN_PREFIX_ONLY], "iot:Publish", topic("client2/x"), C1, False),
    # No value: the NotResource entry matches nothing, so the Deny covers every resource.
    ("deny-notresource-missing-variable", [OWN_PREFIX_ONLY], "iot:Publish", topic("client1/x"), None, False),
    # No value: the Deny's resource matches nothing, so it denies nothing (and the Allow has none).
    ("deny-resource-missing-variable", [doc(allow("iot:*", "*"), *EXCEPT_BAR["Statement"][1:])],
     "iot:Publish", topic("client1/bar"), None, True),
    ("deny-resource-missing-variable-not-empty", [doc(allow("iot:*", "*"), *EXCEPT_BAR["Statement"][1:])],
     "iot:Publish", topic("/bar"), None, True),
    ("deny-notresource-missing-variable-not-empty", [OWN_PREFIX_ONLY], "iot:Publish", topic("/x"), None, False),
    ("escape-star-literal", [ESCAPES], "iot:Publish", topic("star*"), None, True),
    ("escape-star-not-wildcard", [ESCAPES], "iot:Publish", topic("starX"), None, False),
    ("escape-question-literal", [ESCAPES], "iot:Publish", topic("what?"), None, True),
    ("escape-question-not-wildcard", [ESCAPES], "iot:Publish", topic("whatX"), None, False),
    ("escape-dollar", [ESCAPES], "iot:Publish", topic("$aws/x"), None, True),
    ("old-version-variable-is-text", [OLD_VERSION], "iot:Publish", topic("client1/x"), C1, False),
    ("old-version-variable-literal-match", [OLD_VERSION], "iot:Publish", topic("${iot:ClientId}/x"), C1, True),
    ("session-narrower-allows-inside", [ROLE_WIDE, SESSION_NARROW], "iot:Receive", topic("a/1"), None, True),
    ("session-narrower-denies-outside", [ROLE_WIDE, SESSION_NARROW], "iot:Receive", topic("b/1"), None, False),
    ("session-narrower-denies-action", [ROLE_WIDE, SESSION_NARROW], "iot:Publish", topic("a/1"), None, False),
    ("role-narrower-bounds-session", [ROLE_NARROW, SESSION_WIDE], "iot:Publish", topic("a/1"), None, False),
    ("role-narrower-inside", [SESSION_WIDE, ROLE_NARROW], "iot:Receive", topic("a/9"), None, True),
    ("deny-in-either-policy", [SESSION_WIDE, EXCEPT_BAR], "iot:Publish", topic("client1/bar"), C1, False),
    ("no-policies-allow-nothing", [], "iot:Connect", client("client1"), None, False),
]


@pytest.mark.parametrize(("policies", "action", "resource", "variables", "expected"),
                         [pytest.param(*c[1:], id=c[0]) for c in CASES])
def test_documented_verdicts(policies, action, resource, variables, expected):
    assert allowed([parse(p) for p in policies], action, resource, variables) is expected


# Herald's own documents (notifier/aws/policies.py): the role policy bounds every session, the
# session policy names one user and one connection. Both are evaluated together, as STS does.
PREFIX = "herald/dev"
CLIENT_ID = "herald-u7-0f3a9c"
HERALD = [
    role_policy(region=REGION, account=ACCOUNT, prefix=PREFIX),
    session_policy(region=REGION, account=ACCOUNT, prefix=PREFIX, client_id=CLIENT_ID, user_id=7),
]


@pytest.mark.parametrize(("action", "resource", "expected"), [
    pytest.param("iot:Connect", client(CLIENT_ID), True, id="connect-own-client-id"),
    pytest.param("iot:Connect", client("herald-u7-other"), False, id="connect-other-own-prefix-id"),
    pytest.param("iot:Connect", client("herald-u8-0f3a9c"), False, id="connect-as-user-8"),
    pytest.param("iot:Subscribe", topicfilter(f"{PREFIX}/users/7/notifications"), True, id="subscribe-own"),
    pytest.param("iot:Subscribe", topicfilter(f"{PREFIX}/posts/+/comments"), True, id="subscribe-comments-filter"),
    pytest.param("iot:Subscribe", topicfilter(f"{PREFIX}/users/8/notifications"), False, id="subscribe-user-8"),
    pytest.param("iot:Subscribe", topicfilter(f"{PREFIX}/users/+/notifications"), False, id="subscribe-all-users"),
    pytest.param("iot:Subscribe", topicfilter(f"{PREFIX}/#"), False, id="subscribe-hash"),
    pytest.param("iot:Receive", topic(f"{PREFIX}/posts/12/comments"), True, id="receive-post-comments"),
    pytest.param("iot:Receive", topic(f"{PREFIX}/users/7/notifications"), True, id="receive-own"),
    pytest.param("iot:Receive", topic(f"{PREFIX}/users/8/notifications"), False, id="receive-user-8"),
    pytest.param("iot:Publish", topic(f"{PREFIX}/users/7/notifications"), False, id="publish-own"),
    pytest.param("iot:Publish", topic(f"{PREFIX}/posts/12/comments"), False, id="publish-comments"),
])
def test_herald_role_and_session_policy(action, resource, expected):
    policies = [parse(p) for p in HERALD]
    assert allowed(policies, action, resource, {"iot:ClientId": CLIENT_ID}) is expected


def test_herald_role_alone_is_wider_than_the_session():
    """The intersection is what keeps user 7 out of user 8's topic: the role alone would allow it."""
    role = parse(HERALD[0])
    assert allowed([role], "iot:Subscribe", topicfilter(f"{PREFIX}/users/8/notifications"))
    assert not allowed([role, parse(HERALD[1])], "iot:Subscribe", topicfilter(f"{PREFIX}/users/8/notifications"))


@pytest.mark.parametrize(("document", "message"), [
    pytest.param('{"Version": "2012-10-17", "Statement": [', "Syntax errors in policy", id="not-json"),
    pytest.param(json.dumps(["not", "an", "object"]), "must be a JSON object", id="not-an-object"),
    pytest.param(doc({"Effect": "Permit", "Action": "iot:Connect", "Resource": "*"}), "Effect must be", id="bad-effect"),
    pytest.param(doc({"Effect": "allow", "Action": "iot:Connect", "Resource": "*"}), "Effect must be", id="effect-case"),
    pytest.param(doc({"Effect": "Allow", "Action": "iot:Connect"}), "must contain resources", id="missing-resource"),
    pytest.param(doc({"Effect": "Allow", "Resource": "*"}), "must contain actions", id="missing-action"),
    pytest.param(doc({"Effect": "Allow", "Action": "iot:Connect", "NotAction": "iot:Publish", "Resource": "*"}),
                 "either Action or NotAction", id="action-and-notaction"),
    pytest.param(doc({"Effect": "Allow", "Action": "iot:Connect", "Resource": "*", "NotResource": "*"}),
                 "either Resource or NotResource", id="resource-and-notresource"),
    pytest.param(doc({"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "iot:Connect", "Resource": "*"}),
                 "should not specify a principal", id="principal"),
    pytest.param(doc({"Effect": "Deny", "Action": "iot:*", "Resource": "*",
                      "Condition": {"Bool": {"aws:SecureTransport": "false"}}}),
                 "does not evaluate condition keys", id="condition"),
    pytest.param(doc(allow("iot:Connect", "*"), version="2012-10-18"), "Version must be", id="wrong-version"),
    pytest.param({"Version": "2012-10-17", "Statement": []}, "non-empty list", id="empty-statement-list"),
    pytest.param({"Version": "2012-10-17"}, "Missing required field Statement", id="no-statement"),
    pytest.param({"Version": "2012-10-17", "Statement": [], "Extra": 1}, "unknown element", id="unknown-top-key"),
    pytest.param(doc({"Effect": "Allow", "Action": "iot:Connect", "Resource": "*", "Effects": "x"}),
                 "unknown element", id="unknown-statement-key"),
    pytest.param(doc({"Sid": 1, "Effect": "Allow", "Action": "iot:Connect", "Resource": "*"}),
                 "Sid must be a string", id="sid-not-string"),
    pytest.param(doc(allow("Connect", "*")), "prefaced by a vendor", id="action-without-service"),
    pytest.param(doc(allow("iot:Connect:x", "*")), "only one colon", id="action-two-colons"),
    pytest.param(doc(allow([], "*")), "non-empty list of strings", id="empty-action-list"),
    pytest.param(doc(allow("iot:Connect", ["*", 3])), "non-empty list of strings", id="resource-not-string"),
    pytest.param(doc(allow("iot:Connect", "client/x")), 'ARN format or "*"', id="resource-not-arn"),
    pytest.param(doc(allow("iot:Connect", "arn:aws:iot:${aws:Region}:1:client/x")),
                 "after the fifth colon", id="variable-before-resource-part"),
    pytest.param(doc(allow("iot:Connect", f"{ARN}:client/${{}}")), "Invalid policy variable", id="empty-variable"),
])
def test_parse_refuses_malformed_documents(document, message):
    with pytest.raises(MalformedPolicy) as refused:
        parse(document)
    assert message in str(refused.value)


def test_parse_accepts_json_text_single_statement_and_absent_version():
    text = '{"Statement": {"Sid": "One", "Effect": "Allow", "Action": "iot:Connect", "Resource": "*"}}'
    assert allowed([parse(text)], "iot:Connect", client("anything"))


def test_iot_resource_names_the_kind():
    assert iot_resource("eu-west-1", "1", "topicfilter", "a/+/b") == "arn:aws:iot:eu-west-1:1:topicfilter/a/+/b"
    assert iot_resource("cn-north-1", "1", "client", "c", partition="aws-cn") == "arn:aws-cn:iot:cn-north-1:1:client/c"
    with pytest.raises(ValueError):
        iot_resource(REGION, ACCOUNT, "thing", "x")


def test_pathological_pattern_does_bounded_work(monkeypatch):
    """Many stars against a 256-byte topic: work stays within len(text) x pieces, no backtracking.

    A naive regex or recursive matcher takes exponential time on `*a*a*...*b` against `aaa...a`.
    """
    calls = []
    real = policy._chunk_at
    monkeypatch.setattr(policy, "_chunk_at", lambda *a: calls.append(1) or real(*a))
    pattern = "*a" * 300 + "*b"
    compiled = parse(doc(allow("iot:*", f"{ARN}:topic/{pattern}")))
    text = "a" * 256
    started = time.monotonic()
    assert not allowed([compiled], "iot:Publish", topic(text))
    assert allowed([compiled], "iot:Publish", topic("a" * 300 + "b"))
    elapsed = time.monotonic() - started
    pieces = pattern.count("*") + 1
    segments = 6
    assert len(calls) <= 2 * (segments + pieces * (len(topic("a" * 300 + "b")) + 1))
    assert elapsed < 5  # a guard against a hang only; the bound above is the real assertion
