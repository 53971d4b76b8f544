"""The Lambda deployment: zappa_settings.json, the package finisher and checker, the scheduled event.

Building the real package takes about 40 s and a separate virtualenv (`make package`, which runs
scripts/check_package.py on it); here the checker and the finisher run on small synthetic zips.
"""
import importlib.util
import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from notifier.aws import policies as iot_policies
from notifier.aws.iot_setup import default_role_name

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = json.loads((ROOT / "zappa_settings.json").read_text())
STAGES = {"dev": "herald/dev", "production": "herald/prod"}


def load_script(name):
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # the finisher's worker processes find it by name
    spec.loader.exec_module(module)
    return module


check_package = load_script("check_package")
finish_package = load_script("finish_package")


def stage(name):
    """A stage with "extends" applied, the way Zappa merges it (shallow)."""
    config = dict(SETTINGS[name])
    parent = config.pop("extends", None)
    return {**stage(parent), **config} if parent else config


# --- zappa_settings.json --------------------------------------------------------------------


@pytest.mark.parametrize("name", STAGES)
def test_stage_runs_herald_on_python_3_11_without_debug(name):
    config = stage(name)
    assert config["django_settings"] == "config.settings"
    assert config["runtime"] == "python3.11"
    assert config["architecture"] == "x86_64"  # the wheels check_package accepts
    assert config["project_name"] == "herald"
    assert config["debug"] is False  # Zappa would send tracebacks to clients
    assert config["slim_handler"] is False  # slim would fetch the code from S3 on every cold start
    assert config["use_precompiled_packages"] is False  # the venv's manylinux2014 wheels, as checked
    # The deliver_pending event invokes the function every minute, which keeps a container warm;
    # Zappa's keep-warm rule would only add invocations.
    assert config["keep_warm"] is False
    assert 256 <= config["memory_size"] <= 3008
    assert 1 <= config["timeout_seconds"] <= 30  # API Gateway gives up at 29 s anyway
    assert re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", config["s3_bucket"])


def test_stages_are_separate():
    dev, prod = stage("dev"), stage("production")
    for key in ("s3_bucket", "remote_env"):
        assert dev[key] != prod[key]
    assert dev["environment_variables"]["IOT_TOPIC_PREFIX"] != prod["environment_variables"]["IOT_TOPIC_PREFIX"]
    assert dev["environment_variables"]["IOT_ROLE_ARN"] != prod["environment_variables"]["IOT_ROLE_ARN"]


@pytest.mark.parametrize("name,prefix", STAGES.items())
def test_environment_has_the_aws_backend_and_no_secrets(name, prefix):
    config = stage(name)
    env = config["environment_variables"]
    assert env["NOTIFIER_BACKEND"] == "aws"
    assert env["IOT_TOPIC_PREFIX"] == prefix
    iot_policies.validate_topic_prefix(prefix)
    assert env["IOT_ROLE_ARN"].endswith(f":role/{default_role_name(prefix)}")  # what iot_setup creates
    assert env["STATIC_BASE_URL"] == f"/{name}/static/"  # API Gateway's /{stage}/ (no custom domain)
    assert env["ALLOWED_HOSTS"].endswith(".amazonaws.com")
    assert env["SECURE_COOKIES"] == "1"
    # Secrets come from the remote_env file on S3 at cold start, never from this file.
    assert config["remote_env"].startswith("s3://")
    for block in ("environment_variables", "aws_environment_variables"):
        for key, value in config.get(block, {}).items():
            assert not check_package.SECRET_NAMES.search(key), f"{name}: {key} must not be committed"
            assert not re.search(r"://[^/]*@", value), f"{name}: {key} looks like a URL with credentials"
    assert "DATABASE_URL" not in json.dumps(SETTINGS)
    assert "SECRET_KEY" not in json.dumps(SETTINGS)


