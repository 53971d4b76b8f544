"""The emulator's STS (notifier/localiot/sts.py): AssumeRole as boto3 sees it and as the wire carries it.

Success and every refusal are checked through boto3's own `sts` client (ClientError codes and
HTTP statuses, what the credential issuer handles) and, where botocore would refuse to send the
request or the exact bytes matter, as raw HTTP with AWS's XML shapes.
"""
import datetime
import http.client
import json
import re
import time
import xml.etree.ElementTree as ET
from urllib.parse import urlencode

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from notifier.aws.local import ACCOUNT, ROLE_ARN
from notifier.aws.policies import dumps, new_client_id, session_policy
from notifier.localiot.server import LocalIoT

from .iot_keys import PREFIX, ROOT_KEYS, emulator_options, iot, sign_as_of, sts_client, vend  # noqa: F401 (iot: fixture)

NS = {"sts": "https://sts.amazonaws.com/doc/2011-06-15/"}
REGION = "us-east-1"


@pytest.fixture(scope="module")
def sts(iot):
    return sts_client(iot, ROOT_KEYS)


def a_session_policy(client_id=None) -> str:
    return dumps(session_policy(region=REGION, account=ACCOUNT, prefix=PREFIX,
                                client_id=client_id or new_client_id(42), user_id=42))


def error_of(exc_info) -> tuple[int, str]:
    response = exc_info.value.response
    return response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Code"]


def raw_sts(iot, params: dict | None = None, *, sign=True, key_id=ROOT_KEYS[0], secret=ROOT_KEYS[1], token=None,
            headers: dict | None = None, body: bytes | None = None):
    """(status, parsed XML root) of one raw STS request, signed as botocore signs unless told not to."""
    body = body if body is not None else urlencode(params or {}).encode()
    request = AWSRequest(method="POST", url=f"http://127.0.0.1:{iot.http_port}/", data=body,
                         headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})
    if sign:
        SigV4Auth(Credentials(key_id, secret, token), "sts", REGION).add_auth(request)
    sent = dict(request.headers.items()) | (headers or {})
    connection = http.client.HTTPConnection("127.0.0.1", iot.http_port, timeout=30)
    try:
        connection.request("POST", "/", body=body, headers=sent)
        response = connection.getresponse()
        assert response.headers["Content-Type"] == "text/xml"
        return response.status, ET.fromstring(response.read())
    finally:
        connection.close()


def assume_params(**overrides) -> dict:
    return {"Action": "AssumeRole", "Version": "2011-06-15", "RoleArn": ROLE_ARN, "RoleSessionName": "herald-42",
            "DurationSeconds": "900", "Policy": a_session_policy()} | overrides


def assert_error_xml(root, code: str) -> None:
    """AWS's query-protocol error: ErrorResponse/Error/{Type, Code, Message} and RequestId."""
    assert root.tag == f"{{{NS['sts']}}}ErrorResponse"
    assert root.find("sts:Error/sts:Type", NS).text == "Sender"
    assert root.find("sts:Error/sts:Code", NS).text == code
    assert root.find("sts:Error/sts:Message", NS).text
    assert re.fullmatch(r"[0-9a-f-]{36}", root.find("sts:RequestId", NS).text)


# --- success ---------------------------------------------------------------------------------------


