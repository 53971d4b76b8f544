"""Run an unpacked Lambda package the way Lambda does, through Zappa's handler, and report as JSON.

    python -B -I -S scripts/lambda_smoke.py UNPACKED_DIR [--layer UNPACKED_LAYER_DIR] [--cold-only] [--import-cost]

Meant to be started by scripts/check_package.py and bench/cold_start.py in a fresh process with
the Lambda runtime's Python version and nothing but its standard library: -I -S keeps every
installed package out of sys.path, so anything the package forgot fails here; -B writes no
bytecode, as on Lambda's read-only code directory. --layer is an unpacked Lambda layer (what Lambda
puts in /opt): its python/ folder goes on sys.path after the package, where Lambda puts /opt/python. The caller provides what Zappa's remote_env
file provides in production (SECRET_KEY, DATABASE_URL) and fake AWS settings that keep every AWS
call on this machine; this process never calls AWS on purpose.

Steps: import handler.py (timed), GET the login page through API Gateway's default URL (the cold
start: Django set-up and the first request; the libraries it imported are recorded), Swagger UI and the admin's login page, every static
file those pages link to, MQTT.js, `migrate` through Zappa's "manage" event, sign-up, an API token,
an authenticated API call, a post (whose follower fan-out is recorded as an asynchronous Lambda
invocation and then run through the handler), the scheduled `deliver_pending` event, pictures through feed/images.py (JPEG, PNG, GIF and WebP
in, WebP out), a Web Push payload encrypted and VAPID-signed, django-ses's backend, and finally
the list of imported modules that are neither in the package nor in the standard library.
"""
import base64
import json
import os
import re
import sys
import time
import types

STARTED = time.perf_counter()
# Imported only by the requests that need them (pictures, Web Push, email, the Redis cache, the
# media bucket): the first request of a cold start must load none of them. (PyYAML is not among
# them: DRF's compat module imports it whenever it is installed.)
COLD_START_UNWANTED = {"PIL", "cryptography", "_cffi_backend", "http_ece", "py_vapid", "django_ses", "redis",
                       "storages"}
DEV_ONLY = ("amqtt", "moto", "pytest", "_pytest", "playwright", "awscrt", "awsiot", "paho", "gunicorn",
            "cfnlint", "parliament", "sympy")


def request_factory(handler, stage, host):
    """A function that sends one API Gateway (REST, v1) proxy event through Zappa's handler."""

    def request(method, path, *, headers=None, body=None, query=None):
        """An API Gateway (REST, v1) proxy event; the path excludes the stage, as API Gateway sends it."""
        merged = {"Host": host, "X-Forwarded-Proto": "https", "X-Forwarded-Port": "443",
                  "Accept-Encoding": "gzip", "User-Agent": "herald-smoke"}
        merged.update(headers or {})
        event = {
            "resource": "/{proxy+}", "path": path, "httpMethod": method,
            "headers": merged, "multiValueHeaders": {k: [v] for k, v in merged.items()},
            "queryStringParameters": query, "multiValueQueryStringParameters": (
                {k: [v] for k, v in query.items()} if query else None),
            "pathParameters": {"proxy": path.lstrip("/")}, "stageVariables": None,
            "requestContext": {"stage": stage, "httpMethod": method, "path": f"/{stage}{path}",
                               "identity": {"sourceIp": "127.0.0.1", "userAgent": "herald-smoke"},
                               "resourcePath": "/{proxy+}", "requestId": "smoke"},
            "body": body, "isBase64Encoded": False,
        }
        response = handler.lambda_handler(event, None)
        raw = response.get("body") or ""
        data = base64.b64decode(raw) if response.get("isBase64Encoded") else raw.encode()
        return response["statusCode"], response.get("headers") or {}, data

    return request


# What the requests that need them import, first Web Push (cryptography, http_ece, py_vapid),
# first email (django_ses), first picture (PIL), in that order: each one's time after the cold start.
LAZY_IMPORTS = {
    "cryptography": ("cryptography.hazmat.primitives.asymmetric.ec", "cryptography.hazmat.primitives.serialization"),
    "http_ece": ("http_ece",),
    "py_vapid": ("py_vapid",),
    "django_ses": ("django_ses",),
    "PIL": ("PIL.Image", "PIL.ImageOps", "PIL.WebPImagePlugin"),
}


def compiled_from_source(package: str) -> list[str]:
    """The package's modules imported so far that Python had to compile (no bytecode beside the
    source): each costs a compilation on every cold start, since nothing can be cached on Lambda.
    The others came from the package's bytecode: sourceless, or unchecked-hash in __pycache__."""
    from importlib.machinery import SourceFileLoader

    compiled = []
    for name, module in list(sys.modules.items()):
        spec = getattr(module, "__spec__", None)
        origin = getattr(spec, "origin", None) or ""
        if isinstance(getattr(spec, "loader", None), SourceFileLoader) and origin.startswith(package + os.sep):
            if not (spec.cached and os.path.exists(spec.cached)):
                compiled.append(name)
    return sorted(compiled)