@pytest.mark.parametrize("name,prefix", STAGES.items())
def test_extra_permissions_are_least_privilege(name, prefix):
    config = stage(name)
    region = config["aws_region"]
    role_arn = config["environment_variables"]["IOT_ROLE_ARN"]
    account = role_arn.split(":")[4]
    by_action = {}
    for statement in config["extra_permissions"]:
        assert statement["Effect"] == "Allow"
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        for action in actions:
            assert "*" not in action
            assert action not in by_action, f"{action} granted twice"
            by_action[action] = statement["Resource"]
    assert by_action == {
        "iot:Publish": [iot_policies.iot_arn(region, account, "topic", f"{prefix}/users/*/notifications"),
                        iot_policies.iot_arn(region, account, "topic", f"{prefix}/posts/*/comments")],
        "iot:DescribeEndpoint": "*",  # has no resource-level permissions
        "sts:AssumeRole": role_arn,
        # Ends a user's live connections at log-out (only Herald's client ids, never a wildcard id).
        "iot:DeleteConnection": iot_policies.iot_arn(region, account, "client", f"{iot_policies.CLIENT_ID_PREFIX}*"),
        "lambda:InvokeFunction": f"arn:aws:lambda:{region}:{account}:function:herald-{name}",  # background tasks
        # Pictures (feed/media.py): only the prefixes Herald writes, in the stage's own bucket.
        **dict.fromkeys(("s3:PutObject", "s3:GetObject", "s3:DeleteObject"), [
            f"arn:aws:s3:::{config['environment_variables']['MEDIA_BUCKET']}/{folder}/*"
            for folder in ("avatars", "posts", "uploads")]),
        # The email digest (django-ses: SendRawEmail), from the stage's own SES identity only: the
        # domain of its DEFAULT_FROM_EMAIL.
        **dict.fromkeys(("ses:SendEmail", "ses:SendRawEmail"), f"arn:aws:ses:{region}:{account}:identity/"
                        + config["environment_variables"]["DEFAULT_FROM_EMAIL"].rsplit("@", 1)[1].rstrip(">")),
    }
    assert config["environment_variables"]["MEDIA_BUCKET"] == f"herald-media-{prefix.split('/')[1]}-replace-me"


def test_pending_pushes_are_retried_every_minute_and_digests_go_hourly_and_daily():
    for name in STAGES:
        events = stage(name)["events"]
        assert [(e["function"], e["expression"]) for e in events] == [
            ("notifier.tasks.deliver_pending_event", "rate(1 minute)"),
            ("notifier.tasks.hourly_digests_event", "cron(0 * * * ? *)"),
            ("notifier.tasks.daily_digests_event", "cron(0 8 * * ? *)"),
        ]
        for event in events:
            # Zappa finds the function from the rule name, which cannot hold '-'.
            assert re.fullmatch(r"[._A-Za-z0-9]{1,63}", event["function"])
            assert len(f"herald-{name}-{event['function']}") <= 64  # one rule each, names not cut short
    from notifier.tasks import daily_digests_event, deliver_pending_event, hourly_digests_event

    assert callable(deliver_pending_event) and callable(hourly_digests_event) and callable(daily_digests_event)


@pytest.mark.parametrize("name", STAGES)
def test_extra_permissions_lint_clean(name):
    """parliament (a maintained IAM linter) finds nothing in the function's own permissions but
    iot:DeleteConnection, an action newer than its database (2025)."""
    from parliament import analyze_policy_string

    document = {"Version": "2012-10-17", "Statement": stage(name)["extra_permissions"]}
    findings = analyze_policy_string(json.dumps(document)).findings
    assert [(f.issue, f.detail) for f in findings] == [("UNKNOWN_ACTION", "Unknown action iot:DeleteConnection")]


def test_package_excludes_what_must_not_ship_and_hooks_exist():
    config = stage("dev")
    # ".venv-*": the Lambda build venv and the benchmark peer's (bench/peer_env.sh) sit in the checkout too.
    for pattern in (".venv", ".venv-*", "node_modules", "tests", "bench", "*.sqlite3", ".env", "static", "media"):
        assert pattern in config["exclude"]
    assert "staticfiles" not in config["exclude"]  # the collected files are what Lambda serves
    hooks = load_script("zappa_hooks")
    for dotted in (config["prebuild_script"], config["callbacks"]["zip"]):
        module, function = dotted.rsplit(".", 1)
        assert module == "scripts.zappa_hooks" and callable(getattr(hooks, function))


