"""Verify AWS Signature Version 4, in an Authorization header or in a presigned URL, with botocore.

The emulator must accept exactly what boto3 and Herald's presigned URLs send to AWS and nothing
unsigned, so the check recomputes the signature the way the client computed it: an AWSRequest is
rebuilt from the received method, path, query, the headers the client listed in SignedHeaders, the
body and the client's own X-Amz-Date, and botocore's SigV4Auth derives the canonical request,
string to sign and signature from it. Reusing botocore rather than a second implementation means
the two sides cannot disagree about canonicalisation (double-encoded paths, query sorting, header
trimming). The result is compared in constant time.

Who signed is not known in advance: `resolve(access_key_id, session_token)` returns the caller's
identity and its secret key (the account's root pair, or temporary keys from the local STS), or
raises SignatureError itself (unknown key: InvalidClientTokenId, expired session: ExpiredToken).

Like AWS, a request is refused when the key id is unknown, the scope is not for this service and
region, the date is too far from the server's clock (`max_skew`: 5 minutes for IoT, 15 for STS),
or the signature does not match. SignatureError carries the code AWS's query APIs use (STS answers
with it; the iot-data API answers ForbiddenException whatever the code).

Presigned URLs are checked as AWS IoT Core checks its MQTT-over-WebSocket URLs: the session token
(`X-Amz-Security-Token`) is appended after signing, so it is not part of the canonical query, and
the URL is valid from X-Amz-Date (give or take `max_skew`) until X-Amz-Expires seconds later.
"""
import calendar
import hashlib
import hmac
import time
from collections.abc import Callable, Iterable
from typing import TypeVar
from urllib.parse import parse_qsl, quote

from botocore.auth import SIGV4_TIMESTAMP, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

ALGORITHM = "AWS4-HMAC-SHA256"
# The signing name of the iot-data service in botocore's service model.
SERVICE = "iotdata"
MAX_SKEW_SECONDS = 300
# SigV4's own upper bound for a presigned URL's lifetime (seven days).
MAX_EXPIRES_SECONDS = 7 * 24 * 3600
SIGNATURE_PARAM = "X-Amz-Signature"
TOKEN_PARAM = "X-Amz-Security-Token"
_PRESIGN_PARAMS = ("X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires", "X-Amz-SignedHeaders")

Identity = TypeVar("Identity")
Resolve = Callable[[str, str | None], tuple[Identity, str]]


class SignatureError(Exception):
    """The request is not validly signed; the message is safe to return, `code` is AWS's."""

    def __init__(self, message: str, code: str = "SignatureDoesNotMatch", status: int = 403):
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status


def _incomplete(message: str) -> SignatureError:
    return SignatureError(message, "IncompleteSignature", 400)


def _parse_authorization(value: str) -> tuple[list[str], list[str], str]:
    """(credential scope parts, signed header names, signature) from an Authorization header."""
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise _incomplete(f"Authorization header requires the {ALGORITHM} algorithm.")
    fields = {}
    for part in rest.split(","):
        name, sep, field_value = part.strip().partition("=")
        if sep:
            fields[name] = field_value
    try:
        credential, signed_headers, signature = fields["Credential"], fields["SignedHeaders"], fields["Signature"]
    except KeyError:
        raise _incomplete(
            "Authorization header requires 'Credential', 'SignedHeaders' and 'Signature' parameters."
        ) from None
    return _parse_scope(credential), _parse_signed_headers(signed_headers), signature


def _parse_scope(credential: str) -> list[str]:
    scope = credential.split("/")
    if len(scope) != 5 or scope[4] != "aws4_request" or not scope[0]:
        raise _incomplete("Credential should be scoped to a valid region, service and aws4_request.")
    return scope


def _parse_signed_headers(value: str) -> list[str]:
    names = value.split(";")
    if not all(names) or names != sorted(set(names)) or any(n != n.lower() for n in names):
        raise _incomplete("SignedHeaders must be a sorted list of lower-case header names.")
    return names


def _parse_amz_date(value: str) -> float:
    try:
        return float(calendar.timegm(time.strptime(value, SIGV4_TIMESTAMP)))
    except (TypeError, ValueError):
        raise _incomplete("X-Amz-Date must be in the format YYYYMMDD'T'HHMMSS'Z'.") from None


