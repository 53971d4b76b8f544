"""Content-Security-Policy (django-csp), with the live-push WebSocket origin allowed explicitly.

Pages load scripts, styles and images from Herald itself only: no inline script (the one confirm()
handler lives in feed.js), no inline style (but on the API docs page), no framing. The browser's MQTT connection is the one
cross-origin connection a page makes; its origin follows the settings of the moment (the local
emulator's port, or the AWS IoT data endpoint), so it is added per response rather than frozen at
start-up.
"""
from urllib.parse import urlsplit

from csp.constants import NONE, SELF, UNSAFE_INLINE
from csp.middleware import CSPMiddleware as BaseCSPMiddleware
from django.conf import settings

POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        # MQTT.js keeps its keep-alive timers in a Web Worker made from a blob: URL, so a
        # background tab still pings on time (browsers slow down timers in hidden tabs).
        "worker-src": [SELF, "blob:"],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    },
}


def live_push_origins() -> list[str]:
    """Where the browser's MQTT-over-WebSocket connection goes (notifier.aws.issuer's URLs)."""
    if settings.NOTIFIER_BACKEND == "local":
        return [f"ws://{settings.LOCALIOT_HOST}:{settings.LOCALIOT_WS_PORT}"]
    if settings.IOT_DATA_ENDPOINT:
        return [f"wss://{settings.IOT_DATA_ENDPOINT}"]
    return [f"wss://*.iot.{settings.AWS_REGION}.amazonaws.com"]  # the endpoint is discovered later


def upload_origins() -> list[str]:
    """With MEDIA_BUCKET, where the browser sends a picture straight to the bucket (the url of
    feed.media.presigned_upload's POST: botocore's virtual-host name for the bucket, or the origin
    of a custom S3 endpoint, where it addresses the bucket by path). Nothing else of S3."""
    if not settings.MEDIA_BUCKET:
        return []
    endpoint = _s3_endpoint()
    if endpoint:
        parts = urlsplit(endpoint)
        return [f"{parts.scheme}://{parts.netloc}"]
    return [f"https://{settings.MEDIA_BUCKET}.s3.amazonaws.com"]


def _s3_endpoint() -> str:
    options = settings.STORAGES.get("default", {}).get("OPTIONS", {})
    return options.get("endpoint_url") or getattr(settings, "AWS_S3_ENDPOINT_URL", "") or ""


# Swagger UI (/api/docs/) sets inline styles; that page alone may.
SWAGGER_UI = {"style-src": [UNSAFE_INLINE]}


class CSPMiddleware(BaseCSPMiddleware):
    def get_policy_parts(self, request, response, report_only=False):
        parts = super().get_policy_parts(request, response, report_only)
        update = dict(parts.update or {})
        update["connect-src"] = [*live_push_origins(), *upload_origins(), *update.get("connect-src", [])]
        if settings.MEDIA_BUCKET and _s3_endpoint():
            # A custom endpoint serves the pictures too (settings.py names only S3's own hosts).
            update["img-src"] = [*upload_origins(), *update.get("img-src", [])]
        parts.update = update
        return parts