# client("iot"), and django-ses's client("sesv2" if use_v2 else "ses"): every name either way.
AWS_CLIENT = re.compile(r"""client\(\s*(?:["']([a-z0-9-]+)["']\s+if\b[^()]*?\belse\s+)?["']([a-z0-9-]+)["']""")


def test_every_aws_service_the_code_calls_keeps_its_model_in_the_package():
    import django_ses

    used = set()
    library = Path(django_ses.__file__).parent  # django-ses sends the email digest through SES
    for path in [*ROOT.glob("config/**/*.py"), *ROOT.glob("feed/**/*.py"), *ROOT.glob("notifier/**/*.py"),
                 *ROOT.glob("limits/**/*.py"), *library.glob("*.py")]:
        used |= {name for pair in AWS_CLIENT.findall(path.read_text()) for name in pair if name}
    assert {"iot", "iot-data", "sts", "ses", "sesv2"} <= used
    assert used <= finish_package.KEPT_AWS_SERVICES, f"add {used - finish_package.KEPT_AWS_SERVICES} to KEPT_AWS_SERVICES"


def test_herald_packages_ship_with_their_sources():
    """Every Python package of the project is Herald's own code, shipped with its sources (readable
    tracebacks); the libraries ship as bytecode only."""
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests", "bench", "scripts"}
    assert packages == finish_package.SOURCE_KEPT


# --- the scheduled event --------------------------------------------------------------------


@pytest.mark.django_db
def test_scheduled_event_runs_deliver_pending_once(alice, bob, memory_publisher, on_commit):
    from datetime import timedelta

    from django.utils import timezone

    from feed import services
    from notifier.models import Notification, PendingPush
    from notifier.push.publisher import PublishError
    from notifier.tasks import deliver_pending_event

    memory_publisher.fail = PublishError("connection refused")
    with on_commit():
        services.follow(bob, "alice")
    memory_publisher.fail = None
    PendingPush.objects.update(due_at=timezone.now() - timedelta(seconds=1))

    scheduled = {"detail-type": "Scheduled Event", "source": "aws.events",
                 "resources": ["arn:aws:events:us-east-1:123456789012:rule/herald-dev-notifier.tasks.deliver_pending_event"]}
    quiet = "tasks queued again: 0 stale, 0 failed; re-invoked 0; live connections closed: 0"
    assert deliver_pending_event(scheduled, None) == f"delivered 1, still pending 0, failed 0; {quiet}"
    assert not PendingPush.objects.filter(notification__recipient=alice).exists()
    assert len(memory_publisher.sent) == 1
    assert deliver_pending_event(scheduled, None) == f"delivered 0, still pending 0, failed 0; {quiet}"


# --- scripts/finish_package.py and scripts/check_package.py on synthetic zips ---------------


def write_zip(path, files):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return path


def wheel(name, version, tag, *files):
    info = f"{name}-{version}.dist-info"
    record = "".join(f"{f},sha256=x,1\n" for f in files) + f"{info}/RECORD,,\n"
    return {f"{info}/WHEEL": f"Wheel-Version: 1.0\nTag: {tag}\n", f"{info}/RECORD": record,
            f"{info}/METADATA": f"Name: {name}\nVersion: {version}\n"}


def good_files():
    manifest = {static: static.replace(".", ".0123456789ab.", 1) if "/" in static else static
                for static in check_package.REQUIRED_STATIC}
    files = {name: "x = 1\n" for name in check_package.REQUIRED_FILES if name.endswith(".py")}
    files["zappa_settings.py"] = ("DEBUG=False\nENVIRONMENT_VARIABLES={'AWS_REGION': 'us-east-1', "
                                  "'IOT_TOPIC_PREFIX': 'herald/dev'}\nAPI_STAGE='dev'\n")
    files["staticfiles/staticfiles.json"] = json.dumps({"paths": manifest, "version": "1.1"})
    for hashed in manifest.values():
        files[f"staticfiles/{hashed}"] = "/* static */"
    files["django/__init__.py"] = "VERSION = (5, 2)\n"
    files.update(wheel("Django", "5.2.19", "py3-none-any"))
    files["psycopg_binary/pq.cpython-311-x86_64-linux-gnu.so"] = b"\x7fELF"
    files.update(wheel("psycopg_binary", "3.3.9", "cp311-cp311-manylinux2014_x86_64",
                       "psycopg_binary/pq.cpython-311-x86_64-linux-gnu.so"))
    files["botocore/data/endpoints.json"] = "{}"
    files["botocore/data/iot-data/2015-05-28/service-2.json.gz"] = b"model"
    files["botocore/data/ec2/2016-11-15/service-2.json.gz"] = b"model"
    files["django/__pycache__/__init__.cpython-311.pyc"] = b"stale timestamp bytecode"
    return files


