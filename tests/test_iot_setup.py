"""`manage.py iot_setup`: creates the IAM role the credential view assumes, and repairs it.

Runs against moto's in-memory AWS. Every botocore API call the command makes is recorded
(`aws_calls`), so "nothing changed" is checked as "no write call was made", not only as output
text; and --dry-run is checked to make no call at all, with no credentials and no mock around.
"""
import json
import re
from io import StringIO

import boto3
import botocore.session
import pytest
from botocore.client import BaseClient
from botocore.exceptions import ClientError, EndpointConnectionError
from django.core.management import call_command
from django.core.management.base import CommandError
from moto import mock_aws

from notifier.aws import iot_setup
from notifier.aws.policies import role_policy, trust_policy

REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's account
PREFIX = "herald/dev"
ROLE = "herald-iot-browser-herald-dev"
LAMBDA_ROLE = f"arn:aws:iam::{ACCOUNT}:role/service-role/herald-lambda"
WRITES = ("Create", "Update", "Put", "Tag", "Untag", "Delete", "Attach", "Detach")


@pytest.fixture(autouse=True)
def _stage(settings):
    settings.AWS_REGION = REGION
    settings.IOT_TOPIC_PREFIX = PREFIX


@pytest.fixture
def no_aws(monkeypatch, tmp_path):
    """No credentials from anywhere: environment, files, profiles, instance metadata."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
                 "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE",
                 "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)


_LOADER = botocore.loaders.create_loader()


class _SessionSharingModels(boto3.session.Session):
    """A boto3 Session whose service models come from one shared, caching loader.

    The command opens a new Session per run, which parses botocore's large JSON models again
    (about half a second each run); sharing the loader keeps this file fast. Credentials and
    everything else stay per session.
    """

    def __init__(self, *args, **kwargs):
        core = botocore.session.get_session()
        core.register_component("data_loader", _LOADER)
        super().__init__(*args, botocore_session=core, **kwargs)


@pytest.fixture
def aws(no_aws, monkeypatch):
    """Fake credentials and moto's AWS; yields an IAM client to look at (or tamper with) the role."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setattr(boto3.session, "Session", _SessionSharingModels)
    with mock_aws():
        yield _SessionSharingModels(region_name=REGION).client("iam")


@pytest.fixture
def aws_calls(monkeypatch):
    """Names of the AWS operations called from now on (clear() it to start counting again)."""
    calls = []
    original = BaseClient._make_api_call

    def recording(self, operation_name, params):
        calls.append(operation_name)
        return original(self, operation_name, params)

    monkeypatch.setattr(BaseClient, "_make_api_call", recording)
    return calls


def setup(*args) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("iot_setup", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def writes(calls) -> list[str]:
    return [name for name in calls if name.startswith(WRITES)]


def inline_policy(iam) -> dict:
    return iam.get_role_policy(RoleName=ROLE, PolicyName=iot_setup.ROLE_POLICY_NAME)["PolicyDocument"]


def desired_inline() -> dict:
    return role_policy(region=REGION, account=ACCOUNT, prefix=PREFIX)


# --- create, then leave alone --------------------------------------------------------------------


def test_first_run_creates_the_role_with_trust_and_inline_policy(aws):
    out, err = setup("--principal", LAMBDA_ROLE)

    role = aws.get_role(RoleName=ROLE)["Role"]
    assert role["AssumeRolePolicyDocument"] == trust_policy(LAMBDA_ROLE)
    assert inline_policy(aws) == desired_inline()
    assert role["MaxSessionDuration"] == 3600
    assert {t["Key"]: t["Value"] for t in role["Tags"]} == {"app": "herald", "herald:topic-prefix": PREFIX}

    # (moto makes up a new endpoint on every call; AWS's is stable per account and region)
    endpoint = re.search(r"^IoT data endpoint: ([a-z0-9]+-ats\.iot\.us-east-1\.amazonaws\.com)$", out,
                         re.MULTILINE).group(1)
    assert f"Created role {ROLE}:" in out
    assert f"Trusted principal: {LAMBDA_ROLE} (--principal)." in out
    assert f"Role ARN: {role['Arn']}" in out
    assert f"\nIOT_ROLE_ARN={role['Arn']}\n" in out
    assert f"\nIOT_DATA_ENDPOINT={endpoint}\n" in out
    assert err == ""


def test_second_run_changes_nothing_and_says_so(aws, aws_calls):
    setup("--principal", LAMBDA_ROLE)
    aws_calls.clear()

    out, _ = setup("--principal", LAMBDA_ROLE)

    assert f"Role {ROLE} is up to date; nothing changed." in out
    assert "IOT_ROLE_ARN=arn:aws:iam::" in out
    assert "GetRole" in aws_calls and "GetRolePolicy" in aws_calls  # it did look
    assert writes(aws_calls) == []


def test_equivalent_spelling_of_the_same_policy_is_not_a_change(aws, aws_calls):
    """IAM may hand back one-element lists, another order, no Sids: the same permissions."""
    setup("--principal", LAMBDA_ROLE)
    respelled = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": [s["Action"].lower()], "Resource": sorted(s["Resource"], reverse=True)
         if isinstance(s["Resource"], list) else [s["Resource"]]}
        for s in reversed(desired_inline()["Statement"])
    ]}
    aws.put_role_policy(RoleName=ROLE, PolicyName=iot_setup.ROLE_POLICY_NAME, PolicyDocument=json.dumps(respelled))
    aws.update_assume_role_policy(RoleName=ROLE, PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Principal": {"AWS": [LAMBDA_ROLE]},
                                                "Action": ["sts:AssumeRole"]}}))
    aws_calls.clear()

    out, _ = setup("--principal", LAMBDA_ROLE)

    assert "is up to date; nothing changed." in out
    assert writes(aws_calls) == []


