"""Check a Lambda zip before it is deployed: size, contents, binaries, bytecode; optionally run it.

    python scripts/check_package.py dist/herald-dev.zip [--layer dist/herald-dev-layer.zip] [--smoke]
                                    [--python python3.11]

The layer (scripts/build_layer.py) defaults to the zip's sibling NAME-layer.zip when there is one.
Prints what the package holds (largest parts first) and exits 1 with one line per problem:
- the function's zip over MAX_ZIPPED_BYTES, the layer over MAX_LAYER_BYTES (our budgets: small
  packages start faster), or both together over Lambda's 250 MB unzipped limit;
- a layer whose files are not all under python/, or that holds something the function's zip holds
  too (one copy of each library);
- a development or build-only distribution inside (amqtt, moto, pytest, playwright, awscrt, ...),
  or files that must never ship (the SQLite database, .env, tests, node_modules, a virtualenv);
- a Zappa file, the Django project, the collected static files or one of the static files the pages
  need (MQTT.js among them) missing;
- a secret in the packaged Zappa settings (they belong in the remote_env file on S3);
- a compiled extension that Lambda's python3.11 (Amazon Linux 2, glibc 2.26, x86_64) cannot load;
- Python sources without the bytecode scripts/finish_package.py adds (every cold start would
  compile them again), or bytecode for another Python version.

--smoke also unpacks the zip (and the layer, as Lambda does into /opt) and runs
scripts/lambda_smoke.py in a fresh, isolated interpreter:
pages, static files (with and without gzip), the API, a migration and the scheduled event through
Zappa's handler, pictures decoded and encoded by feed/images.py, a Web Push payload encrypted and
signed, with no installed package visible; and it checks that the first request imported none of
the libraries only some requests need (lambda_smoke.COLD_START_UNWANTED).
"""
import argparse
import collections
import gc
import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
# The budgets, in bytes. The function's zip: 15 MB (15,000,000 bytes, not MiB), as asked; it holds
# 13.3 MiB today, psycopg's libpq with its own OpenSSL and Kerberos (3.5 MiB zipped) the largest
# part. The layer: the compiled libraries only some requests need (scripts/build_layer.py:
# cryptography 4.4 MiB, Pillow 2.2), 6.5 MiB today.
MAX_ZIPPED_BYTES = 15_000_000
MAX_LAYER_BYTES = 7_000_000
MAX_UNZIPPED_MB = 250  # Lambda's limit for a function and its layers, unzipped
MB = 1024 * 1024
LAYER_ROOT = "python/"  # Lambda puts a layer's python/ folder (/opt/python) on sys.path

# Distributions (normalised names) and top-level modules that have no business on Lambda.
FORBIDDEN_DISTRIBUTIONS = {
    "amqtt", "moto", "pytest", "pytest-django", "playwright", "cfn-lint", "awscrt", "awsiotsdk",
    "paho-mqtt", "gunicorn", "parliament", "sympy", "docker", "responses", "websockets",
    "troposphere", "cfn-flip", "setuptools", "pip", "wheel",
}
FORBIDDEN_MODULES = {
    "amqtt", "moto", "pytest", "_pytest", "pytest_django", "playwright", "cfnlint", "awscrt", "awsiot",
    "paho", "gunicorn", "parliament", "sympy", "docker", "responses", "websockets", "troposphere",
    "cfn_flip", "setuptools", "pip", "wheel",
}
# Paths (first component) that must never ship: local data, tests, tooling.
FORBIDDEN_TOP = {"tests", "bench", "node_modules", ".venv", ".venv-lambda", ".git", ".ci", "scripts",
                 ".env", ".pytest_cache", "test-results"}
FORBIDDEN_FILE = re.compile(r"(^|/)([^/]*\.sqlite3[^/]*|\.env)$")
REQUIRED_FILES = ["handler.py", "zappa_settings.py", "manage.py", "config/settings.py", "config/wsgi.py",
                  "notifier/tasks.py", "zappa/asynchronous.py", "staticfiles/staticfiles.json"]