def library_files():
    """What finish_package drops or reshapes: translations, build-only libraries, twin static files."""
    return {
        "django/conf/locale/__init__.py": "LANG_INFO = {}\n",
        "django/conf/locale/en/LC_MESSAGES/django.mo": b"en catalogue",
        "django/conf/locale/en/formats.py": "DATE_FORMAT = 'N j, Y'\n",
        "django/conf/locale/fr/LC_MESSAGES/django.mo": b"fr catalogue",
        "django/conf/locale/fr/LC_MESSAGES/django.po": "msgid ''\n",
        "django/conf/locale/fr/formats.py": "DATE_FORMAT = 'j F Y'\n",
        "rest_framework/locale/de/LC_MESSAGES/django.mo": b"de catalogue",
        "rest_framework/static/rest_framework/css/bootstrap.min.css": "/* collected */",
        "yaml/__init__.py": "X = 1\n",
        "yaml/_yaml.cpython-311-x86_64-linux-gnu.so": b"\x7fELF",
        "jsonschema/__init__.py": "X = 1\n",
        "cffi/api.py": "X = 1\n",
        "_cffi_backend.cpython-311-x86_64-linux-gnu.so": b"\x7fELF",
        **wheel("cffi", "2.1.1", "cp311-cp311-manylinux2014_x86_64", "_cffi_backend.cpython-311-x86_64-linux-gnu.so"),
        "staticfiles/vendor/app.0123456789ab.js": "console.log(1)",
        "staticfiles/vendor/app.0123456789ab.js.gz": b"gzipped",
        "staticfiles/feed/logo.0123456789ab.png": b"png",
        "docs/screenshots/home.png": b"png",
        "lib/__init__.py": '''"""A library's docstring."""\nfrom __future__ import annotations\n\n'''
                           '''def check(x):\n    """Says why."""\n    assert x, "x is required"\n    return check.__doc__\n''',
        "lib-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: lib\nVersion: 1.0\n\nA long description.\n",
        "lib-1.0.dist-info/RECORD": "lib/__init__.py,sha256=x,1\nlib/_speedups.so,sha256=y,2\n",
    }


@pytest.fixture
def finished_zip(tmp_path):
    path = write_zip(tmp_path / "good.zip", good_files())
    counts = finish_package.finish(str(path), jobs=1)
    assert counts["stale_pyc_dropped"] == 1 and counts["models_dropped"] == 1 and counts["not_compiled"] == 0
    return path


def test_finisher_compiles_unchecked_hash_bytecode_and_drops_unused_models(finished_zip, tmp_path):
    with zipfile.ZipFile(finished_zip) as zf:
        names = set(zf.namelist())
        pyc = zf.read("config/__pycache__/settings.cpython-311.pyc")
        zf.extractall(tmp_path / "task")
    assert "botocore/data/iot-data/2015-05-28/service-2.json.gz" in names
    assert "botocore/data/endpoints.json" in names
    assert not any(n.startswith("botocore/data/ec2/") for n in names)
    assert pyc[:4] == importlib.util.MAGIC_NUMBER and int.from_bytes(pyc[4:8], "little") == 0b01
    # Sources whose dates no longer match (as after unzipping on Lambda) still load from the .pyc:
    # an unchecked-hash .pyc is used as is, so a changed source shows that it was.
    (tmp_path / "task" / "config" / "settings.py").write_text("x = 2\n")
    done = subprocess.run([sys.executable, "-B", "-I", "-c",
                           f"import sys; sys.path.insert(0, {str(tmp_path / 'task')!r}); "
                           "import config.settings as s; print(s.x, s.__cached__)"],
                          capture_output=True, text=True, check=True)
    assert done.stdout.split()[0] == "1"