# --- repair drift ----------------------------------------------------------------------------------


def test_drifted_inline_policy_is_repaired_and_reported(aws, aws_calls):
    setup("--principal", LAMBDA_ROLE)
    widened = desired_inline()
    widened["Statement"].append({"Effect": "Allow", "Action": "iot:Publish", "Resource": "*"})
    aws.put_role_policy(RoleName=ROLE, PolicyName=iot_setup.ROLE_POLICY_NAME, PolicyDocument=json.dumps(widened))
    aws_calls.clear()

    out, _ = setup("--principal", LAMBDA_ROLE)

    assert f"Updated role {ROLE}:" in out
    assert f"  - inline policy {iot_setup.ROLE_POLICY_NAME}: replaced" in out
    assert "      removed: {\"Action\":[\"iot:publish\"],\"Effect\":\"Allow\",\"Resource\":[\"*\"]}" in out
    assert "trust policy" not in out
    assert writes(aws_calls) == ["PutRolePolicy"]
    assert inline_policy(aws) == desired_inline()

    aws_calls.clear()
    assert "nothing changed" in setup("--principal", LAMBDA_ROLE)[0]
    assert writes(aws_calls) == []


def test_drifted_trust_policy_and_session_duration_are_repaired(aws, aws_calls):
    setup("--principal", LAMBDA_ROLE)
    account_root = trust_policy(f"arn:aws:iam::{ACCOUNT}:root")
    aws.update_assume_role_policy(RoleName=ROLE, PolicyDocument=json.dumps(account_root))
    aws.update_role(RoleName=ROLE, MaxSessionDuration=43200)
    aws_calls.clear()

    out, _ = setup("--principal", LAMBDA_ROLE)

    assert "  - trust policy: replaced" in out
    statement = '{{"Action":["sts:assumerole"],"Effect":"Allow","Principal":{{"AWS":["{}"]}}}}'
    assert "      removed: " + statement.format(ACCOUNT) in out  # the root ARN, read as its account
    assert "      added:   " + statement.format(LAMBDA_ROLE) in out
    assert "  - max session duration: 43200 s -> 3600 s" in out
    assert sorted(writes(aws_calls)) == ["UpdateAssumeRolePolicy", "UpdateRole"]
    role = aws.get_role(RoleName=ROLE)["Role"]
    assert role["AssumeRolePolicyDocument"] == trust_policy(LAMBDA_ROLE)
    assert role["MaxSessionDuration"] == 3600


def test_missing_inline_policy_is_added(aws, aws_calls):
    setup("--principal", LAMBDA_ROLE)
    aws.delete_role_policy(RoleName=ROLE, PolicyName=iot_setup.ROLE_POLICY_NAME)

    out, _ = setup("--principal", LAMBDA_ROLE)

    assert f"  - inline policy {iot_setup.ROLE_POLICY_NAME}: added" in out
    assert inline_policy(aws) == desired_inline()


def test_role_of_another_prefix_is_refused_not_repointed(aws, aws_calls):
    setup("--principal", LAMBDA_ROLE)
    aws_calls.clear()

    with pytest.raises(CommandError, match="serves topic prefix 'herald/dev'.*--role-name"):
        setup("--principal", LAMBDA_ROLE, "--prefix", "herald/prod", "--role-name", ROLE)
    assert writes(aws_calls) == []


def test_policies_not_managed_by_iot_setup_are_reported(aws):
    setup("--principal", LAMBDA_ROLE)
    extra = aws.create_policy(PolicyName="extra", PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "iot:Publish", "Resource": "*"}]}))["Policy"]["Arn"]
    aws.attach_role_policy(RoleName=ROLE, PolicyArn=extra)
    aws.put_role_policy(RoleName=ROLE, PolicyName="by-hand", PolicyDocument=json.dumps({"Version": "2012-10-17",
                        "Statement": [{"Effect": "Allow", "Action": "iot:Publish", "Resource": "*"}]}))

    out, err = setup("--principal", LAMBDA_ROLE)

    assert "nothing changed" in out
    assert "also has inline policies by-hand, not managed by iot_setup" in err
    assert f"also has attached policies {extra}, not managed by iot_setup" in err