# Static files the pages link to; each must be in the manifest and in the zip under its hashed name.
REQUIRED_STATIC = ["feed/herald.css", "notifier/live.js", "vendor/mqtt/mqtt.min.js",
                   "vendor/htmx/htmx.min.js",
                   "drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js",
                   "drf_spectacular_sidecar/swagger-ui-dist/swagger-ui.css", "admin/css/base.css"]
SECRET_NAMES = re.compile(r"SECRET|PASSWORD|DATABASE_URL|TOKEN|PRIVATE|ACCESS_KEY", re.I)
# Lambda python3.11 runs on Amazon Linux 2: glibc 2.26, x86_64 (zappa_settings "architecture").
MAX_GLIBC = (2, 26)
LEGACY_MANYLINUX = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}
PYTHON_TAGS = {"cp311", "py3", "py311", "abi3", "none"}


def present(name: str, names: set) -> bool:
    """A module's source or, for a library shipped as bytecode only, its sourceless .pyc."""
    return name in names or (name.endswith(".py") and name + "c" in names)


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def wheel_tag_fits(tag: str, arch: str = "x86_64") -> bool:
    """cp311-cp311-manylinux_2_17_x86_64 -> True; ...-manylinux_2_34_x86_64 or -macosx... -> False."""
    try:
        python, abi, platform = tag.split("-")
    except ValueError:
        return False
    if not set(python.split(".")) & PYTHON_TAGS or not set(abi.split(".")) & {"cp311", "abi3", "none"}:
        return False
    for plat in platform.split("."):
        if plat == "any":
            return True
        match = re.fullmatch(r"manylinux_(\d+)_(\d+)_(\w+)", plat)
        if match:
            glibc, plat_arch = (int(match[1]), int(match[2])), match[3]
        else:
            legacy = re.fullmatch(r"(manylinux1|manylinux2010|manylinux2014)_(\w+)", plat)
            if not legacy:
                continue
            glibc, plat_arch = LEGACY_MANYLINUX[legacy[1]], legacy[2]
        if plat_arch == arch and glibc <= MAX_GLIBC:
            return True
    return False


def pyc_path(source: str) -> str:
    head, tail = os.path.split(source)
    return f"{head + '/' if head else ''}__pycache__/{tail[:-3]}.cpython-311.pyc"


def compiles(source: bytes, name: str) -> bool:
    """Whether Python could import this file at all (a file that cannot compile needs no bytecode)."""
    try:
        compile(source, name, "exec", dont_inherit=True)
    except (SyntaxError, ValueError):
        return False
    return True


def layer_path(path: str) -> str | None:
    """dist/herald-dev.zip -> dist/herald-dev-layer.zip, when scripts/build_layer.py wrote it."""
    sibling = path[:-len(".zip")] + "-layer.zip" if path.endswith(".zip") else None
    return sibling if sibling and os.path.isfile(sibling) else None


def extension_problems(names: set[str], read, dists: dict[str, str], root: str = "") -> list[str]:
    """Compiled extensions that do not come from a distribution with a wheel tag Lambda can load.
    `root`: the folder the distributions are installed in (a layer's python/)."""
    problems = []
    owner = {}
    tags = {}
    for dist_info in dists.values():
        if f"{root}{dist_info}/RECORD" in names:
            for row in read(f"{root}{dist_info}/RECORD").decode().splitlines():
                owner[root + row.split(",")[0]] = dist_info
        if f"{root}{dist_info}/WHEEL" in names:
            tags[dist_info] = re.findall(r"^Tag: (\S+)", read(f"{root}{dist_info}/WHEEL").decode(), re.M)
    for name in sorted(names):
        if re.search(r"\.so(\.|$)", name):
            dist_info = owner.get(name)
            if dist_info is None:
                problems.append(f"compiled extension of unknown origin: {name}")
            elif not any(wheel_tag_fits(tag) for tag in tags.get(dist_info, [])):
                problems.append(f"{name}: built for {tags.get(dist_info)}, not Lambda python3.11 "
                                f"(manylinux, glibc <= {MAX_GLIBC[0]}.{MAX_GLIBC[1]}, x86_64)")
    return problems