def test_finisher_ships_libraries_as_bytecode_and_drops_what_nothing_reads(tmp_path):
    path = write_zip(tmp_path / "lib.zip", {**good_files(), **library_files()})
    counts = finish_package.finish(str(path), jobs=1)
    with zipfile.ZipFile(path) as zf:
        names = set(zf.namelist())
        metadata = zf.read("lib-1.0.dist-info/METADATA")
        record = zf.read("lib-1.0.dist-info/RECORD")
        zf.extractall(tmp_path / "task")
    # Libraries: a sourceless .pyc at the legacy location, no source, no __pycache__.
    for module in ("django/__init__", "zappa/asynchronous", "lib/__init__", "django/conf/locale/en/formats"):
        assert f"{module}.pyc" in names and f"{module}.py" not in names
    assert not any(n.startswith("django/__pycache__/") for n in names)
    # Herald's own code and the root's modules keep their sources, beside __pycache__ bytecode.
    for module in ("config/settings", "notifier/tasks", "handler", "zappa_settings", "manage"):
        assert f"{module}.py" in names and check_package.pyc_path(f"{module}.py") in names
    # English only; build-only and development-only libraries; copies that staticfiles/ has.
    assert "django/conf/locale/en/LC_MESSAGES/django.mo" in names and "django/conf/locale/__init__.pyc" in names
    assert not any("/locale/fr/" in n or "/locale/de/" in n for n in names)
    for gone in ("yaml/_yaml.cpython-311-x86_64-linux-gnu.so", "jsonschema/__init__.pyc", "cffi/api.pyc",
                 "rest_framework/static/rest_framework/css/bootstrap.min.css", "docs/screenshots/home.png",
                 "staticfiles/vendor/app.0123456789ab.js"):
        assert gone not in names
    for kept in ("yaml/__init__.pyc", "staticfiles/vendor/app.0123456789ab.js.gz",
                 "staticfiles/feed/logo.0123456789ab.png"):
        assert kept in names
    # cffi's compiled backend is cryptography's: it ships in the layer, not in the function's zip.
    assert not any(n.startswith(("_cffi_backend", "cffi-")) for n in names)
    assert counts["layer_files"] == 4  # the backend and cffi's dist-info
    assert counts["locales_dropped"] == 4 and counts["static_twins_dropped"] == 1
    # Metadata: headers without the long description; RECORD rows of compiled extensions only.
    assert metadata == b"Metadata-Version: 2.1\nName: lib\nVersion: 1.0\n"
    assert record == b"lib/_speedups.so,sha256=y,2\n"
    # The sourceless bytecode loads without its source: docstrings gone, asserts still there.
    done = subprocess.run([sys.executable, "-B", "-I", "-c",
                           f"import sys; sys.path.insert(0, {str(tmp_path / 'task')!r}); import lib, django\n"
                           "print(lib.__doc__, lib.check(1), django.VERSION, lib.__file__.endswith('lib/__init__.pyc'))\n"
                           "try: lib.check(0)\nexcept AssertionError as e: print(e)"],
                          capture_output=True, text=True, check=True)
    assert done.stdout.split("\n")[:2] == ["None None (5, 2) True", "x is required"]
    assert check_package.inspect(str(path))[1] == []


def test_checker_refuses_bytecode_for_another_python(finished_zip, tmp_path):
    with zipfile.ZipFile(finished_zip) as zf:
        files = {n: zf.read(n) for n in zf.namelist()}
    files["django/__init__.pyc"] = b"\x00\x00\r\n" + files["django/__init__.pyc"][4:]
    _, problems = check_package.inspect(str(write_zip(tmp_path / "old.zip", files)))
    assert any("bytecode for another Python version" in p for p in problems), problems


def test_checker_passes_a_good_package(finished_zip):
    summary, problems = check_package.inspect(str(finished_zip))
    assert problems == []
    assert {"django", "psycopg-binary"} <= set(summary["distributions"])


