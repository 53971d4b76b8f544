"""The local STS: AssumeRole over AWS's query protocol, so boto3's `sts` client works unchanged.

    POST /   Content-Type: application/x-www-form-urlencoded
    Action=AssumeRole&Version=2011-06-15&RoleArn=…&RoleSessionName=…&DurationSeconds=…&Policy=…

signed with SigV4 for service `sts` (boto3 with `endpoint_url`, or AWS_ENDPOINT_URL_STS, pointing
at the emulator's HTTP port). The answer is AWS's XML, `AssumeRoleResponse/AssumeRoleResult/
{Credentials, AssumedRoleUser, PackedPolicySize}` plus `ResponseMetadata/RequestId`; errors are
`ErrorResponse/Error/{Type, Code, Message}` plus `RequestId`, which botocore turns into
ClientError codes. The refusals, in the order AWS applies them:

    403 MissingAuthenticationToken  no Authorization header
    400 IncompleteSignature         an Authorization header SigV4 cannot read
    403 InvalidClientTokenId        unknown access key id, or a session token not issued here
    403 ExpiredToken                a session whose keys have expired
    403 SignatureDoesNotMatch       wrong signature, wrong service or region in the scope, or
                                    signed more than 15 minutes away from the server's clock
    400 InvalidAction               an Action other than AssumeRole, or another API version
    400 ValidationError             a parameter outside the API's constraints: RoleArn missing,
                                    RoleSessionName not 2-64 of [\\w+=,.@-], DurationSeconds under
                                    900 or not a number, a Policy over 2,048 characters (the
                                    documented plain-text limit for session policies)
    403 AccessDenied                a role this account does not have, or a caller whose policies
                                    do not allow sts:AssumeRole on the role
    400 ValidationError             DurationSeconds over the role's MaxSessionDuration (1 hour)
    400 MalformedPolicyDocument     a session policy IAM would not accept (notifier.localiot.policy)

Why ValidationError for a policy over 2,048 characters: the AssumeRole reference documents that
plain-text limit as a constraint on the Policy parameter, and STS reports constraint violations as
ValidationError with "1 validation error detected: ... failed to satisfy constraint" (as it does
for roleSessionName over 64). PackedPolicyTooLarge is the separate limit on the packed (compressed)
policies and tags, which a policy within 2,048 characters and no tags does not reach here. (Newer
botocore models no longer carry the 2,048 maximum on the parameter; if AWS has moved that check to
PackedPolicyTooLarge, only the code differs: both are 400s the issuer treats alike.)

A malformed session policy is refused here, never later at CONNECT, as AWS does. PackedPolicySize
is reported as the policy's share of the 2,048-character limit, in percent (AWS packs and
compresses; the figure is an estimate there too).

What is not modelled: role trust policies (the caller's own policy decides, as it would within one
account whose role trusts it), session tags, managed session policies (PolicyArns), MFA, role
chaining limits. Parameters for those are ignored.
"""
import hashlib
import math
import re
import time
import uuid
from collections.abc import Iterable
from datetime import datetime, timezone
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape

from . import policy as iam
from .accounts import Account
from .sigv4 import SignatureError, verify_request

SERVICE = "sts"
VERSION = "2011-06-15"
NAMESPACE = "https://sts.amazonaws.com/doc/2011-06-15/"
# STS accepts requests signed up to 15 minutes away from its clock (IoT's data plane: 5).
MAX_SKEW_SECONDS = 15 * 60
MIN_DURATION = 900
DEFAULT_DURATION = 3600
# A role's MaxSessionDuration (IAM's default, and what iot_setup leaves it at).
MAX_SESSION_DURATION = 3600
SESSION_POLICY_MAX_CHARS = 2048
_SESSION_NAME = re.compile(r"[\w+=,.@-]*", re.ASCII)
_POLICY_CHARS = re.compile(r"[\t\n\r\u0020-\u00ff]+")
CONTENT_TYPE = "text/xml"


class StsError(Exception):
    """An STS error answer: HTTP status, AWS error code and message."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def _validation(message: str) -> StsError:
    return StsError(400, "ValidationError", message)


def _constraint(value: str | None, member: str, constraint: str) -> StsError:
    shown = "null" if value is None else f"'{value[:256]}'"
    return _validation(f"1 validation error detected: Value {shown} at '{member}' failed to satisfy constraint: {constraint}")


def error_xml(code: str, message: str, request_id: str, status: int) -> bytes:
    kind = "Receiver" if status >= 500 else "Sender"
    return (
        f'<ErrorResponse xmlns="{NAMESPACE}">\n'
        f"  <Error>\n    <Type>{kind}</Type>\n    <Code>{escape(code)}</Code>\n"
        f"    <Message>{escape(message)}</Message>\n  </Error>\n"
        f"  <RequestId>{request_id}</RequestId>\n</ErrorResponse>\n"
    ).encode()


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _role_id(account: Account, role_arn: str) -> str:
    """A stable role id shaped like IAM's (AROA + 17 characters), derived from the role ARN."""
    digest = hashlib.sha256(f"{account.account}:{role_arn}".encode()).digest()
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
    return "AROA" + "".join(alphabet[b % 32] for b in digest[:17])