def _check_scope(scope: list[str], amz_date: str, *, service: str, region: str) -> None:
    _, scope_date, scope_region, scope_service, _ = scope
    if scope_service != service:
        raise SignatureError(f"Credential should be scoped to correct service: '{service}'.")
    if scope_region != region:
        raise SignatureError(f"Credential should be scoped to a valid region, not '{scope_region[:64]}'.")
    if scope_date != amz_date[:8]:
        raise SignatureError("Credential scope date does not match X-Amz-Date.")


def _expected_signature(
    request: AWSRequest, *, amz_date: str, signed_names: list[str], access_key_id: str, secret: str,
    service: str, region: str,
) -> str:
    request.context["timestamp"] = amz_date
    signer = SigV4Auth(Credentials(access_key_id, secret), service, region)
    if signer.signed_headers(signer.headers_to_sign(request)) != ";".join(signed_names):
        raise SignatureError("SignedHeaders lists headers that cannot be signed.")
    canonical_request = signer.canonical_request(request)
    return signer.signature(signer.string_to_sign(request, canonical_request), request)


def _compare(expected: str, signature: str) -> None:
    if not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace")):
        raise SignatureError(
            "The request signature we calculated does not match the signature you provided. "
            "Check your AWS Secret Access Key and signing method."
        )


def verify_request(
    *,
    method: str,
    target: str,
    headers: Iterable[tuple[str, str]],
    body: bytes,
    resolve: Resolve,
    region: str,
    service: str = SERVICE,
    now: float | None = None,
    max_skew: int = MAX_SKEW_SECONDS,
) -> Identity:
    """The identity that SigV4-signed this request (Authorization header); SignatureError otherwise.

    `target` is the request target exactly as received (path and query, still percent-encoded);
    `headers` are the received (name, value) pairs, repeated names allowed.
    """
    header_values: dict[str, list[str]] = {}
    for name, value in headers:
        header_values.setdefault(name.lower(), []).append(value)

    authorization = header_values.get("authorization", [])
    if not authorization:
        raise SignatureError("Missing Authentication Token", "MissingAuthenticationToken", 403)
    if len(authorization) != 1:
        raise _incomplete("Only one Authorization header is allowed.")
    scope, signed_names, signature = _parse_authorization(authorization[0])

    amz_date = header_values.get("x-amz-date", [])
    if len(amz_date) != 1 or "x-amz-date" not in signed_names:
        raise _incomplete("Authorization header requires existence of one signed 'X-Amz-Date' header.")
    if "host" not in signed_names:
        raise _incomplete("The Host header must be signed.")
    tokens = header_values.get("x-amz-security-token", [])
    if len(tokens) > 1:
        raise _incomplete("Only one X-Amz-Security-Token header is allowed.")
    identity, secret = resolve(scope[0], tokens[0] if tokens else None)

    _check_scope(scope, amz_date[0], service=service, region=region)
    signed_at = _parse_amz_date(amz_date[0])
    current = time.time() if now is None else now
    _check_skew(amz_date[0], signed_at, current, max_skew)
    missing = [name for name in signed_names if name not in header_values]
    if missing:
        raise SignatureError(f"Signed header(s) missing from the request: {', '.join(missing)}.")

    content_sha256 = header_values.get("x-amz-content-sha256")
    if content_sha256 is not None and content_sha256 != [hashlib.sha256(body).hexdigest()]:
        # botocore trusts this header as the payload hash; make sure it is the hash of this body.
        raise SignatureError("X-Amz-Content-SHA256 does not match the request body.")

    # Rebuild the request as the client signed it: only the headers it listed, its own date.
    host = header_values["host"][0]
    request = AWSRequest(
        method=method,
        url=f"http://{host}{target}",
        headers={name: ",".join(header_values[name]) for name in signed_names},
        data=body,
    )
    expected = _expected_signature(
        request, amz_date=amz_date[0], signed_names=signed_names, access_key_id=scope[0], secret=secret,
        service=service, region=region,
    )
    _compare(expected, signature)
    return identity