# --- who is trusted ---------------------------------------------------------------------------------


def test_principal_defaults_to_the_callers_role_with_its_path(aws, monkeypatch):
    """Run as the Lambda role would: an assumed-role session becomes the role's full ARN."""
    lambda_trust = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
    created = aws.create_role(RoleName="herald-lambda", Path="/service-role/",
                              AssumeRolePolicyDocument=json.dumps(lambda_trust))["Role"]["Arn"]
    sts = boto3.client("sts", region_name=REGION)
    keys = sts.assume_role(RoleArn=created, RoleSessionName="herald-web")["Credentials"]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", keys["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", keys["SecretAccessKey"])
    monkeypatch.setenv("AWS_SESSION_TOKEN", keys["SessionToken"])

    out, _ = setup()

    assert created == LAMBDA_ROLE
    assert f"Trusted principal: {LAMBDA_ROLE} (the caller identity" in out
    assert aws.get_role(RoleName=ROLE)["Role"]["AssumeRolePolicyDocument"] == trust_policy(LAMBDA_ROLE)


def test_given_principal_wins_over_the_caller(aws):
    other = f"arn:aws:iam::{ACCOUNT}:role/herald-web"
    out, _ = setup("--principal", other)
    assert aws.get_role(RoleName=ROLE)["Role"]["AssumeRolePolicyDocument"] == trust_policy(other)
    assert f"Trusted principal: {other} (--principal)." in out


def test_trusting_a_whole_account_is_warned_about(aws):
    _, err = setup("--principal", ACCOUNT)
    assert f"Trusting {ACCOUNT} lets every principal of that account" in err


@pytest.mark.parametrize("arn, expected", [
    (f"arn:aws:sts::{ACCOUNT}:assumed-role/herald-lambda/herald-web",
     f"arn:aws:iam::{ACCOUNT}:role/herald-lambda"),
    (f"arn:aws-us-gov:sts::{ACCOUNT}:assumed-role/AWSReservedSSO_Admin_1a2b/jane@example.com",
     f"arn:aws-us-gov:iam::{ACCOUNT}:role/AWSReservedSSO_Admin_1a2b"),
    (f"arn:aws:iam::{ACCOUNT}:user/deploy", f"arn:aws:iam::{ACCOUNT}:user/deploy"),
    (f"arn:aws:sts::{ACCOUNT}:federated-user/jane", f"arn:aws:sts::{ACCOUNT}:federated-user/jane"),
])
def test_principal_from_caller_arn(arn, expected):
    assert iot_setup.principal_from_caller_arn(arn) == expected


@pytest.mark.parametrize("principal", ["*", "lambda", "arn:aws:iam::123:role/x", f"arn:aws:iam::{ACCOUNT}:role/*"])
def test_a_bad_principal_is_refused_before_any_call(no_aws, aws_calls, principal):
    with pytest.raises(CommandError, match="--principal must be an IAM ARN"):
        setup("--principal", principal)
    assert aws_calls == []


# --- dry run -----------------------------------------------------------------------------------------


def documents_in(out: str) -> tuple[dict, dict]:
    """The trust and inline policies printed by --dry-run."""
    trust_text = out.split("Trust policy:\n", 1)[1].split(f"Inline policy {iot_setup.ROLE_POLICY_NAME}:\n", 1)[0]
    inline_text = out.split(f"Inline policy {iot_setup.ROLE_POLICY_NAME}:\n", 1)[1]
    return json.loads(trust_text), json.loads(inline_text)