def _params(method: str, body: bytes, headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    if method != "POST":
        raise StsError(400, "InvalidAction", "STS is served here over POST with a form-encoded body only.")
    content_type = next((v for k, v in headers if k.lower() == "content-type"), "")
    if content_type.split(";", 1)[0].strip().lower() != "application/x-www-form-urlencoded":
        raise StsError(400, "InvalidAction", "The request body must be application/x-www-form-urlencoded.")
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise StsError(400, "MalformedQueryString", "The request body is not a valid form.") from None
    return dict(pairs)


def assume_role(account: Account, caller, params: dict[str, str], *, now: float) -> tuple[str, int]:
    """Validate and authorise an AssumeRole call; the response XML and the session's expiry."""
    role_arn = params.get("RoleArn")
    if role_arn is None:
        raise _constraint(None, "roleArn", "Member must not be null")
    if not 20 <= len(role_arn) <= 2048:
        raise _constraint(role_arn, "roleArn", "Member must have length between 20 and 2048")
    session_name = params.get("RoleSessionName")
    if session_name is None:
        raise _constraint(None, "roleSessionName", "Member must not be null")
    if len(session_name) < 2:
        raise _constraint(session_name, "roleSessionName", "Member must have length greater than or equal to 2")
    if len(session_name) > 64:
        raise _constraint(session_name, "roleSessionName", "Member must have length less than or equal to 64")
    if not _SESSION_NAME.fullmatch(session_name):
        raise _constraint(
            session_name, "roleSessionName", "Member must satisfy regular expression pattern: [\\w+=,.@-]*"
        )
    duration_text = params.get("DurationSeconds", str(DEFAULT_DURATION))
    if not (duration_text.isascii() and duration_text.lstrip("-").isdigit()):
        raise _validation(f"Value '{duration_text[:32]}' for parameter DurationSeconds is invalid: not an integer.")
    duration = int(duration_text)
    if duration < MIN_DURATION:
        raise _constraint(duration_text, "durationSeconds", f"Member must have value greater than or equal to {MIN_DURATION}")
    policy_text = params.get("Policy")
    if policy_text is not None:
        if not policy_text:
            raise _constraint(policy_text, "policy", "Member must have length greater than or equal to 1")
        if len(policy_text) > SESSION_POLICY_MAX_CHARS:
            raise _constraint(
                policy_text, "policy", f"Member must have length less than or equal to {SESSION_POLICY_MAX_CHARS}"
            )
        if not _POLICY_CHARS.fullmatch(policy_text):
            raise _constraint(
                policy_text, "policy",
                "Member must satisfy regular expression pattern: [\\u0009\\u000A\\u000D\\u0020-\\u00FF]+",
            )

    denied = f"User: {caller.arn} is not authorized to perform: sts:AssumeRole on resource: {role_arn}"
    if role_arn not in account.roles or not account.allowed(caller, "sts:AssumeRole", role_arn):
        raise StsError(403, "AccessDenied", denied)
    if duration > MAX_SESSION_DURATION:
        raise _validation("The requested DurationSeconds exceeds the MaxSessionDuration set for this role.")
    if policy_text is not None:
        try:
            iam.parse(policy_text)
        except iam.MalformedPolicy as exc:
            raise StsError(400, "MalformedPolicyDocument", str(exc) or "The policy is malformed.") from None

    issued = account.sessions.issue(
        role_arn=role_arn, session_name=session_name, policy=policy_text, duration=duration, now=now
    )
    packed_size = math.ceil(100 * len(policy_text) / SESSION_POLICY_MAX_CHARS) if policy_text else 0
    packed = f"    <PackedPolicySize>{packed_size}</PackedPolicySize>\n" if policy_text else ""
    body = (
        f'<AssumeRoleResponse xmlns="{NAMESPACE}">\n'
        "  <AssumeRoleResult>\n"
        "    <AssumedRoleUser>\n"
        f"      <AssumedRoleId>{_role_id(account, role_arn)}:{escape(session_name)}</AssumedRoleId>\n"
        f"      <Arn>{escape(account.assumed_role_arn(role_arn, session_name))}</Arn>\n"
        "    </AssumedRoleUser>\n"
        "    <Credentials>\n"
        f"      <AccessKeyId>{issued.access_key_id}</AccessKeyId>\n"
        f"      <SecretAccessKey>{escape(issued.secret_access_key)}</SecretAccessKey>\n"
        f"      <SessionToken>{issued.session_token}</SessionToken>\n"
        f"      <Expiration>{_iso(issued.session.expires_at)}</Expiration>\n"
        "    </Credentials>\n"
        f"{packed}"
        "  </AssumeRoleResult>\n"
    )
    return body, issued.session.expires_at


def handle(
    account: Account,
    *,
    method: str,
    target: str,
    headers: list[tuple[str, str]],
    body: bytes,
    now: float | None = None,
) -> tuple[int, bytes]:
    """(HTTP status, XML body) for one STS request."""
    request_id = str(uuid.uuid4())
    current = time.time() if now is None else now
    try:
        caller = verify_request(
            method=method, target=target, headers=headers, body=body,
            resolve=lambda key_id, token: account.resolve(key_id, token, current),
            region=account.region, service=SERVICE, now=current, max_skew=MAX_SKEW_SECONDS,
        )
        params = _params(method, body, headers)
        action, version = params.get("Action"), params.get("Version")
        if action != "AssumeRole" or version != VERSION:
            raise StsError(400, "InvalidAction", f"Could not find operation {str(action)[:64]} for version {str(version)[:32]}")
        result, _ = assume_role(account, caller, params, now=current)
    except SignatureError as exc:
        return exc.status, error_xml(exc.code, exc.message, request_id, exc.status)
    except StsError as exc:
        return exc.status, error_xml(exc.code, exc.message, request_id, exc.status)
    response = (
        result
        + f"  <ResponseMetadata>\n    <RequestId>{request_id}</RequestId>\n  </ResponseMetadata>\n"
        + "</AssumeRoleResponse>\n"
    )
    return 200, response.encode()