@pytest.mark.parametrize("extra,expected", [
    ({"amqtt/__init__.py": ""}, "module in the package: amqtt"),
    (wheel("moto", "5.2.5", "py3-none-any"), "distribution in the package: moto"),
    (wheel("pytest", "9.2.0", "py3-none-any"), "distribution in the package: pytest"),
    ({"playwright/__init__.py": ""}, "module in the package: playwright"),
    ({"db.sqlite3": "SQLite format 3"}, "must not ship: db.sqlite3"),
    ({"tests/test_api.py": ""}, "must not ship: tests/"),
    ({"node_modules/mqtt/package.json": "{}"}, "must not ship: node_modules/"),
    ({"zappa_settings.py": "DEBUG=False\nENVIRONMENT_VARIABLES={'DATABASE_URL': 'postgres://u:p@h/db'}\n"},
     "secret in the packaged environment: DATABASE_URL"),
    ({"zappa_settings.py": "DEBUG=True\nENVIRONMENT_VARIABLES={}\n"}, "zappa debug is on"),
    ({"awscrt/_awscrt.abi3.so": b"\x7fELF"}, "module in the package: awscrt"),
    ({"fancy/_speedups.cpython-311-x86_64-linux-gnu.so": b"\x7fELF",
      **wheel("fancy", "1.0", "cp311-cp311-manylinux_2_34_x86_64", "fancy/_speedups.cpython-311-x86_64-linux-gnu.so")},
     "not Lambda python3.11"),
    ({"fancy/_speedups.so": b"\x7fELF"}, "compiled extension of unknown origin"),
])
def test_checker_reports_what_must_not_ship(tmp_path, extra, expected):
    path = write_zip(tmp_path / "bad.zip", {**good_files(), **extra})
    finish_package.finish(str(path), jobs=1)
    _, problems = check_package.inspect(str(path))
    assert any(expected in p for p in problems), problems


def test_checker_reports_missing_static_files_and_bytecode(tmp_path):
    files = good_files()
    manifest = json.loads(files["staticfiles/staticfiles.json"])
    del manifest["paths"]["vendor/mqtt/mqtt.min.js"]
    files["staticfiles/staticfiles.json"] = json.dumps(manifest)
    del files["staticfiles/" + check_package.REQUIRED_STATIC[0].replace(".", ".0123456789ab.", 1)]
    del files["notifier/tasks.py"]
    _, problems = check_package.inspect(str(write_zip(tmp_path / "bad.zip", files)))  # not finished
    assert "static file not collected: vendor/mqtt/mqtt.min.js" in problems
    assert any(p.startswith("collected static file missing from the zip: staticfiles/feed/herald.") for p in problems)
    assert "missing: notifier/tasks.py" in problems
    assert any("have no bytecode" in p for p in problems)