def test_assume_role_answers_like_aws(sts):
    policy = a_session_policy()
    before = datetime.datetime.now(datetime.timezone.utc)
    response = sts.assume_role(RoleArn=ROLE_ARN, RoleSessionName="herald-42", DurationSeconds=900, Policy=policy)
    after = datetime.datetime.now(datetime.timezone.utc)
    credentials = response["Credentials"]
    assert re.fullmatch(r"ASIA[A-Z2-7]{16}", credentials["AccessKeyId"])
    assert len(credentials["SecretAccessKey"]) == 40
    assert re.fullmatch(r"[A-Za-z0-9+/]+=*", credentials["SessionToken"])
    expires = credentials["Expiration"]
    # 900 s from the moment it was issued (to the second), however long the call took.
    assert before + datetime.timedelta(seconds=899) <= expires <= after + datetime.timedelta(seconds=901)
    role_name = ROLE_ARN.rsplit("/", 1)[1]
    assert response["AssumedRoleUser"]["Arn"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/{role_name}/herald-42"
    assert re.fullmatch(r"AROA[A-Z2-7]{17}:herald-42", response["AssumedRoleUser"]["AssumedRoleId"])
    assert 0 < response["PackedPolicySize"] <= 100
    assert response["ResponseMetadata"]["RequestId"]


def test_the_raw_response_is_aws_xml(iot):
    status, root = raw_sts(iot, assume_params())
    assert status == 200
    assert root.tag == f"{{{NS['sts']}}}AssumeRoleResponse"
    result = root.find("sts:AssumeRoleResult", NS)
    for path in ("sts:Credentials/sts:AccessKeyId", "sts:Credentials/sts:SecretAccessKey",
                 "sts:Credentials/sts:SessionToken", "sts:Credentials/sts:Expiration",
                 "sts:AssumedRoleUser/sts:AssumedRoleId", "sts:AssumedRoleUser/sts:Arn", "sts:PackedPolicySize"):
        assert result.find(path, NS).text, path
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", result.find("sts:Credentials/sts:Expiration", NS).text)
    assert root.find("sts:ResponseMetadata/sts:RequestId", NS).text


def test_each_session_gets_its_own_keys(sts):
    first, second = (sts.assume_role(RoleArn=ROLE_ARN, RoleSessionName="herald-42", Policy=a_session_policy())
                     ["Credentials"] for _ in range(2))
    assert first["AccessKeyId"] != second["AccessKeyId"]
    assert first["SecretAccessKey"] != second["SecretAccessKey"]


def test_boto3_finds_the_emulator_through_aws_endpoint_url_sts(iot, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", iot.http_url)
    client = boto3.client("sts", region_name=REGION, aws_access_key_id=ROOT_KEYS[0], aws_secret_access_key=ROOT_KEYS[1])
    assert client.assume_role(RoleArn=ROLE_ARN, RoleSessionName="env")["Credentials"]["AccessKeyId"].startswith("ASIA")


def test_a_session_without_a_policy_has_the_roles_rights(iot):
    keys = sts_client(iot, ROOT_KEYS).assume_role(RoleArn=ROLE_ARN, RoleSessionName="wide")["Credentials"]
    identity, _ = iot.account.resolve(keys["AccessKeyId"], keys["SessionToken"])
    assert len(identity.policies) == 1  # the role's own


# --- refusals, through boto3 ----------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, expected", [
    ({"RoleArn": f"arn:aws:iam::{ACCOUNT}:role/someone-elses-role"}, (403, "AccessDenied")),
    ({"RoleArn": "arn:aws:iam::999999999999:role/herald-iot-browser-herald-dev"}, (403, "AccessDenied")),
    ({"DurationSeconds": 3601}, (400, "ValidationError")),  # over the role's MaxSessionDuration
    ({"DurationSeconds": 43200}, (400, "ValidationError")),
    ({"Policy": json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "iot:Connect", "Resource": "arn:aws:iot:us-east-1:123456789012:client/x" + "x" * 40}
    ] * 20})}, (400, "ValidationError")),  # over 2,048 characters
    ({"Policy": "{not json"}, (400, "MalformedPolicyDocument")),
    ({"Policy": json.dumps({"Version": "2012-10-17"})}, (400, "MalformedPolicyDocument")),
    ({"Policy": json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "iot:Connect", "Resource": "*", "Condition": {"Bool": {"aws:SecureTransport": "true"}}}
    ]})}, (400, "MalformedPolicyDocument")),
    ({"Policy": json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Maybe", "Action": "iot:*", "Resource": "*"}]})},
     (400, "MalformedPolicyDocument")),
    ({"RoleSessionName": "has space"}, (400, "ValidationError")),
    ({"RoleSessionName": "x" * 65}, (400, "ValidationError")),
])
def test_assume_role_refusals_carry_aws_codes(sts, kwargs, expected):
    arguments = {"RoleArn": ROLE_ARN, "RoleSessionName": "herald-42", "DurationSeconds": 900,
                 "Policy": a_session_policy()} | kwargs
    if "Policy" in kwargs:
        assert (len(arguments["Policy"]) > 2048) == (expected == (400, "ValidationError"))
    with pytest.raises(ClientError) as exc_info:
        sts.assume_role(**arguments)
    assert error_of(exc_info) == expected
    assert exc_info.value.response["Error"]["Message"]


