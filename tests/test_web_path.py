"""The web process imports only what it serves with: no development package on the request path.

A fresh interpreter imports the WSGI app and serves a page, an API call, a credentials request
(the STS issuer, local endpoints), a comment POST with a DRF token, whose push goes through the
real boto3 publisher, and a password change, which closes the user's live connection with
DeleteConnection, all against a stand-in for the emulator's HTTP API (STS and iot-data). The development-only packages are made unimportable in
that process, as they are on Lambda where they are not installed: every request must still
succeed, none of them may end up in sys.modules, and the only code allowed even to try importing
one is botocore's optional probe for awscrt (it falls back when it is missing).
"""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEV_ONLY = ["amqtt", "moto", "awscrt", "awsiot", "paho", "playwright", "pytest", "_pytest", "gunicorn"]

CHILD = textwrap.dedent(r"""
    import http.server, importlib.abc, io, json, sys, threading, time

    DEV_ONLY = set(sys.argv[1].split(","))
    attempts = []

    class DevOnlyIsNotInstalled(importlib.abc.MetaPathFinder):
        # As on Lambda: importing a development package fails; record who tried.
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in DEV_ONLY:
                caller = sys._getframe(1)
                while caller and caller.f_globals.get("__name__", "").startswith(("importlib", "_frozen_importlib")):
                    caller = caller.f_back
                attempts.append([name, caller.f_globals.get("__name__") if caller else None])
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, DevOnlyIsNotInstalled())

    published, deleted = [], []
    ASSUMED = (
        '<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><AssumeRoleResult><Credentials>'
        '<AccessKeyId>ASIAEXAMPLEEXAMPLE12</AccessKeyId><SecretAccessKey>secret</SecretAccessKey>'
        '<SessionToken>token</SessionToken><Expiration>2099-01-01T00:00:00Z</Expiration></Credentials>'
        '<AssumedRoleUser><AssumedRoleId>AROAEXAMPLE:s</AssumedRoleId><Arn>arn:aws:sts::123456789012:assumed-role/r/s</Arn>'
        '</AssumedRoleUser></AssumeRoleResult><ResponseMetadata><RequestId>1</RequestId></ResponseMetadata>'
        '</AssumeRoleResponse>'
    ).encode()

    class IotData(http.server.BaseHTTPRequestHandler):
        # Stands in for the emulator's HTTP API: STS AssumeRole (POST /), iot-data Publish
        # (POST /topics/{topic}) and DeleteConnection (DELETE /connections/{clientId}).
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.path == "/":
                self.answer(ASSUMED, "text/xml")
            else:
                published.append(self.path.split("?")[0])
                self.answer(b"{}")

        def do_DELETE(self):
            deleted.append(self.path.split("?")[0])
            self.answer(b"{}")

        def answer(self, body, content_type="application/json"):
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[2])), IotData)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    started = time.perf_counter()
    import config.wsgi
    imported = time.perf_counter() - started

    from django.core.management import call_command
    call_command("migrate", verbosity=0)
    from rest_framework.authtoken.models import Token
    from feed.models import User

    tokens = {}
    for name in ("alice", "bob"):
        user = User(username=name)
        user.set_unusable_password()
        user.save()
        tokens[name] = Token.objects.create(user=user).key

    def request(method, path, body=None, token=None):
        data = json.dumps(body).encode() if body is not None else b""
        environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": "", "SCRIPT_NAME": "",
                   "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1",
                   "HTTP_HOST": "127.0.0.1", "REMOTE_ADDR": "127.0.0.1", "wsgi.version": (1, 0),
                   "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(data), "wsgi.errors": sys.stderr,
                   "wsgi.multithread": True, "wsgi.multiprocess": False, "wsgi.run_once": False,
                   "CONTENT_LENGTH": str(len(data)), "CONTENT_TYPE": "application/json" if data else ""}
        if token:
            environ["HTTP_AUTHORIZATION"] = f"Token {tokens[token]}"
        seen = {}
        out = b"".join(config.wsgi.application(environ, lambda status, headers: seen.setdefault("s", status)))
        try:
            payload = json.loads(out) if out[:1] in (b"{", b"[") else None
        except ValueError:
            payload = None
        return int(seen["s"].split()[0]), payload

    results = {"import_s": round(imported, 3)}
    results["page"], _ = request("GET", "/accounts/login/")
    results["api"], _ = request("GET", "/api/feed/", token="bob")
    results["credentials"], credentials = request("POST", "/api/notifications/credentials/", {}, token="bob")
    results["credentials_backend"] = (credentials or {}).get("backend")
    results["post"], post = request("POST", "/api/posts/", {"text": "Hello from alice"}, token="alice")
    results["comment"], _ = request("POST", f"/api/posts/{post['id']}/comments/", {"text": "Nice one"}, token="bob")
    results["alice_topic"] = f"/topics/herald%2Fdev%2Fusers%2F{User.objects.get(username='alice').pk}%2Fnotifications"
    results["published"] = published
    bob = User.objects.get(username="bob")
    bob.set_password("a-new-password-for-bob")
    bob.save()  # what the password change page does; closes bob's live connection
    results["deleted"] = deleted
    results["client_id"] = (credentials or {}).get("client_id")
    results["loaded_emulator"] = sorted(n for n in sys.modules if n.startswith("notifier.localiot"))
    results["loaded_dev_only"] = sorted(n for n in sys.modules if n.split(".")[0] in DEV_ONLY)
    results["loaded_pillow"] = sorted(n for n in sys.modules if n.split(".")[0] == "PIL")
    results["attempts"] = attempts
    print("WEBPATH " + json.dumps(results))
""")


def free_port():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_web_path_serves_pages_api_credentials_and_comments_without_dev_packages(tmp_path):
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("DJANGO_", "AWS_", "LOCALIOT_", "NOTIFIER_", "IOT_", "DATABASE_URL", "DEBUG"))}
    port = free_port()
    env.update({
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'web.sqlite3'}",
        "NOTIFIER_BACKEND": "local", "LOCALIOT_HOST": "127.0.0.1", "LOCALIOT_HTTP_PORT": str(port),
        "IOT_TOPIC_PREFIX": "herald/dev", "LOG_LEVEL": "ERROR",
        "AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    })
    done = subprocess.run([sys.executable, "-c", CHILD, ",".join(DEV_ONLY), str(port)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    line = next((l for l in done.stdout.splitlines() if l.startswith("WEBPATH ")), None)
    assert line, done.stderr[-3000:]
    result = json.loads(line[len("WEBPATH "):])

    assert result["page"] == 200
    assert result["api"] == 200
    assert (result["credentials"], result["credentials_backend"]) == (200, "local")
    assert (result["post"], result["comment"]) == (201, 201)
    assert result["alice_topic"] in result["published"], result["published"]  # pushed with boto3
    assert result["deleted"] == [f"/connections/{result['client_id']}"]
    assert result["loaded_dev_only"] == []
    assert result["loaded_emulator"] == []  # the web path never imports the emulator's package
    assert result["loaded_pillow"] == []  # Pillow is loaded by a request with a picture, not before (feed/images.py)
    assert {caller for _, caller in result["attempts"]} <= {"botocore.compat"}, result["attempts"]
