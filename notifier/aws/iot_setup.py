"""Create or update the IAM role that Herald's credential view assumes (`manage.py iot_setup`).

The credential view (NOTIFIER_BACKEND=aws) calls sts.assume_role(RoleArn=IOT_ROLE_ARN, Policy=<the
session policy of one user>). The role it assumes must exist with:

- a trust policy naming the one principal Herald runs as (the Lambda execution role), so nobody
  else can mint IoT keys with it;
- an inline policy (ROLE_POLICY_NAME) bounding every session to Herald's client ids and the
  stage's topics: iot_policies.role_policy();
- MaxSessionDuration 3600 s: IOT_CREDENTIALS_TTL goes up to 3600 and STS refuses a longer
  DurationSeconds than the role allows. It is set to exactly 3600 rather than "at least": a longer
  maximum would only lengthen the keys a leaked principal could mint (and a Lambda role assuming
  another role is role chaining, which STS caps at one hour anyway).

`run()` converges the role to that state and is safe to repeat: it reads the current documents,
compares them semantically with the wanted ones (`normalize_policy`) and writes only what differs,
saying what changed. `dry_run()` renders the same documents without any AWS call, for review.

Role name: `default_role_name(prefix)` is "herald-iot-browser-" + the topic prefix with every run of
characters other than letters and digits turned into "-" (herald/dev -> herald-iot-browser-herald-dev),
so each stage sharing an account gets its own role. The role is tagged with its topic prefix, and a
role tagged for another prefix is refused rather than repointed.

Principal: --principal, or else the identity running the command (sts.get_caller_identity()). An
assumed-role session ARN (arn:aws:sts::123:assumed-role/NAME/session, which is what Lambda runs as)
is turned into its role's ARN, with the role's path read from IAM (roles Lambda creates live under
/service-role/, and a trust policy needs the full ARN). So either run the command as the web
process's identity, or pass --principal with the Lambda execution role's ARN.
"""
from __future__ import annotations

import hashlib
import json
import re
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field

from . import policies as iot_policies

ROLE_POLICY_NAME = "herald-iot-browser"
ROLE_NAME_PREFIX = "herald-iot-browser-"
ROLE_DESCRIPTION = "Assumed by Herald to give browsers scoped, short-lived AWS IoT keys (iot_setup)."
MAX_SESSION_DURATION = 3600
PREFIX_TAG = "herald:topic-prefix"
ACCOUNT_PLACEHOLDER = "ACCOUNT_ID"
PRINCIPAL_PLACEHOLDER = "arn:aws:iam::ACCOUNT_ID:role/LAMBDA_EXECUTION_ROLE"

_ROLE_NAME = re.compile(r"[\w+=,.@-]{1,64}")
_ACCOUNT = re.compile(r"\d{12}")
_REGION = re.compile(r"[a-z]{2,4}(-[a-z]+)+-\d{1,2}")
_PRINCIPAL = re.compile(r"\d{12}|arn:aws[a-z-]*:(iam|sts)::\d{12}:[\w+=,.@/-]+")
_ASSUMED_ROLE = re.compile(r"arn:(aws[a-z-]*):sts::(\d{12}):assumed-role/([\w+=,.@-]+)/[\w+=,.@-]+")
_ROOT = re.compile(r"arn:aws[a-z-]*:iam::(\d{12}):root")


class SetupError(Exception):
    """Something the operator must fix; the message is one line and says what."""


# ---------------------------------------------------------------------------------------------
# Names and documents


def default_role_name(prefix: str) -> str:
    """herald-iot-browser-{prefix with non-alphanumerics as '-'}, within IAM's 64 characters.

    A long prefix is cut and given a short hash of the whole prefix, so two long prefixes that
    share a beginning still get different roles.
    """
    slug = re.sub(r"[^A-Za-z0-9]+", "-", prefix).strip("-") or "default"
    name = ROLE_NAME_PREFIX + slug
    if len(name) > 64:
        digest = hashlib.sha256(prefix.encode()).hexdigest()[:8]
        name = f"{name[:64 - len(digest) - 1].rstrip('-')}-{digest}"
    return name