def distributions(names: set[str], root: str = "") -> dict[str, str]:
    """{normalised name: dist-info folder} of the distributions installed at `root`."""
    dists = {}
    for name in names:
        top = name[len(root):].split("/")[0] if name.startswith(root) else ""
        if top.endswith(".dist-info"):
            dists.setdefault(normalise(top[: -len(".dist-info")].rsplit("-", 1)[0]), top)
    return dists


def inspect_layer(path: str, function_names: set[str], *, max_bytes: int = MAX_LAYER_BYTES) -> tuple[dict, list[str]]:
    """(summary, problems) for the layer zip at `path`, beside the function's zip's names."""
    problems: list[str] = []
    zipped = os.path.getsize(path)
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
        names = {i.filename for i in infos}
        unzipped = sum(i.file_size for i in infos)
        parts = collections.Counter(i.filename.split("/")[1] for i in infos if i.filename.startswith(LAYER_ROOT))
        summary = {"path": path, "zipped_bytes": zipped, "unzipped_bytes": unzipped, "files": len(infos),
                   "top_level": sorted(parts)}
        if zipped > max_bytes:
            problems.append(f"layer is {zipped:,} bytes ({zipped / MB:.1f} MiB), over the {max_bytes:,}-byte budget")
        outside = sorted(n for n in names if not n.startswith(LAYER_ROOT))
        if outside:
            problems.append(f"layer files outside {LAYER_ROOT} (Lambda would not import them): {outside[:5]}")
        twice = sorted(top for top in parts if any(n == top or n.startswith(top + "/") for n in function_names))
        if twice:
            problems.append(f"in both the function's zip and the layer: {twice}")
        dists = distributions(names, LAYER_ROOT)
        summary["distributions"] = sorted(dists)
        for dist in sorted(set(dists) & FORBIDDEN_DISTRIBUTIONS):
            problems.append(f"development/build-only distribution in the layer: {dist}")
        problems += extension_problems(names, zf.read, dists, LAYER_ROOT)
        sources = [n for n in names if n.endswith(".py") and compiles(zf.read(n), n)]
        if sources:
            problems.append(f"{len(sources)} modules in the layer are sources, not bytecode (e.g. {sources[0]})")
        magic = importlib.util.MAGIC_NUMBER if sys.version_info[:2] == (3, 11) else None
        wrong = [n for n in names if n.endswith(".pyc") and magic and zf.read(n)[:4] != magic]
        if wrong:
            problems.append(f"{len(wrong)} layer modules are bytecode for another Python version (e.g. {wrong[0]})")
    return summary, problems