def import_cost() -> dict:
    import importlib

    cost = {}
    for name, modules in LAZY_IMPORTS.items():
        started = time.perf_counter()
        for module in modules:
            importlib.import_module(module)
        cost[name] = round((time.perf_counter() - started) * 1000, 1)
    return cost


def pictures() -> dict:
    """feed/images.py on a small picture in each accepted format: what it wrote (webp), per format."""
    import io

    from PIL import Image

    from feed import images

    written = {}
    for fmt in ("JPEG", "PNG", "GIF", "WEBP"):
        source = io.BytesIO()
        Image.new("RGB", (64, 48), (200, 40, 90)).save(source, fmt)
        try:
            out = images.post_image(source).content
            avatar = images.avatar_images(io.BytesIO(source.getvalue()))["small"].content
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            written[fmt] = f"{type(exc).__name__}: {exc}"
            continue
        webp = out[:4] == b"RIFF" and out[8:12] == b"WEBP" and avatar[8:12] == b"WEBP"
        written[fmt] = "webp" if webp else repr(out[:12])
    return written


def web_push_crypto() -> str:
    """An RFC 8291 payload encrypted and decrypted (http_ece, cryptography) and RFC 8292 VAPID
    claims signed (py_vapid): the compiled parts Web Push needs load and work."""
    try:
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
        import http_ece
        from py_vapid import Vapid02

        receiver = ec.generate_private_key(ec.SECP256R1())
        public = receiver.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
        auth = os.urandom(16)
        body = http_ece.encrypt(b"smoke", private_key=ec.generate_private_key(ec.SECP256R1()), dh=public,
                                auth_secret=auth, version="aes128gcm")
        if http_ece.decrypt(body, private_key=receiver, auth_secret=auth, version="aes128gcm") != b"smoke":
            return "decrypted payload differs"
        vapid = Vapid02()
        vapid.generate_keys()
        signed = vapid.sign({"sub": "mailto:ops@example.com", "aud": "https://push.example.com"})
        return "ok" if signed.get("Authorization", "").startswith("vapid t=") else f"VAPID header: {signed}"
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        return f"{type(exc).__name__}: {exc}"


def email_backend() -> str:
    """django-ses's backend loads, and the SES API models it calls are in the package."""
    try:
        import boto3
        from django.core.mail import get_connection

        get_connection("django_ses.SESBackend")
        for service in ("ses", "sesv2"):
            boto3.client(service, region_name=os.environ["AWS_REGION"])
        return "ok"
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        return f"{type(exc).__name__}: {exc}"