def test_a_caller_whose_policy_does_not_allow_assume_role_is_denied(iot):
    """Browser keys (role + session policy: IoT only) cannot mint more keys."""
    keys = vend(iot, root=ROOT_KEYS)
    client = boto3.client("sts", endpoint_url=iot.http_url, region_name=REGION, aws_access_key_id=keys.access_key_id,
                          aws_secret_access_key=keys.secret_access_key, aws_session_token=keys.session_token)
    with pytest.raises(ClientError) as exc_info:
        client.assume_role(RoleArn=ROLE_ARN, RoleSessionName="again")
    assert error_of(exc_info) == (403, "AccessDenied")
    assert "is not authorized to perform: sts:AssumeRole" in exc_info.value.response["Error"]["Message"]


def test_a_root_policy_without_assume_role_is_denied():
    from notifier.localiot.config import stage_policy

    policy = stage_policy("dev")
    policy["Statement"] = [s for s in policy["Statement"] if s["Action"] != "sts:AssumeRole"]
    running = LocalIoT(**emulator_options(root_policy=policy)).start_in_thread()
    try:
        with pytest.raises(ClientError) as exc_info:
            sts_client(running.iot, ROOT_KEYS).assume_role(RoleArn=ROLE_ARN, RoleSessionName="herald-42")
        assert error_of(exc_info) == (403, "AccessDenied")
    finally:
        running.stop()


@pytest.mark.parametrize("key_id, secret, expected", [
    (ROOT_KEYS[0], "wrong-secret", (403, "SignatureDoesNotMatch")),
    ("AKIAUNKNOWNKEY000000", ROOT_KEYS[1], (403, "InvalidClientTokenId")),
])
def test_wrong_keys_are_refused(iot, key_id, secret, expected):
    with pytest.raises(ClientError) as exc_info:
        sts_client(iot, (key_id, secret)).assume_role(RoleArn=ROLE_ARN, RoleSessionName="herald-42")
    assert error_of(exc_info) == expected


def test_expired_and_forged_session_tokens_are_refused(iot):
    issued = iot.account.sessions.issue(role_arn=ROLE_ARN, session_name="old", policy=None, duration=900,
                                        now=time.time() - 901)
    expired = boto3.client("sts", endpoint_url=iot.http_url, region_name=REGION, aws_access_key_id=issued.access_key_id,
                           aws_secret_access_key=issued.secret_access_key, aws_session_token=issued.session_token)
    with pytest.raises(ClientError) as exc_info:
        expired.assume_role(RoleArn=ROLE_ARN, RoleSessionName="again")
    assert error_of(exc_info) == (403, "ExpiredToken")

    fresh = iot.account.sessions.issue(role_arn=ROLE_ARN, session_name="new", policy=None, duration=900)
    other = iot.account.sessions.issue(role_arn=ROLE_ARN, session_name="other", policy=None, duration=900)
    for key_id, token in [
        (fresh.access_key_id, fresh.session_token[:-6] + "AAAAA="),  # tampered
        (fresh.access_key_id, other.session_token),  # another session's token
        (fresh.access_key_id, "bm90IGEgdG9rZW4="),
    ]:
        client = boto3.client("sts", endpoint_url=iot.http_url, region_name=REGION, aws_access_key_id=key_id,
                              aws_secret_access_key=fresh.secret_access_key, aws_session_token=token)
        with pytest.raises(ClientError) as exc_info:
            client.assume_role(RoleArn=ROLE_ARN, RoleSessionName="again")
        assert error_of(exc_info) == (403, "InvalidClientTokenId")