def principal_from_caller_arn(arn: str) -> str:
    """The principal to trust for a caller identity ARN.

    An STS assumed-role session ARN names one session, which expires; the trust policy must name the
    role instead: arn:aws:sts::123:assumed-role/NAME/session -> arn:aws:iam::123:role/NAME (without
    the role's path, which the ARN does not carry; see `run`). Other ARNs (IAM users, federated
    users) are principals already and come back unchanged.
    """
    match = _ASSUMED_ROLE.fullmatch(arn)
    if match:
        part, account, name = match.groups()
        return f"arn:{part}:iam::{account}:role/{name}"
    return arn


def check_principal(principal: str) -> str:
    if not _PRINCIPAL.fullmatch(principal or ""):
        raise SetupError(
            f"--principal must be an IAM ARN such as arn:aws:iam::123456789012:role/NAME (or an account id), "
            f"not {principal!r}."
        )
    return principal


def check_region(region: str) -> str:
    if not _REGION.fullmatch(region or ""):
        raise SetupError(f"Region must look like us-east-1, not {region!r}.")
    return region


@dataclass(frozen=True)
class Desired:
    """The documents and settings iot_setup converges the role to."""

    role_name: str
    region: str
    account: str
    prefix: str
    principal: str

    @property
    def trust(self) -> dict:
        return iot_policies.trust_policy(self.principal)

    @property
    def inline(self) -> dict:
        return iot_policies.role_policy(region=self.region, account=self.account, prefix=self.prefix)

    @property
    def tags(self) -> dict[str, str]:
        return {"app": "herald", PREFIX_TAG: self.prefix}


def _desired(role_name, region, account, prefix, principal) -> Desired:
    """Build and check everything that does not need AWS, so bad options fail before any call."""
    if not _ROLE_NAME.fullmatch(role_name or ""):
        raise SetupError(f"Role name must be 1-64 characters of letters, digits and +=,.@_-, not {role_name!r}.")
    try:
        iot_policies.validate_topic_prefix(prefix)
    except ValueError as exc:
        raise SetupError(str(exc)) from None
    desired = Desired(role_name, check_region(region), account, prefix, principal)
    try:
        _ = (desired.trust, desired.inline)  # building them validates principal, region and account
    except ValueError as exc:
        raise SetupError(str(exc)) from None
    return desired


# ---------------------------------------------------------------------------------------------
# Comparing policies


def _as_list(value) -> list:
    return [value] if isinstance(value, (str, int, float, bool)) else list(value)