def main(argv: list[str]) -> dict:
    package = os.path.realpath(argv[0])
    cold_only = "--cold-only" in argv
    layer = os.path.realpath(argv[argv.index("--layer") + 1]) if "--layer" in argv else None
    sys.path.insert(0, package)
    if layer:  # Lambda's order: the function's code (/var/task), then /opt/python
        sys.path.insert(1, os.path.join(layer, "python"))
    os.chdir(package)  # Lambda's working directory is the code directory

    # The packaged settings, minus remote_env: the caller's environment stands in for the S3 file.
    settings = types.ModuleType("zappa_settings")
    with open(os.path.join(package, "zappa_settings.py"), encoding="utf-8") as fh:
        exec(compile(fh.read(), "zappa_settings.py", "exec"), settings.__dict__)
    settings.REMOTE_ENV = None
    sys.modules["zappa_settings"] = settings
    stage = settings.API_STAGE
    region = settings.ENVIRONMENT_VARIABLES.get("AWS_REGION", "us-east-1")
    os.environ.setdefault("AWS_REGION", region)  # the Lambda runtime sets both
    os.environ.setdefault("AWS_DEFAULT_REGION", region)
    host = f"smoke0000.execute-api.{region}.amazonaws.com"

    import handler  # noqa: E402  (Zappa's handler at the package root)

    report = {"stage": stage, "import_s": round(time.perf_counter() - STARTED, 3)}
    request = request_factory(handler, stage, host)
    status, headers, page = request("GET", "/accounts/login/")
    report["cold_start_s"] = round(time.perf_counter() - STARTED, 3)
    report["cold_start_cpu_s"] = round(time.process_time(), 3)  # this process's CPU time: less load-dependent
    import gc

    report["gc_threshold_after_first_response"] = list(gc.get_threshold())  # config/coldstart.py restored it
    report["login_status"] = status
    report["cold_start_modules"] = len(sys.modules)
    report["cold_start_imported"] = sorted({name.split(".")[0] for name in sys.modules} & COLD_START_UNWANTED)
    report["compiled_from_source"] = compiled_from_source(package)
    if "--import-cost" in argv:
        report["import_cost_ms"] = import_cost()
    if cold_only:
        return report

    # Asynchronous invocations (zappa.asynchronous, e.g. the follower fan-out) are recorded here
    # instead of calling Lambda, then run through the handler as Lambda would deliver them.
    import zappa.asynchronous

    invocations = []

    class RecordingLambda:
        def invoke(self, **kwargs):
            invocations.append(kwargs)
            return {"StatusCode": 202}

    zappa.asynchronous.LAMBDA_CLIENT = RecordingLambda()

    steps = report["steps"] = {}
    links = re.findall(r'(?:href|src)="([^"]*/static/[^"]*)"', page.decode("utf-8", "replace"))
    steps["login_links"] = list(links)
    steps["pages"] = {}
    for path in ("/api/docs/", "/admin/login/"):  # Swagger UI's and the admin's static files too
        status, _, other = request("GET", path)
        steps["pages"][path] = status
        links += re.findall(r'(?:href|src)="([^"]*/static/[^"]*)"', other.decode("utf-8", "replace"))
    steps["static"] = {}
    for url in dict.fromkeys(links):
        path = url[len(f"/{stage}"):] if url.startswith(f"/{stage}/") else url
        status, headers, data = request("GET", path)
        steps["static"][url] = {"status": status, "cache_control": headers.get("Cache-Control", ""),
                                "content_encoding": headers.get("Content-Encoding", ""), "bytes": len(data)}

    with open(os.path.join(package, "staticfiles", "staticfiles.json"), encoding="utf-8") as fh:
        manifest = json.load(fh)["paths"]
    mqtt = manifest.get("vendor/mqtt/mqtt.min.js")
    if mqtt:
        status, headers, data = request("GET", f"/static/{mqtt}")
        steps["mqtt_js"] = {"path": mqtt, "status": status, "bytes": len(data),
                            "content_encoding": headers.get("Content-Encoding", "")}
        # The package ships it gzipped only (config/static_serving.py): a client without gzip.
        status, headers, data = request("GET", f"/static/{mqtt}", headers={"Accept-Encoding": "identity"})
        steps["mqtt_js_without_gzip"] = {"status": status, "bytes": len(data), "javascript": b"mqtt" in data,
                                         "content_encoding": headers.get("Content-Encoding", "")}

    migrated = handler.lambda_handler({"manage": "migrate --no-input -v 0"}, None)
    steps["migrate"] = migrated

    status, _, _ = request("GET", "/")
    steps["home_anonymous"] = status
    status, _, data = request("GET", "/api/notifications/unread-count/")
    steps["api_anonymous"] = {"status": status, "body": data.decode()[:200]}
    signup = json.dumps({"username": "smoke", "password": "smoke-pass-1234-xyz"})
    status, _, data = request("POST", "/api/users/", headers={"Content-Type": "application/json"}, body=signup)
    steps["signup"] = status
    status, _, data = request("POST", "/api/token/", headers={"Content-Type": "application/json"}, body=signup)
    token = json.loads(data).get("token", "") if status == 200 else ""
    steps["token"] = status
    status, _, data = request("GET", "/api/notifications/unread-count/", headers={"Authorization": f"Token {token}"})
    steps["api_authenticated"] = {"status": status, "body": data.decode()[:200]}
    # A follower (made directly: one password hash per run is enough), so the post has a fan-out.
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    follower = get_user_model()(username="smoke_follower")
    follower.set_unusable_password()
    follower.save()
    follower_token = Token.objects.create(user=follower).key
    status, _, _ = request("POST", "/api/users/smoke/follow/", headers={"Authorization": f"Token {follower_token}"})
    steps["follow"] = status
    status, _, data = request("POST", "/api/posts/", headers={"Authorization": f"Token {token}",
                                                              "Content-Type": "application/json"},
                              body=json.dumps({"text": "hello from the smoke test"}))
    steps["post"] = status
    steps["async_tasks"] = []
    for invocation in invocations:
        message = json.loads(invocation["Payload"])
        handler.lambda_handler(message, None)
        steps["async_tasks"].append({"task": message.get("task_path"), "type": invocation.get("InvocationType")})
    # The invocations ran the queued fan-out (plan, then its chunk): the follower was told.
    from notifier.models import Notification

    steps["fanout_notified"] = Notification.objects.filter(recipient=follower, kind="new_post").count()

    scheduled = {"detail-type": "Scheduled Event", "source": "aws.events",
                 "resources": [f"arn:aws:events:us-east-1:123456789012:rule/"
                               f"{settings.PROJECT_NAME}-{stage}-notifier.tasks.deliver_pending_event"]}
    steps["deliver_pending_event"] = handler.lambda_handler(scheduled, None)

    steps["pictures"] = pictures()
    steps["web_push_crypto"] = web_push_crypto()
    steps["email_backend"] = email_backend()

    stdlib = os.path.realpath(sys.base_prefix)
    outside = set()
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if name not in ("__main__", "__mp_main__") and path and \
                not os.path.realpath(path).startswith((package, stdlib, *([layer] if layer else []))):
            outside.add(name)
    report["modules_outside_package"] = sorted(outside)
    # What the layer provided, by top-level name: the function's zip must not need it anywhere else.
    report["from_layer"] = sorted({name.split(".")[0] for name, module in list(sys.modules.items())
                                   if layer and os.path.realpath(getattr(module, "__file__", None) or "").startswith(layer)})
    report["dev_only_modules"] = sorted(n for n in sys.modules if n.split(".")[0] in DEV_ONLY)
    return report


if __name__ == "__main__":
    result = main(sys.argv[1:])
    sys.stdout.flush()
    print("LAMBDA_SMOKE " + json.dumps(result, default=str))
