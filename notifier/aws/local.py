"""The local stand-in for an AWS account: who Herald's server is when it talks to the emulator.

Locally Herald signs its STS, Publish and DeleteConnection calls with the account's root key pair,
derived from SECRET_KEY so there is nothing to configure; the emulator (runlocaliot, tests) is
started with the same pair and judges every call against the same IAM policies production uses.
The account id and role ARN are the `dev` stage's in zappa_settings.json, so the stage's own
`extra_permissions` decide what the local server may publish, exactly as they do on Lambda.

Nothing here imports the emulator: the web process uses these values in local mode.
"""
import base64
import hashlib
import hmac

from django.conf import settings

ACCOUNT = "123456789012"
STAGE = "dev"
# The dev stage's browser role (zappa_settings.json `IOT_ROLE_ARN`, created there by iot_setup).
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/herald-iot-browser-herald-dev"


def _derive(label: bytes) -> bytes:
    return hmac.new(settings.SECRET_KEY.encode(), b"herald-localiot-" + label, hashlib.sha256).digest()


def root_credentials() -> tuple[str, str]:
    """(access key id, secret access key) of the local account's root identity.

    Shaped like AWS's long-term keys (AKIA + 16 base32 characters, a 40-character secret).
    """
    key_id = "AKIA" + base64.b32encode(_derive(b"root-key-id")).decode()[:16]
    secret = base64.b64encode(_derive(b"root-secret")).decode()[:40]
    return key_id, secret


def endpoint_url() -> str:
    """The emulator's HTTP API (iot-data and STS): boto3's `endpoint_url` in local mode."""
    host = settings.LOCALIOT_HOST
    return f"http://{f'[{host}]' if ':' in host else host}:{settings.LOCALIOT_HTTP_PORT}"


def data_endpoint() -> str:
    """The emulator's MQTT-over-WebSocket host:port: what a browser's presigned ws:// URL names."""
    host = settings.LOCALIOT_HOST
    return f"{f'[{host}]' if ':' in host else host}:{settings.LOCALIOT_WS_PORT}"