def _scalar(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _principal_value(value: str) -> str:
    # IAM stores an account id principal as that account's root ARN: treat both as the account id.
    match = _ROOT.fullmatch(value)
    return match.group(1) if match else value


def _normalize_statement(statement: dict) -> dict:
    out = {}
    for key, value in statement.items():
        if key == "Sid":
            continue  # a label, not a permission
        if key in ("Action", "NotAction"):
            out[key] = sorted({a.lower() for a in _as_list(value)})  # action names ignore case
        elif key in ("Resource", "NotResource"):
            out[key] = sorted(set(_as_list(value)))  # ARNs do not
        elif key in ("Principal", "NotPrincipal"):
            out[key] = value if value == "*" else {
                kind: sorted({_principal_value(v) for v in _as_list(names)}) for kind, names in value.items()
            }
        elif key == "Condition":
            out[key] = {
                operator.lower(): {k.lower(): sorted({_scalar(v) for v in _as_list(vs)}) for k, vs in block.items()}
                for operator, block in value.items()
            }
        else:
            out[key] = value
    return out


def normalize_policy(document) -> dict:
    """A canonical form of a policy document, so that equal permissions compare equal.

    IAM hands documents back URL-encoded (boto3 decodes them to dicts, other clients may not), and
    the same policy can be spelled several ways: a single statement or a one-element list, "a" or
    ["a"], any order of statements, actions and resources, action names in any case, an account id
    or its root ARN as principal, a missing Version (which means 2008-10-17). Sids and Id are labels
    and are ignored. Anything else is compared as written.
    """
    if isinstance(document, bytes):
        document = document.decode()
    if isinstance(document, str):
        text = document.strip()
        if not text.startswith("{"):
            text = urllib.parse.unquote(text)
        document = json.loads(text)
    statements = [_normalize_statement(s) for s in _as_list_of_statements(document.get("Statement", []))]
    statements.sort(key=lambda s: json.dumps(s, sort_keys=True))
    return {"Version": document.get("Version", "2008-10-17"), "Statement": statements}


def _as_list_of_statements(value) -> list:
    return [value] if isinstance(value, dict) else list(value)


def policies_equal(current, desired) -> bool:
    return normalize_policy(current) == normalize_policy(desired)


def policy_diff(current, desired) -> list[str]:
    """What differs, statement by statement (normalized, one line each): removed, then added."""
    old, new = normalize_policy(current), normalize_policy(desired)
    lines = [f"version: {old['Version']} -> {new['Version']}"] if old["Version"] != new["Version"] else []

    def one_line(statement):
        return json.dumps(statement, sort_keys=True, separators=(",", ":"))

    old_statements = [one_line(s) for s in old["Statement"]]
    new_statements = [one_line(s) for s in new["Statement"]]
    lines += [f"removed: {s}" for s in old_statements if s not in new_statements]
    lines += [f"added:   {s}" for s in new_statements if s not in old_statements]
    return lines


def pretty(document: dict) -> str:
    return json.dumps(document, indent=2)


# ---------------------------------------------------------------------------------------------
# AWS errors


def describe_aws_error(exc: Exception) -> str:
    """One line saying what AWS (or the AWS client) refused, for a CommandError."""
    from botocore.exceptions import (
        ClientError,
        EndpointConnectionError,
        NoCredentialsError,
    )

    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        text = f"AWS refused {exc.operation_name}: {error.get('Code', 'error')}: {error.get('Message', '')}"
    elif isinstance(exc, NoCredentialsError):
        text = ("No AWS credentials found: set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY "
                "(or use --dry-run to review the documents without AWS).")
    elif isinstance(exc, EndpointConnectionError):
        text = f"Cannot reach AWS at {exc.kwargs.get('endpoint_url', '?')}: check the region and the network."
    else:
        text = f"AWS client error: {type(exc).__name__}: {exc}"
    return " ".join(text.split())


def _error_code(exc) -> str:
    return exc.response.get("Error", {}).get("Code", "")


# ---------------------------------------------------------------------------------------------
# The two modes


def dry_run(*, role_name: str, region: str, prefix: str, account: str | None = None,
            principal: str | None = None) -> list[str]:
    """The report of what `run` would converge to, built without any AWS client or call.

    Without --account / --principal the documents show placeholders, which the real run fills
    from the caller identity.
    """
    if account is not None and not _ACCOUNT.fullmatch(account):
        raise SetupError(f"--account must be 12 digits, not {account!r}.")
    if principal is not None:
        check_principal(principal)
    desired = _desired(role_name, region, account or ACCOUNT_PLACEHOLDER, prefix, principal or PRINCIPAL_PLACEHOLDER)
    return [
        "Dry run: no AWS call is made and nothing is changed.",
        f"Role: {desired.role_name}",
        f"Account: {desired.account}"
        + ("" if account else " (placeholder; pass --account, or a real run uses the caller's)"),
        f"Region: {desired.region}",
        f"Topic prefix: {desired.prefix}",
        f"Trusted principal: {desired.principal}"
        + ("" if principal else " (placeholder; pass --principal, or a real run trusts the caller identity)"),
        f"Max session duration: {MAX_SESSION_DURATION} s",
        "Tags: " + ", ".join(f"{k}={v}" for k, v in desired.tags.items()),
        "Trust policy:",
        pretty(desired.trust),
        f"Inline policy {ROLE_POLICY_NAME}:",
        pretty(desired.inline),
    ]


@dataclass
class Outcome:
    role_arn: str
    endpoint: str
    created: bool = False
    changes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _client_config():
    from botocore.config import Config

    # Fail in seconds, not minutes, when the network or region is wrong.
    return Config(connect_timeout=5, read_timeout=30, retries={"mode": "standard", "max_attempts": 3})


def run(*, role_name: str, region: str, prefix: str, account: str | None = None,
        principal: str | None = None, session=None, say: Callable[[str], None] = print) -> Outcome:
    """Converge the role (see the module docstring) and report through `say`, one line per call.

    Raises SetupError for bad options, a role that belongs to another prefix, and any AWS failure
    (as a one-line message).
    """
    from botocore.exceptions import BotoCoreError, ClientError

    if account is not None and not _ACCOUNT.fullmatch(account):
        raise SetupError(f"--account must be 12 digits, not {account!r}.")
    if principal is not None:
        check_principal(principal)
    _desired(role_name, region, ACCOUNT_PLACEHOLDER, prefix, principal or PRINCIPAL_PLACEHOLDER)  # before any call
    try:
        if session is None:
            import boto3

            session = boto3.session.Session(region_name=region)
        config = _client_config()
        iam = session.client("iam", region_name=region, config=config)
        sts = session.client("sts", region_name=region, config=config)
        iot = session.client("iot", region_name=region, config=config)
        return _converge(iam, sts, iot, role_name=role_name, region=region, prefix=prefix,
                         account=account, principal=principal, say=say)
    except (ClientError, BotoCoreError) as exc:
        raise SetupError(describe_aws_error(exc)) from None


def _converge(iam, sts, iot, *, role_name, region, prefix, account, principal, say) -> Outcome:
    from botocore.exceptions import ClientError

    identity = sts.get_caller_identity()
    caller_account = identity["Account"]
    if account is not None and account != caller_account:
        raise SetupError(
            f"--account {account} is not the account of the AWS credentials in use ({caller_account}); "
            "the role is created in the credentials' account."
        )
    warnings = []
    if principal is None:
        principal = _principal_of_caller(iam, identity["Arn"])
        source = "the caller identity; pass --principal to trust another"
    else:
        source = "--principal"
    if _ROOT.fullmatch(principal) or _ACCOUNT.fullmatch(principal):
        warnings.append(
            f"Trusting {principal} lets every principal of that account that is allowed sts:AssumeRole assume "
            "the role; pass --principal with the web process's role ARN to narrow it."
        )
    desired = _desired(role_name, region, caller_account, prefix, principal)
    say(f"Account {desired.account}, region {desired.region}, topic prefix {desired.prefix}.")
    say(f"Trusted principal: {desired.principal} ({source}).")

    try:
        role = iam.get_role(RoleName=role_name)["Role"]
    except ClientError as exc:
        if _error_code(exc) != "NoSuchEntity":
            raise
        role = None

    if role is None:
        role = iam.create_role(
            RoleName=role_name,
            AssumeRolePolicyDocument=iot_policies.dumps(desired.trust),
            Description=ROLE_DESCRIPTION,
            MaxSessionDuration=MAX_SESSION_DURATION,
            Tags=[{"Key": k, "Value": v} for k, v in desired.tags.items()],
        )["Role"]
        outcome = Outcome(role_arn=role["Arn"], endpoint="", created=True, warnings=warnings, changes=[
            f"created the role, trusting {desired.principal}",
            f"max session duration: {MAX_SESSION_DURATION} s",
            "tags: " + ", ".join(f"{k}={v}" for k, v in desired.tags.items()),
        ])
    else:
        outcome = Outcome(role_arn=role["Arn"], endpoint="", warnings=warnings)
        _update_existing(iam, role, desired, outcome)

    _converge_inline_policy(iam, desired, outcome)
    outcome.warnings.extend(_foreign_policies(iam, role_name))
    outcome.endpoint = iot.describe_endpoint(endpointType="iot:Data-ATS")["endpointAddress"]
    _report(outcome, desired, say)
    return outcome


def _principal_of_caller(iam, caller_arn: str) -> str:
    """The principal to trust when --principal is not given: the role (or user) running us."""
    from botocore.exceptions import ClientError

    principal = principal_from_caller_arn(caller_arn)
    match = _ASSUMED_ROLE.fullmatch(caller_arn)
    if match:
        # The session ARN has no path; the trust policy needs the role's real ARN.
        try:
            principal = iam.get_role(RoleName=match.group(3))["Role"]["Arn"]
        except ClientError as exc:
            raise SetupError(
                f"Cannot read the caller's role {match.group(3)} to trust it ({describe_aws_error(exc)}); "
                "pass --principal with the role ARN."
            ) from None
    return principal


def _update_existing(iam, role: dict, desired: Desired, outcome: Outcome) -> None:
    role_name = desired.role_name
    tags = {t["Key"]: t["Value"] for t in role.get("Tags") or []}
    if tags.get(PREFIX_TAG, desired.prefix) != desired.prefix:
        raise SetupError(
            f"Role {role_name} serves topic prefix {tags[PREFIX_TAG]!r} (tag {PREFIX_TAG}), not {desired.prefix!r}; "
            "pass --role-name to use another role."
        )
    current_trust = role["AssumeRolePolicyDocument"]
    if not policies_equal(current_trust, desired.trust):
        iam.update_assume_role_policy(RoleName=role_name, PolicyDocument=iot_policies.dumps(desired.trust))
        outcome.changes.append("trust policy: replaced")
        outcome.changes.extend("      " + line for line in policy_diff(current_trust, desired.trust))
    if role.get("MaxSessionDuration") != MAX_SESSION_DURATION:
        iam.update_role(RoleName=role_name, MaxSessionDuration=MAX_SESSION_DURATION)
        outcome.changes.append(f"max session duration: {role.get('MaxSessionDuration')} s -> {MAX_SESSION_DURATION} s")
    missing = {k: v for k, v in desired.tags.items() if tags.get(k) != v}
    if missing:
        iam.tag_role(RoleName=role_name, Tags=[{"Key": k, "Value": v} for k, v in missing.items()])
        outcome.changes.append("tags: " + ", ".join(f"{k}={v}" for k, v in missing.items()))


def _converge_inline_policy(iam, desired: Desired, outcome: Outcome) -> None:
    from botocore.exceptions import ClientError

    try:
        current = iam.get_role_policy(RoleName=desired.role_name, PolicyName=ROLE_POLICY_NAME)["PolicyDocument"]
    except ClientError as exc:
        if _error_code(exc) != "NoSuchEntity":
            raise
        current = None
    if current is not None and policies_equal(current, desired.inline):
        return
    iam.put_role_policy(RoleName=desired.role_name, PolicyName=ROLE_POLICY_NAME,
                        PolicyDocument=iot_policies.dumps(desired.inline))
    if current is None:
        outcome.changes.append(f"inline policy {ROLE_POLICY_NAME}: added")
    else:
        outcome.changes.append(f"inline policy {ROLE_POLICY_NAME}: replaced")
        outcome.changes.extend("      " + line for line in policy_diff(current, desired.inline))


def _foreign_policies(iam, role_name: str) -> list[str]:
    """Policies on the role that iot_setup does not manage: left alone, but worth a look."""
    names = [n for page in iam.get_paginator("list_role_policies").paginate(RoleName=role_name)
             for n in page["PolicyNames"] if n != ROLE_POLICY_NAME]
    attached = [p["PolicyArn"] for page in iam.get_paginator("list_attached_role_policies").paginate(RoleName=role_name)
                for p in page["AttachedPolicies"]]
    return [
        f"Role {role_name} also has {what} {', '.join(items)}, not managed by iot_setup: sessions are still "
        "limited by their session policy, but the principal can assume the role without one."
        for what, items in (("inline policies", names), ("attached policies", attached)) if items
    ]


def _report(outcome: Outcome, desired: Desired, say) -> None:
    if outcome.created:
        say(f"Created role {desired.role_name}:")
    elif outcome.changes:
        say(f"Updated role {desired.role_name}:")
    else:
        say(f"Role {desired.role_name} is up to date; nothing changed.")
    for change in outcome.changes:
        say(change if change.startswith("    ") else f"  - {change}")
    say(f"Role ARN: {outcome.role_arn}")
    say(f"IoT data endpoint: {outcome.endpoint}")
    say("")
    say("Set in the web process's environment:")
    say("NOTIFIER_BACKEND=aws")
    say(f"IOT_TOPIC_PREFIX={desired.prefix}")
    say(f"IOT_ROLE_ARN={outcome.role_arn}")
    say(f"IOT_DATA_ENDPOINT={outcome.endpoint}")