def _check_skew(amz_date: str, signed_at: float, current: float, max_skew: int) -> None:
    if current - signed_at > max_skew:
        raise SignatureError(
            f"Signature expired: {amz_date} is now earlier than "
            f"{time.strftime(SIGV4_TIMESTAMP, time.gmtime(current - max_skew))} "
            f"({time.strftime(SIGV4_TIMESTAMP, time.gmtime(current))} - {max_skew // 60} min.)"
        )
    if signed_at - current > max_skew:
        raise SignatureError(
            f"Signature not yet current: {amz_date} is still later than "
            f"{time.strftime(SIGV4_TIMESTAMP, time.gmtime(current + max_skew))} "
            f"({time.strftime(SIGV4_TIMESTAMP, time.gmtime(current))} + {max_skew // 60} min.)"
        )


def _quote(value: str) -> str:
    return quote(value, safe="-_.~")


def verify_presigned(
    *,
    method: str,
    path: str,
    query: str,
    headers: Iterable[tuple[str, str]],
    resolve: Resolve,
    region: str,
    service: str,
    now: float | None = None,
    max_skew: int = MAX_SKEW_SECONDS,
) -> Identity:
    """The identity that presigned this URL (SigV4 query parameters); SignatureError otherwise.

    `path` and `query` are as received (the query still percent-encoded); `headers` must include
    every header the URL's X-Amz-SignedHeaders names (Host, from the request or from the URL).
    The canonical query is built from the decoded parameters, re-encoded as SigV4 prescribes, less
    X-Amz-Signature and X-Amz-Security-Token (AWS IoT leaves the token out of the signature).
    """
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query), errors="strict")
    except (ValueError, UnicodeDecodeError):
        raise _incomplete("The query string is malformed.") from None
    params: dict[str, str] = {}
    for name, value in pairs:
        if name in params and name.startswith("X-Amz-"):
            raise _incomplete(f"Only one {name} parameter is allowed.")
        params[name] = value
    if not any(name in params for name in _PRESIGN_PARAMS + (SIGNATURE_PARAM,)):
        raise SignatureError("Missing Authentication Token", "MissingAuthenticationToken", 403)
    missing = [name for name in _PRESIGN_PARAMS + (SIGNATURE_PARAM,) if name not in params]
    if missing:
        raise _incomplete(f"The presigned URL lacks {', '.join(missing)}.")
    if params["X-Amz-Algorithm"] != ALGORITHM:
        raise _incomplete(f"X-Amz-Algorithm must be {ALGORITHM}.")
    scope = _parse_scope(params["X-Amz-Credential"])
    signed_names = _parse_signed_headers(params["X-Amz-SignedHeaders"])
    if "host" not in signed_names:
        raise _incomplete("The Host header must be signed.")
    amz_date = params["X-Amz-Date"]
    signed_at = _parse_amz_date(amz_date)
    expires = params["X-Amz-Expires"]
    if not expires.isascii() or not expires.isdigit() or not 0 < int(expires) <= MAX_EXPIRES_SECONDS:
        raise _incomplete(f"X-Amz-Expires must be a number of seconds from 1 to {MAX_EXPIRES_SECONDS}.")

    identity, secret = resolve(scope[0], params.get(TOKEN_PARAM))

    _check_scope(scope, amz_date, service=service, region=region)
    current = time.time() if now is None else now
    if signed_at - current > max_skew:
        _check_skew(amz_date, signed_at, current, max_skew)
    if current > signed_at + int(expires):
        raise SignatureError(
            f"Request has expired: signed at {amz_date}, valid for {int(expires)} s.", "AccessDenied", 403
        )

    header_values: dict[str, list[str]] = {}
    for name, value in headers:
        header_values.setdefault(name.lower(), []).append(value)
    absent = [name for name in signed_names if name not in header_values]
    if absent:
        raise SignatureError(f"Signed header(s) missing from the request: {', '.join(absent)}.")

    canonical_query = "&".join(
        f"{_quote(name)}={_quote(value)}"
        for name, value in pairs
        if name not in (SIGNATURE_PARAM, TOKEN_PARAM)
    )
    request = AWSRequest(
        method=method,
        url=f"http://{header_values['host'][0]}{path}" + (f"?{canonical_query}" if canonical_query else ""),
        headers={name: ",".join(header_values[name]) for name in signed_names},
        data=b"",
    )
    expected = _expected_signature(
        request, amz_date=amz_date, signed_names=signed_names, access_key_id=scope[0], secret=secret,
        service=service, region=region,
    )
    _compare(expected, params[SIGNATURE_PARAM])
    return identity