@pytest.fixture
def boto3_forbidden(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("--dry-run must not create an AWS client")

    monkeypatch.setattr(boto3.session, "Session", refuse)
    monkeypatch.setattr(boto3, "client", refuse)


def test_dry_run_prints_both_documents_without_aws(no_aws, aws_calls, boto3_forbidden):
    out, _ = setup("--dry-run")

    trust, inline = documents_in(out)
    assert trust == trust_policy(iot_setup.PRINCIPAL_PLACEHOLDER)
    assert inline == role_policy(region=REGION, account=iot_setup.ACCOUNT_PLACEHOLDER, prefix=PREFIX)
    assert f"Role: {ROLE}" in out
    assert "Account: ACCOUNT_ID (placeholder" in out
    assert aws_calls == []


def test_dry_run_uses_the_given_account_principal_region_and_prefix(no_aws, aws_calls, boto3_forbidden):
    out, _ = setup("--dry-run", "--account", "210987654321", "--principal", LAMBDA_ROLE,
                   "--region", "eu-west-1", "--prefix", "herald/prod")

    trust, inline = documents_in(out)
    assert trust == trust_policy(LAMBDA_ROLE)
    assert inline == role_policy(region="eu-west-1", account="210987654321", prefix="herald/prod")
    assert "Role: herald-iot-browser-herald-prod" in out
    assert aws_calls == []


@pytest.mark.parametrize("args, message", [
    (["--account", "12345"], "--account must be 12 digits"),
    (["--region", "mars"], "Region must look like us-east-1"),
    (["--prefix", "herald/*"], "IOT_TOPIC_PREFIX 'herald/\\*' is not allowed"),
    (["--role-name", "herald iot"], "Role name must be"),
])
def test_dry_run_refuses_bad_options(no_aws, args, message):
    with pytest.raises(CommandError, match=message):
        setup("--dry-run", *args)


# --- failures ----------------------------------------------------------------------------------------


def failing_on(monkeypatch, operation, exc):
    original = BaseClient._make_api_call

    def call(self, operation_name, params):
        if operation_name == operation:
            raise exc
        return original(self, operation_name, params)

    monkeypatch.setattr(BaseClient, "_make_api_call", call)


def test_access_denied_becomes_a_one_line_command_error(aws, monkeypatch):
    denied = ClientError({"Error": {"Code": "AccessDenied", "Message": "User: arn:aws:iam::123456789012:user/dev\n"
                                    "is not authorized to perform: iam:CreateRole"}}, "CreateRole")
    failing_on(monkeypatch, "CreateRole", denied)

    with pytest.raises(CommandError) as raised:
        setup("--principal", LAMBDA_ROLE)

    message = str(raised.value)
    assert message.startswith("AWS refused CreateRole: AccessDenied: User: arn:aws:iam::123456789012:user/dev is not")
    assert "\n" not in message
    assert raised.value.__cause__ is None and raised.value.__suppress_context__  # no chained traceback


def test_unreachable_endpoint_becomes_a_command_error(aws, monkeypatch):
    failing_on(monkeypatch, "GetCallerIdentity",
               EndpointConnectionError(endpoint_url="https://sts.us-east-1.amazonaws.com/"))
    with pytest.raises(CommandError, match=r"^Cannot reach AWS at https://sts\.us-east-1\.amazonaws\.com/: check"):
        setup()


def test_no_credentials_becomes_a_command_error(no_aws, aws_calls):
    with pytest.raises(CommandError, match="^No AWS credentials found: .*--dry-run"):
        setup()
    assert aws_calls == ["GetCallerIdentity"]  # refused while signing the first request, not retried


# --- naming and comparing ----------------------------------------------------------------------------


def test_default_role_name():
    assert iot_setup.default_role_name("herald/dev") == "herald-iot-browser-herald-dev"
    assert iot_setup.default_role_name("Herald_2.0/prod-eu") == "herald-iot-browser-Herald-2-0-prod-eu"
    long_a, long_b = "a" * 100 + "/x", "a" * 100 + "/y"
    name_a, name_b = iot_setup.default_role_name(long_a), iot_setup.default_role_name(long_b)
    assert len(name_a) <= 64 and len(name_b) <= 64 and name_a != name_b


def test_normalize_policy_reads_iams_spellings():
    account_root = {"Version": "2012-10-17", "Statement": [
        {"Sid": "A", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
         "Action": "sts:AssumeRole"}]}
    account_id = {"Version": "2012-10-17", "Statement": {
        "Effect": "Allow", "Principal": {"AWS": [ACCOUNT]}, "Action": ["STS:AssumeRole"]}}
    assert iot_setup.policies_equal(account_root, account_id)
    url_encoded = "%7B%22Version%22%3A%222012-10-17%22%2C%22Statement%22%3A%5B%5D%7D"
    assert iot_setup.normalize_policy(url_encoded) == {"Version": "2012-10-17", "Statement": []}
    # A different resource, effect or version is a change.
    base = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "iot:Receive", "Resource": "arn:x"}]}
    for changed in ({**base, "Version": "2008-10-17"},
                    {**base, "Statement": [{"Effect": "Deny", "Action": "iot:Receive", "Resource": "arn:x"}]},
                    {**base, "Statement": [{"Effect": "Allow", "Action": "iot:Receive", "Resource": "arn:X"}]}):
        assert not iot_setup.policies_equal(base, changed)


def test_bad_options_are_refused_before_any_call(no_aws, aws_calls):
    with pytest.raises(CommandError, match="IOT_TOPIC_PREFIX"):
        setup("--prefix", "herald/#")
    with pytest.raises(CommandError, match="Role name must be"):
        setup("--role-name", "x" * 65)
    assert aws_calls == []