def test_a_request_signed_16_minutes_ago_is_refused(iot, monkeypatch):
    sign_as_of(monkeypatch, datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=16))
    with pytest.raises(ClientError) as exc_info:
        sts_client(iot, ROOT_KEYS).assume_role(RoleArn=ROLE_ARN, RoleSessionName="herald-42")
    assert error_of(exc_info) == (403, "SignatureDoesNotMatch")
    assert "Signature expired" in exc_info.value.response["Error"]["Message"]


def test_other_actions_are_invalid(sts):
    with pytest.raises(ClientError) as exc_info:
        sts.get_caller_identity()
    assert error_of(exc_info) == (400, "InvalidAction")


# --- refusals, on the wire ------------------------------------------------------------------------


@pytest.mark.parametrize("params, expected", [
    ({"DurationSeconds": "100"}, (400, "ValidationError")),  # botocore itself refuses to send this
    ({"DurationSeconds": "lots"}, (400, "ValidationError")),
    ({"RoleSessionName": "x"}, (400, "ValidationError")),
    ({"RoleArn": None}, (400, "ValidationError")),
    ({"Policy": ""}, (400, "ValidationError")),
    ({"Action": "AssumeRoleWithWebIdentity"}, (400, "InvalidAction")),
    ({"Version": "2011-06-16"}, (400, "InvalidAction")),
    ({"RoleArn": "arn:aws:iam::123456789012:role/nobody"}, (403, "AccessDenied")),
    ({"Policy": "[]"}, (400, "MalformedPolicyDocument")),
])
def test_raw_refusals_have_aws_xml_error_shape(iot, params, expected):
    status, root = raw_sts(iot, {k: v for k, v in assume_params(**params).items() if v is not None})
    assert status == expected[0]
    assert_error_xml(root, expected[1])


def test_signature_problems_on_the_wire(iot):
    status, root = raw_sts(iot, assume_params(), sign=False)
    assert status == 403
    assert_error_xml(root, "MissingAuthenticationToken")

    status, root = raw_sts(iot, assume_params(), headers={"Authorization": "AWS4-HMAC-SHA256 Credential=x"})
    assert status == 400
    assert_error_xml(root, "IncompleteSignature")

    status, root = raw_sts(iot, assume_params(), secret="not-the-secret")
    assert status == 403
    assert_error_xml(root, "SignatureDoesNotMatch")

    status, root = raw_sts(iot, assume_params(), key_id="AKIAUNKNOWNKEY000000")
    assert status == 403
    assert_error_xml(root, "InvalidClientTokenId")

    # A body changed after signing.
    request = AWSRequest(method="POST", url=f"http://127.0.0.1:{iot.http_port}/", data=urlencode(assume_params()).encode(),
                         headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})
    SigV4Auth(Credentials(*ROOT_KEYS), "sts", REGION).add_auth(request)
    headers = {k: v for k, v in request.headers.items() if k.lower() != "x-amz-content-sha256"}
    forged = urlencode(assume_params(DurationSeconds="3600")).encode()
    status, root = raw_sts(iot, sign=False, headers=headers, body=forged)
    assert status == 403
    assert_error_xml(root, "SignatureDoesNotMatch")


def test_a_malformed_policy_is_refused_at_assume_role_not_later(sts):
    """IoT Core never sees a malformed session policy: STS refuses it when the keys are asked for."""
    with pytest.raises(ClientError) as exc_info:
        sts.assume_role(RoleArn=ROLE_ARN, RoleSessionName="herald-42",
                        Policy='{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:Connect"}]}')
    assert error_of(exc_info) == (400, "MalformedPolicyDocument")
