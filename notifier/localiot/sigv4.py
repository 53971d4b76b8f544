"""Verify AWS Signature Version 4 on incoming HTTP requests, with botocore's own signer.

The emulator must accept exactly what boto3 sends to AWS IoT and nothing unsigned, so the check
recomputes the signature the way the client computed it: an AWSRequest is rebuilt from the
incoming method, URL (the raw request target, percent-encoding untouched), the headers the client
listed in SignedHeaders, the body and the client's own X-Amz-Date, and botocore's SigV4Auth derives
the canonical request, string to sign and signature from it. Reusing botocore rather than a second
implementation means the two sides cannot disagree about canonicalisation (double-encoded paths,
query sorting, header trimming). The result is compared in constant time.

Like AWS, a request is refused when the key id is unknown, the scope is not for this service, the
date is more than five minutes away from the server's clock, or the signature does not match.
"""
import calendar
import hashlib
import hmac
import time
from collections.abc import Iterable

from botocore.auth import SIGV4_TIMESTAMP, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

ALGORITHM = "AWS4-HMAC-SHA256"
# The signing name of the iot-data service in botocore's service model.
SERVICE = "iotdata"
MAX_SKEW_SECONDS = 300


class SignatureError(Exception):
    """The request is not signed by the configured key pair; the message is safe to return."""


def _parse_authorization(value: str) -> tuple[list[str], list[str], str]:
    """(credential scope parts, signed header names, signature) from an Authorization header."""
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise SignatureError(f"Authorization header requires the {ALGORITHM} algorithm.")
    fields = {}
    for part in rest.split(","):
        name, sep, field_value = part.strip().partition("=")
        if sep:
            fields[name] = field_value
    try:
        credential, signed_headers, signature = fields["Credential"], fields["SignedHeaders"], fields["Signature"]
    except KeyError:
        raise SignatureError(
            "Authorization header requires 'Credential', 'SignedHeaders' and 'Signature' parameters."
        ) from None
    scope = credential.split("/")
    if len(scope) != 5 or scope[4] != "aws4_request":
        raise SignatureError("Credential should be scoped to a valid region, service and aws4_request.")
    names = signed_headers.split(";")
    if not all(names) or names != sorted(set(names)) or any(n != n.lower() for n in names):
        raise SignatureError("SignedHeaders must be a sorted list of lower-case header names.")
    return scope, names, signature


def _parse_amz_date(value: str) -> float:
    try:
        return float(calendar.timegm(time.strptime(value, SIGV4_TIMESTAMP)))
    except (TypeError, ValueError):
        raise SignatureError("X-Amz-Date must be in the format YYYYMMDD'T'HHMMSS'Z'.") from None


def verify_request(
    *,
    method: str,
    target: str,
    headers: Iterable[tuple[str, str]],
    body: bytes,
    access_key_id: str,
    secret_access_key: str,
    service: str = SERVICE,
    now: float | None = None,
) -> None:
    """Raise SignatureError unless the request is SigV4-signed with this key pair.

    `target` is the request target exactly as received (path and query, still percent-encoded);
    `headers` are the received (name, value) pairs, repeated names allowed.
    """
    header_values: dict[str, list[str]] = {}
    for name, value in headers:
        header_values.setdefault(name.lower(), []).append(value)

    authorization = header_values.get("authorization", [])
    if len(authorization) != 1:
        raise SignatureError("Missing Authentication Token")
    scope, signed_names, signature = _parse_authorization(authorization[0])
    key_id, scope_date, region, scope_service, _ = scope

    if not hmac.compare_digest(key_id.encode(), access_key_id.encode()):
        raise SignatureError("The security token included in the request is invalid.")
    if scope_service != service:
        raise SignatureError(f"Credential should be scoped to correct service: '{service}'.")

    amz_date = header_values.get("x-amz-date", [])
    if len(amz_date) != 1 or "x-amz-date" not in signed_names:
        raise SignatureError("The request must carry one signed X-Amz-Date header.")
    signed_at = _parse_amz_date(amz_date[0])
    current = time.time() if now is None else now
    if abs(current - signed_at) > MAX_SKEW_SECONDS:
        raise SignatureError(
            f"Signature expired: {amz_date[0]} is more than {MAX_SKEW_SECONDS // 60} minutes from the server's time."
        )
    if scope_date != amz_date[0][:8]:
        raise SignatureError("Credential scope date does not match X-Amz-Date.")
    if "host" not in signed_names:
        raise SignatureError("The Host header must be signed.")
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
    request.context["timestamp"] = amz_date[0]
    signer = SigV4Auth(Credentials(access_key_id, secret_access_key), service, region)
    if signer.signed_headers(signer.headers_to_sign(request)) != ";".join(signed_names):
        raise SignatureError("SignedHeaders lists headers that cannot be signed.")
    canonical_request = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical_request), request)
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        raise SignatureError(
            "The request signature we calculated does not match the signature you provided. "
            "Check your AWS Secret Access Key and signing method."
        )