def inspect(path: str, *, max_zipped_bytes: int = MAX_ZIPPED_BYTES,
            max_unzipped_mb: float = MAX_UNZIPPED_MB) -> tuple[dict, list[str]]:
    """(summary, problems) for the zip at `path`."""
    problems: list[str] = []
    zipped = os.path.getsize(path)
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
        names = {i.filename for i in infos}
        read = zf.read
        unzipped = sum(i.file_size for i in infos)
        parts = collections.Counter()
        for info in infos:
            parts[info.filename.split("/")[0]] += info.compress_size
        summary = {
            "path": path, "zipped_bytes": zipped, "unzipped_bytes": unzipped, "files": len(infos),
            "largest": [(name, round(size / MB, 2)) for name, size in parts.most_common(12)],
        }

        if zipped > max_zipped_bytes:
            problems.append(f"zip is {zipped:,} bytes ({zipped / MB:.1f} MiB), over the {max_zipped_bytes:,}-byte budget")
        if unzipped > max_unzipped_mb * MB:
            problems.append(f"unzipped size is {unzipped / MB:.1f} MiB, over {max_unzipped_mb} MiB")

        # Distributions: dist-info names, and top-level modules.
        dists = distributions(names)
        summary["distributions"] = sorted(dists)
        for dist in sorted(set(dists) & FORBIDDEN_DISTRIBUTIONS):
            problems.append(f"development/build-only distribution in the package: {dist} ({dists[dist]})")
        tops = {n.split("/")[0].removesuffix(".pyc").removesuffix(".py") for n in names}
        for module in sorted(tops & FORBIDDEN_MODULES):
            problems.append(f"development/build-only module in the package: {module}")
        for top in sorted({n.split("/")[0] for n in names} & FORBIDDEN_TOP):
            problems.append(f"must not ship: {top}/")
        for name in sorted(n for n in names if FORBIDDEN_FILE.search(n)):
            problems.append(f"must not ship: {name}")

        for required in REQUIRED_FILES:
            if not present(required, names):
                problems.append(f"missing: {required}")
        if "staticfiles/staticfiles.json" in names:
            manifest = json.loads(read("staticfiles/staticfiles.json")).get("paths", {})
            for static in REQUIRED_STATIC:
                hashed = manifest.get(static)
                if not hashed:
                    problems.append(f"static file not collected: {static}")
                elif not {f"staticfiles/{hashed}", f"staticfiles/{hashed}.gz"} & names:
                    problems.append(f"collected static file missing from the zip: staticfiles/{hashed}")

        if "zappa_settings.py" in names:
            namespace: dict = {}
            try:
                exec(compile(read("zappa_settings.py"), "zappa_settings.py", "exec"), namespace)
            except Exception as exc:  # noqa: BLE001 - report, don't crash
                problems.append(f"zappa_settings.py does not load: {exc}")
            for key in sorted(namespace.get("ENVIRONMENT_VARIABLES", {})):
                if SECRET_NAMES.search(key):
                    problems.append(f"secret in the packaged environment: {key} (put it in the remote_env file)")
            if namespace.get("DEBUG"):
                problems.append("zappa debug is on: tracebacks would be sent to clients")

        # Compiled extensions: each must come from a distribution with a wheel tag Lambda can load.
        problems += extension_problems(names, read, dists)

        # Bytecode: every module compiled, hash-based and unchecked (valid whatever the file dates).
        sources = [n for n in names if n.endswith(".py")]
        missing = [s for s in sources if pyc_path(s) not in names and compiles(read(s), s)]
        if missing:
            problems.append(f"{len(missing)} of {len(sources)} modules have no bytecode (e.g. {missing[0]}): "
                            "run scripts/finish_package.py")
        magic = importlib.util.MAGIC_NUMBER if sys.version_info[:2] == (3, 11) else None
        # A library shipped as bytecode only: its sourceless .pyc must be for Lambda's Python.
        sourceless = [n for n in names if n.endswith(".pyc") and "/__pycache__/" not in f"/{n}"]
        wrong = [n for n in sourceless if magic and read(n)[:4] != magic]
        if wrong:
            problems.append(f"{len(wrong)} modules are bytecode for another Python version (e.g. {wrong[0]})")
        summary["sourceless_modules"] = len(sourceless)
        for source in ("handler.py", "config/settings.py"):
            if pyc_path(source) in names:
                header = read(pyc_path(source))[:8]
                if magic and header[:4] != magic:
                    problems.append(f"{pyc_path(source)}: bytecode for another Python version")
                if int.from_bytes(header[4:8], "little") != 0b01:
                    problems.append(f"{pyc_path(source)}: not unchecked-hash bytecode")
    return summary, problems


def unpack(path: str, layer: str | None, into: str) -> tuple[str, str | None]:
    """The zip unpacked into `into`/task and the layer into `into`/opt (Lambda's /var/task, /opt)."""
    package = os.path.join(into, "task")
    with zipfile.ZipFile(path) as zf:
        zf.extractall(package)
    if not layer:
        return package, None
    opt = os.path.join(into, "opt")
    with zipfile.ZipFile(layer) as zf:
        zf.extractall(opt)
    return package, opt