def test_checker_command_fails_over_budget(finished_zip):
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "check_package.py"), str(finished_zip),
                           "--max-zipped-bytes", "1000"], capture_output=True, text=True)
    assert done.returncode == 1
    assert "over the 1,000-byte budget" in done.stderr
    ok = subprocess.run([sys.executable, str(ROOT / "scripts" / "check_package.py"), str(finished_zip)],
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "package OK" in ok.stdout


@pytest.mark.parametrize("tag,fits", [
    ("py3-none-any", True),
    ("cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64", True),
    ("cp311-cp311-manylinux_2_5_x86_64.manylinux1_x86_64", True),
    ("cp311-abi3-manylinux_2_26_x86_64", True),
    ("cp311-cp311-manylinux_2_28_x86_64", False),  # glibc 2.28 > Amazon Linux 2's 2.26
    ("cp311-cp311-manylinux2014_aarch64", False),
    ("cp312-cp312-manylinux2014_x86_64", False),
    ("cp311-cp311-musllinux_1_1_x86_64", False),
    ("cp311-cp311-macosx_11_0_arm64", False),
])
def test_wheel_tags_lambda_python_3_11_can_load(tag, fits):
    assert check_package.wheel_tag_fits(tag) is fits


def test_a_source_python_cannot_compile_needs_no_bytecode(tmp_path):
    path = write_zip(tmp_path / "odd.zip", {**good_files(), "legacy/py2_only.py": "print 'hello'\n"})
    assert finish_package.finish(str(path), jobs=1)["not_compiled"] == 1
    assert check_package.inspect(str(path))[1] == []


def test_the_local_account_is_the_dev_stage():
    """The emulator stands in for the dev stage's account: its role and its Lambda permissions."""
    from notifier.aws import local

    dev = stage("dev")
    assert local.ROLE_ARN == dev["environment_variables"]["IOT_ROLE_ARN"]
    assert local.ACCOUNT == dev["environment_variables"]["IOT_ROLE_ARN"].split(":")[4]
    assert local.STAGE == "dev"


def test_the_package_leaves_out_the_pillow_parts_herald_never_loads():
    """AVIF, fonts and colour management (4.7 MiB zipped with their libraries) are not shipped; the
    core, WebP and the libraries they link against are (feed/images.py decodes JPEG, PNG, GIF and
    WebP and writes WebP). Checked against the installed Pillow's own file names."""
    import fnmatch
    import os

    import PIL

    globs = stage("dev")["exclude_glob"]
    site = Path(PIL.__file__).parent.parent
    names = [f"{folder}/{name}" for folder in ("PIL", "pillow.libs") if (site / folder).is_dir()
             for name in os.listdir(site / folder)]

    def dropped(name):
        return any(fnmatch.fnmatch(name, pattern) for pattern in globs)

    needed = ("PIL/_imaging.", "PIL/_webp.", "pillow.libs/libwebp", "pillow.libs/libsharpyuv", "pillow.libs/libjpeg",
              "pillow.libs/libtiff", "pillow.libs/libopenjp2", "pillow.libs/libxcb", "pillow.libs/libXau",
              "pillow.libs/libzstd", "pillow.libs/liblzma")
    assert not [n for n in names if n.startswith(needed) and dropped(n)]
    assert [n for n in names if n.startswith("PIL/_avif") and dropped(n)]
    assert not [n for n in names if n.startswith(("PIL/_avif", "PIL/_imagingft", "PIL/_imagingcms")) and not dropped(n)]
    # finish_package keeps the plugins feed/images.py opens with (and those they load).
    for plugin in ("Jpeg", "Png", "Gif", "WebP", "Mpo", "Tiff", "Bmp", "Ppm"):
        assert (site / "PIL" / f"{plugin}ImagePlugin.py").is_file()
        assert finish_package.dropped(f"PIL/{plugin}ImagePlugin.py") is None
    assert finish_package.dropped("PIL/PsdImagePlugin.py")


def test_deploy_rehearsal_holds_the_package_to_the_same_budget():
    assert load_script("deploy_check").MAX_CODE_BYTES == check_package.MAX_ZIPPED_BYTES == 15_000_000


# --- the libraries layer --------------------------------------------------------------------


@pytest.mark.parametrize("name", STAGES)
def test_each_stage_runs_with_its_own_libraries_layer(name):
    """The function's zip leaves cryptography and Pillow to the layer: every stage must list one,
    its own (scripts/publish_layer.py replaces the version)."""
    config = stage(name)
    publish_layer = load_script("publish_layer")
    layer = publish_layer.layer_name(SETTINGS, name)
    assert layer == f"herald-{name}-libs"
    arns = [arn for arn in config["layers"] if f":layer:{layer}:" in arn]
    assert len(arns) == 1 and re.fullmatch(rf"arn:aws:lambda:{config['aws_region']}:\d{{12}}:layer:{layer}:\d+", arns[0])
    bumped = arns[0].rsplit(":", 1)[0] + ":7"
    assert publish_layer.with_layer(config["layers"], bumped) == [a for a in config["layers"] if a != arns[0]] + [bumped]


def layer_wheels():
    """What build_layer.py puts in a layer: the layer's distributions under python/."""
    files = {
        "cryptography/__init__.py": '"""cryptography."""\nX = 1\n',
        "cryptography/hazmat/bindings/_rust.abi3.so": b"\x7fELF",
        **wheel("cryptography", "51.0.1", "cp311-abi3-manylinux2014_x86_64", "cryptography/__init__.py",
                "cryptography/hazmat/bindings/_rust.abi3.so"),
        "PIL/__init__.py": "X = 1\n",
        "PIL/PsdImagePlugin.py": "X = 1\n",
        **wheel("pillow", "12.2.0", "cp311-cp311-manylinux2014_x86_64", "PIL/__init__.py", "PIL/PsdImagePlugin.py"),
    }
    return files


def test_the_function_zip_leaves_the_layer_libraries_out(tmp_path):
    path = write_zip(tmp_path / "fn.zip", {**good_files(), **layer_wheels(),
                                           "cryptography/__pycache__/__init__.cpython-311.pyc": b"stale"})
    counts = finish_package.finish(str(path), jobs=1)
    with zipfile.ZipFile(path) as zf:
        names = set(zf.namelist())
    assert not any(n.startswith(("cryptography", "PIL", "pillow")) for n in names), sorted(names)
    assert counts["layer_files"] == 11  # the stale .pyc with its module
    assert check_package.inspect(str(path))[1] == []


def test_the_layer_is_bytecode_under_python_and_passes_the_checker(tmp_path):
    layer = write_zip(tmp_path / "layer.zip", {f"python/{n}": d for n, d in layer_wheels().items()})
    finish_package.finish(str(layer), jobs=1, layer=True)
    with zipfile.ZipFile(layer) as zf:
        names = set(zf.namelist())
        zf.extractall(tmp_path / "opt")
    assert "python/cryptography/__init__.pyc" in names and "python/cryptography/__init__.py" not in names
    assert "python/PIL/PsdImagePlugin.pyc" not in names  # a format Herald refuses, as in the function
    assert "python/cryptography/hazmat/bindings/_rust.abi3.so" in names
    summary, problems = check_package.inspect_layer(str(layer), {"django/__init__.pyc"})
    assert problems == [] and summary["top_level"] == ["PIL", "cryptography", "cryptography-51.0.1.dist-info",
                                                       "pillow-12.2.0.dist-info"]
    done = subprocess.run([sys.executable, "-B", "-I", "-c",
                           f"import sys; sys.path.insert(0, {str(tmp_path / 'opt' / 'python')!r}); "
                           "import cryptography; print(cryptography.X, cryptography.__doc__)"],
                          capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["1", "None"]


def test_the_layer_checker_refuses_overlaps_files_outside_python_and_sources(tmp_path):
    files = {f"python/{n}": d for n, d in layer_wheels().items()}
    layer = write_zip(tmp_path / "layer.zip", {**files, "cryptography/stray.py": "X = 1\n"})
    _, problems = check_package.inspect_layer(str(layer), {"PIL/__init__.pyc"}, max_bytes=100)
    assert any("over the 100-byte budget" in p for p in problems)
    assert any("outside python/" in p for p in problems)
    assert "in both the function's zip and the layer: ['PIL']" in problems
    assert any("are sources, not bytecode" in p for p in problems)


def test_the_layer_sits_beside_the_zip():
    assert check_package.layer_path("/nonexistent/herald-dev.zip") is None
    assert load_script("build_layer").stage_globs("production") == stage("dev")["exclude_glob"]


def test_publishing_the_layer_uploads_it_once_per_content(tmp_path, monkeypatch):
    import boto3
    from moto import mock_aws

    for key in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    publish_layer = load_script("publish_layer")
    first = write_zip(tmp_path / "a.zip", {"python/x.pyc": b"one"})
    second = write_zip(tmp_path / "b.zip", {"python/x.pyc": b"two"})
    with mock_aws():
        arn, new = publish_layer.publish(str(first), "herald-dev-libs", "herald-deploy-test", "us-east-1")
        assert new and arn.endswith(":layer:herald-dev-libs:1")
        assert publish_layer.publish(str(first), "herald-dev-libs", "herald-deploy-test", "us-east-1") == (arn, False)
        arn2, new = publish_layer.publish(str(second), "herald-dev-libs", "herald-deploy-test", "us-east-1")
        assert new and arn2.endswith(":layer:herald-dev-libs:2")
        version = boto3.client("lambda", region_name="us-east-1").get_layer_version(
            LayerName="herald-dev-libs", VersionNumber=2)
        assert version["CompatibleRuntimes"] == ["python3.11"]