def smoke(path: str, python: str, layer: str | None = None) -> tuple[dict, list[str]]:
    """Unpack and run the package (with its layer) in an isolated interpreter (scripts/lambda_smoke.py)."""
    problems = []
    with tempfile.TemporaryDirectory(prefix="herald-lambda-") as tmp:
        package, opt = unpack(path, layer, tmp)
        result = run_smoke(python, package, os.path.join(tmp, "smoke.sqlite3"), *(["--layer", opt] if opt else []))
    if "error" in result:
        return result, [result["error"]]
    steps = result.get("steps", {})
    stage = result["stage"]
    if result.get("login_status") != 200:
        problems.append(f"login page: HTTP {result.get('login_status')}")
    if not steps.get("login_links"):
        problems.append("login page links no static files")
    for page, status in steps.get("pages", {}).items():
        if status != 200:
            problems.append(f"{page}: HTTP {status}")
    for url, seen in steps.get("static", {}).items():
        if not url.startswith(f"/{stage}/static/"):
            problems.append(f"static URL {url} lacks API Gateway's /{stage}/ prefix (STATIC_BASE_URL)")
        if seen["status"] != 200:
            problems.append(f"static file {url}: HTTP {seen['status']}")
        elif "immutable" not in seen["cache_control"] and "max-age=315360000" not in seen["cache_control"]:
            problems.append(f"static file {url} is not served as immutable: {seen['cache_control']!r}")
    mqtt = steps.get("mqtt_js") or {}
    if mqtt.get("status") != 200 or mqtt.get("bytes", 0) < 10_000:
        problems.append(f"MQTT.js not served from the package: {mqtt}")
    plain = steps.get("mqtt_js_without_gzip") or {}
    if plain.get("status") != 200 or plain.get("content_encoding") or plain.get("bytes", 0) <= mqtt.get("bytes", 0) \
            or not plain.get("javascript"):
        problems.append(f"MQTT.js not served to a client without gzip: {plain}")
    pictures = steps.get("pictures") or {}
    if pictures != {fmt: "webp" for fmt in ("JPEG", "PNG", "GIF", "WEBP")}:
        problems.append(f"pictures: feed/images.py did not turn JPEG, PNG, GIF and WebP into WebP: {pictures}")
    if steps.get("web_push_crypto") != "ok":
        problems.append(f"Web Push payload encryption and VAPID signing: {steps.get('web_push_crypto')}")
    if steps.get("email_backend") != "ok":
        problems.append(f"email through SES: {steps.get('email_backend')}")
    if result.get("gc_threshold_after_first_response") != list(gc.get_threshold()):
        problems.append(f"the collector's threshold after the first response is "
                        f"{result.get('gc_threshold_after_first_response')}, not the default (config/coldstart.py)")
    if result.get("compiled_from_source"):
        problems.append(f"compiled at start-up, without bytecode in the package: {result['compiled_from_source'][:10]}")
    if result.get("cold_start_imported"):
        problems.append(f"imported by the first request, which needs none of them: {result['cold_start_imported']}")
    if not steps.get("async_tasks"):
        problems.append("a post to a follower started no background task (zappa.asynchronous)")
    elif steps.get("fanout_notified") != 1:
        problems.append(f"the post's fan-out, run by its invocations, told {steps.get('fanout_notified')} follower(s), not 1")
    expected = {"home_anonymous": 200, "signup": 201, "token": 200, "follow": 201, "post": 201}
    for step, status in expected.items():
        if steps.get(step) != status:
            problems.append(f"{step}: HTTP {steps.get(step)}, expected {status}")
    if steps.get("api_anonymous", {}).get("status") != 401:
        problems.append(f"anonymous API call: {steps.get('api_anonymous')}, expected 401")
    if steps.get("api_authenticated", {}).get("status") != 200:
        problems.append(f"authenticated API call: {steps.get('api_authenticated')}")
    if "delivered" not in str(steps.get("deliver_pending_event")):
        problems.append(f"scheduled deliver_pending event: {steps.get('deliver_pending_event')!r}")
    if result.get("dev_only_modules"):
        problems.append(f"development modules imported: {result['dev_only_modules']}")
    if result.get("modules_outside_package"):
        problems.append(f"modules loaded from outside the package: {result['modules_outside_package'][:10]}")
    return result, problems


def lambda_environment(database: str) -> dict:
    """What the process sees on Lambda, plus remote_env's secrets; AWS calls stay on this machine."""
    return {
        "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "TZ": ":UTC",
        "AWS_LAMBDA_FUNCTION_NAME": "herald-smoke", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1024",
        "SECRET_KEY": "smoke-test-secret-key-not-used-anywhere-else",
        "DATABASE_URL": f"sqlite:///{database}",
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
        "AWS_EC2_METADATA_DISABLED": "true", "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
        "IOT_DATA_ENDPOINT": "127.0.0.1:9", "AWS_MAX_ATTEMPTS": "1",
    }


def run_smoke(python: str, package: str, database: str, *extra: str, timeout: float = 120) -> dict:
    command = [python, "-B", "-I", "-S", os.path.join(HERE, "lambda_smoke.py"), package, *extra]
    done = subprocess.run(command, env=lambda_environment(database), capture_output=True, text=True,
                          timeout=timeout)
    for line in reversed(done.stdout.splitlines()):
        if line.startswith("LAMBDA_SMOKE "):
            return json.loads(line[len("LAMBDA_SMOKE "):])
    tail = (done.stderr or done.stdout).strip().splitlines()[-15:]
    return {"error": f"smoke run failed (exit {done.returncode}):\n  " + "\n  ".join(tail)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("zip")
    parser.add_argument("--max-zipped-bytes", type=int, default=MAX_ZIPPED_BYTES)
    parser.add_argument("--max-layer-bytes", type=int, default=MAX_LAYER_BYTES)
    parser.add_argument("--layer", help="the Lambda layer zip [the zip's sibling NAME-layer.zip, if any]")
    parser.add_argument("--max-unzipped-mb", type=float, default=MAX_UNZIPPED_MB)
    parser.add_argument("--smoke", action="store_true", help="also run the package (scripts/lambda_smoke.py)")
    parser.add_argument("--python", default=sys.executable,
                        help="interpreter for --smoke: the Lambda runtime's version [this one]")
    args = parser.parse_args(argv)

    layer = args.layer or layer_path(args.zip)
    summary, problems = inspect(args.zip, max_zipped_bytes=args.max_zipped_bytes, max_unzipped_mb=args.max_unzipped_mb)
    print(f"{summary['path']}: {summary['zipped_bytes']:,} bytes ({summary['zipped_bytes'] / MB:.1f} MiB) zipped, "
          f"{summary['unzipped_bytes'] / MB:.1f} MiB unzipped, {summary['files']} files")
    if layer:
        with zipfile.ZipFile(args.zip) as zf:
            names = set(zf.namelist())
        layer_summary, layer_problems = inspect_layer(layer, names, max_bytes=args.max_layer_bytes)
        problems += layer_problems
        print(f"{layer}: {layer_summary['zipped_bytes']:,} bytes ({layer_summary['zipped_bytes'] / MB:.1f} MiB) zipped, "
              f"{layer_summary['unzipped_bytes'] / MB:.1f} MiB unzipped: {', '.join(layer_summary['top_level'])}")
        total = summary["unzipped_bytes"] + layer_summary["unzipped_bytes"]
        if total > args.max_unzipped_mb * MB:
            problems.append(f"function and layer unzipped: {total / MB:.1f} MiB, over {args.max_unzipped_mb} MiB")
    print("  largest (MiB zipped): " + ", ".join(f"{n} {s}" for n, s in summary["largest"]))
    print("  distributions: " + ", ".join(summary["distributions"]))
    if args.smoke and not problems:
        result, smoke_problems = smoke(args.zip, args.python, layer)
        problems += smoke_problems
        if "cold_start_s" in result:
            print(f"  smoke: cold start {result['cold_start_s']} s (import {result['import_s']} s), "
                  f"{len(result['steps'].get('static', {}))} static files, API, migrate and scheduled event OK"
                  if not smoke_problems else "  smoke: FAILED")
    for problem in problems:
        print(f"PROBLEM: {problem}", file=sys.stderr)
    if problems:
        return 1
    print("package OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
