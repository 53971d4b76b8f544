"""Finish the zip that `zappa package` built, in place: small, and quick to start.

    python scripts/finish_package.py build/herald-dev.zip

Run by `make package` with the packaging environment's Python, which must be the Lambda runtime's
version (python3.11): bytecode is version-specific. What it does, and why:

1. Bytecode that Lambda can use. Lambda's code directory is read-only, so Python cannot cache what
   it compiles there: a module without a valid .pyc is compiled again on every cold start (about
   2.5 s of a 3.6 s cold start for Herald on this machine). The .pyc files zappa copies from the
   virtualenv are timestamp-checked, and zappa stores every file in the zip with the date
   1980-01-01, so none of them matches its source once unpacked. They are replaced:
   - Herald's own code (SOURCE_KEPT) keeps its sources, for readable tracebacks, beside
     "unchecked-hash" .pyc files in __pycache__ (PEP 552): Python loads them without looking at the
     source's date or contents, which is right for code that cannot change after deployment;
   - every other module ships as bytecode only, a sourceless .pyc at the legacy location (a/b.py ->
     a/b.pyc: Python only loads a sourceless .pyc from there, never from __pycache__). A traceback
     through a library shows file and line, without the line's text. A library's bytecode leaves
     out its docstrings (without_docstrings). Sources and bytecode were about 40 % of the zip.
2. AWS API models. botocore ships the models of 400+ AWS services (15 MB compressed, half the zip);
   Herald and Zappa's runtime call a handful. boto3 and botocore stay pinned in the package (the
   versions the tests ran against, not whatever the Lambda runtime bundles this month), with only
   these models: KEPT_AWS_SERVICES. A client for another service fails with UnknownServiceError,
   so a new service Herald calls must be added here (tests/test_packaging.py checks the source).
3. What nothing reads at run time (DROPPED, each with its reason): translations of languages
   Herald does not serve, package copies of static files that collectstatic already put into
   staticfiles/, libraries only a build or a management command needs, and the uncompressed copy
   of every collected static file that has a gzip copy (config/static_serving.py serves the gzip
   copy, decompressed for a client that does not take gzip); distributions' long descriptions and
   file lists (trimmed_metadata).
4. Compiled extensions without their symbol tables and debug information (`strip
   --strip-unneeded`; the dynamic symbols stay): Pillow's and PyYAML's ship with debug
   information, cryptography's with its symbol table.
5. The libraries only some requests need and the cold start never imports (LAYER_DISTRIBUTIONS:
   cryptography and cffi's backend, http_ece and py_vapid for Web Push, Pillow for pictures; 6 MiB
   zipped, nearly all compiled code) leave the function's zip: they ship in a Lambda layer,
   dist/herald-STAGE-layer.zip under python/ (Lambda puts /opt/python on sys.path, after the
   function's code), built from the same virtualenv by scripts/build_layer.py with this module's
   finish(..., layer=True) and published by scripts/publish_layer.py. They change with
   requirements.txt, not with Herald's code, so a deployment uploads them only when they change.
"""
import argparse
import ast
import fnmatch
import importlib.util
import marshal
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from concurrent.futures import ProcessPoolExecutor

# iot, iot-data, sts: Herald's publisher and credential issuer. iam: `manage.py iot_setup`.
# s3: Zappa's remote_env (the secrets file), read at cold start, and the media bucket. lambda, sns,
# sqs, dynamodb: Zappa's asynchronous tasks and their response table. events: Zappa's event-source
# helpers (zappa.utilities). ses, sesv2: django-ses sends the email digest. (CloudWatch Logs is
# only called by Zappa's command line, `zappa tail`, on the developer's machine.)
KEPT_AWS_SERVICES = frozenset(
    {"iot", "iot-data", "sts", "iam", "s3", "lambda", "sns", "sqs", "dynamodb", "events", "ses", "sesv2"}
)
RUNTIME = (3, 11)
BOTOCORE_DATA = "botocore/data/"
# Herald's own top-level packages: shipped with their sources (readable tracebacks). Modules at
# the zip's root (handler.py, zappa_settings.py, manage.py) keep theirs too. tests/test_packaging.py
# checks that every Python package of the project is listed.
SOURCE_KEPT = frozenset({"config", "feed", "notifier", "limits"})
# The zip root's own modules: Zappa's handler and settings, Herald's manage.py. The libraries
# installed at the root (six, typing_extensions, inflection) ship as bytecode like the others.
ROOT_SOURCE_KEPT = frozenset({"handler.py", "zappa_settings.py", "django_zappa_app.py", "manage.py", "__init__.py"})
# Distributions (normalised names) that ship in the Lambda layer, not in the function's zip (5.
# above): compiled, needed only by the requests that send a Web Push or take a picture
# (scripts/lambda_smoke.py's COLD_START_UNWANTED proves the cold start imports none of them).
LAYER_DISTRIBUTIONS = frozenset({"cryptography", "cffi", "http-ece", "py-vapid", "pillow"})
LAYER_ROOT = "python/"  # where Lambda's Python runtime looks inside a layer (/opt/python)
# Herald serves English only (LANGUAGE_CODE en-us, no LocaleMiddleware): the other languages'
# catalogues and format modules are never loaded. Django needs en's catalogue for LANGUAGE_CODE.
KEPT_LOCALES = frozenset({"en"})
LOCALE = re.compile(r"(^|/)locale/([^/]+)/")
# zip-name patterns (fnmatch; "*" crosses "/") -> why nothing on Lambda reads them.
DROPPED = {
    "*.po": "translation sources (the compiled .mo are what gettext reads)",
    "*.pyi": "type stubs",
    # Zappa adds an empty __init__.py to every folder holding Python files, __pycache__ folders
    # included: nothing imports a package named __pycache__.
    "*__pycache__/__init__.py": "the empty __init__.py Zappa adds to __pycache__ folders",
    # collectstatic copied these into staticfiles/, which is what WhiteNoise serves on Lambda
    # (WHITENOISE_USE_FINDERS is off there): nothing reads the packages' own copies.
    "django/contrib/admin/static/*": "collected into staticfiles/admin/",
    "rest_framework/static/*": "collected into staticfiles/rest_framework/",
    "drf_spectacular_sidecar/static/*": "collected into staticfiles/drf_spectacular_sidecar/",
    "feed/static/*": "collected into staticfiles/",
    "notifier/static/*": "collected into staticfiles/",
    # PyYAML's libyaml binding: yaml falls back to its pure-Python code (only the schema's YAML
    # rendering, GET /api/schema/?format=yaml, uses yaml at all).
    "yaml/_yaml.*": "libyaml binding; PyYAML's pure-Python code does the same",
    "_yaml/*": "libyaml binding; PyYAML's pure-Python code does the same",
    # drf-spectacular imports jsonschema only in `manage.py spectacular --validate`, a development
    # command; these are jsonschema and what it alone needs.
    "jsonschema/*": "only `spectacular --validate` (development) imports it",
    "jsonschema-*": "only `spectacular --validate` (development) imports it",
    "jsonschema_specifications*": "jsonschema's",
    "referencing*": "jsonschema's",
    "rpds/*": "jsonschema's",
    "rpds_py-*": "jsonschema's",
    "attr/*": "jsonschema's",
    "attrs/*": "jsonschema's",
    "attrs-*": "jsonschema's",
    # cffi's Python package writes and builds bindings; cryptography's compiled bindings need only
    # the _cffi_backend extension (kept, with cffi's dist-info that owns it). pycparser is cffi's
    # C parser, for building.
    "cffi/*": "build-time half of cffi (_cffi_backend stays)",
    "pycparser*": "cffi's C parser, used when building bindings",
    # Django apps Herald does not install (INSTALLED_APPS) and nothing imports; gis is left out by
    # zappa_settings.json. (admindocs, sitemaps and syndication stay: DRF's schema generator and
    # django-stubs-ext, which django-tasks imports, use them.)
    "django/contrib/flatpages/*": "not installed",
    "django/contrib/redirects/*": "not installed",
    "django/db/backends/mysql/*": "database backends Herald does not use (PostgreSQL, SQLite)",
    "django/db/backends/oracle/*": "database backends Herald does not use (PostgreSQL, SQLite)",
    # Test cases nothing imports outside a test run. (django.test itself stays: drf-spectacular
    # builds requests with DRF's APIRequestFactory, from rest_framework.test.)
    "django/contrib/admin/tests.py": "Django's Selenium test case",
    "django/contrib/staticfiles/testing.py": "Django's live-server test case",
    # redis-py's clients for Redis modules (search, JSON, time series, Bloom, vector sets), its
    # multi-database and HTTP clients and OCSP stapling: Django's Redis cache uses none of them.
    "redis/commands/bf/*": "Redis module commands (the cache uses core commands)",
    "redis/commands/json/*": "Redis module commands (the cache uses core commands)",
    "redis/commands/search/*": "Redis module commands (the cache uses core commands)",
    "redis/commands/timeseries/*": "Redis module commands (the cache uses core commands)",
    "redis/commands/vectorset/*": "Redis module commands (the cache uses core commands)",
    "redis/multidb/*": "redis-py's multi-database client",
    "redis/http/*": "redis-py's HTTP client (multi-database health checks)",
    "redis/ocsp.py": "OCSP stapling for Redis over TLS (ssl_validate_ocsp, not used)",
    # Pillow's readers and writers of formats feed/images.py refuses (it opens JPEG, PNG, GIF and
    # WebP; MPO is how some phones' JPEGs open, TIFF is EXIF's container, BMP and PPM are loaded
    # with the core). Image.init() skips a plugin it cannot import.
    **{f"PIL/{name}ImagePlugin.py": "a picture format Herald does not accept" for name in (
        "Avif", "Blp", "BufrStub", "Cur", "Dcx", "Dds", "Eps", "Fits", "Fli", "Fpx", "Ftex", "Gbr", "GribStub",
        "Hdf5Stub", "Icns", "Ico", "Im", "Imt", "Iptc", "Jpeg2K", "McIdas", "Mic", "Mpeg", "Msp", "Palm", "Pcd",
        "Pcx", "Pdf", "Pixar", "Psd", "Qoi", "Sgi", "Spider", "Sun", "Tga", "Wmf", "XVThumb", "Xbm", "Xpm")},
    "PIL/_imagingtk*": "Tk support",
    "PIL/ImageTk.py": "Tk support",
    "PIL/ImageQt.py": "Qt support",
    # Collected static files no page of the package uses: the admin's autocomplete (select2) and
    # prepopulated-field (xregexp) widgets, which Herald's admin does not use, jQuery's unminified
    # copy (the admin loads it only with DEBUG on), and the font formats older than WOFF that DRF's
    # pages list after woff2/woff for old browsers.
    "staticfiles/admin/js/vendor/select2/*": "the admin's autocomplete widget (no autocomplete_fields)",
    "staticfiles/admin/js/vendor/xregexp/*": "the admin's prepopulated_fields widget (none)",
    "staticfiles/admin/js/vendor/jquery/jquery.????????????.js*": "unminified jQuery, for DEBUG only",
    "staticfiles/rest_framework/fonts/*.eot*": "pre-WOFF font format",
    "staticfiles/rest_framework/fonts/*.ttf*": "pre-WOFF font format",
    "staticfiles/rest_framework/fonts/*.svg*": "pre-WOFF font format",
    # Zappa's command line (deploy, update, certificates): it runs on the developer's machine; the
    # handler never imports it (and it needs troposphere and click, which are left out anyway).
    "zappa/cli.py": "Zappa's command line, run locally",
    "zappa/core.py": "Zappa's command line, run locally",
    "zappa/letsencrypt.py": "Zappa's command line, run locally",
    # boto3's resource definitions for services Herald has no models for (KEPT_AWS_SERVICES).
    **{f"boto3/data/{service}/*": "a resource API for a service without a model in the package"
       for service in ("cloudformation", "cloudwatch", "ec2", "glacier")},
    # The local IoT emulator (manage.py runlocaliot) is for development: it needs amqtt, which is
    # never installed on Lambda, and nothing else imports it.
    "notifier/localiot/*": "the local IoT emulator, development only",
    # mypyc-compiled copies of charset_normalizer's cd and md modules (requests' encoding guess,
    # rarely used): their bytecode is in the package too, and Python loads that instead.
    "charset_normalizer/*.so": "compiled duplicates of modules shipped as bytecode",
    "werkzeug/debug/shared/*": "the interactive debugger's page assets (never on in Zappa)",
    "packaging/licenses/*": "SPDX tables; django-csp uses packaging.version only",
    "botocore/data/*/examples-1.json": "API documentation examples",
    "botocore/cacert.pem": "botocore's fallback CA bundle: it uses certifi's when certifi is there (it is)",
    "docs/*": "the project's documentation and screenshots",
}
STRIP = shutil.which("strip")


def pyc_name(source: str) -> str:
    """a/b.py -> a/__pycache__/b.cpython-311.pyc (this interpreter's cache tag)."""
    head, tail = os.path.split(source)
    return os.path.join(head, "__pycache__", f"{tail[:-3]}.{sys.implementation.cache_tag}.pyc")


def keeps_source(name: str) -> bool:
    """Herald's own modules and the root's (handler.py, zappa_settings.py) keep their sources."""
    return name in ROOT_SOURCE_KEPT or name.split("/", 1)[0] in SOURCE_KEPT


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def layer_files(names: set[str], read) -> set[str]:
    """The zip names of LAYER_DISTRIBUTIONS' files: their RECORDs' rows and their dist-info folders."""
    files = set()
    for name in names:
        top, _, rest = name.partition("/")
        if rest == "RECORD" and top.endswith(".dist-info") and \
                normalise(top[: -len(".dist-info")].rsplit("-", 1)[0]) in LAYER_DISTRIBUTIONS:
            files |= {row.split(",")[0] for row in read(name).decode().splitlines() if row}
            files |= {n for n in names if n.startswith(top + "/")}
    # A module's bytecode goes with it (the stale .pyc are dropped anyway).
    return files | {n for n in names if n.endswith(".pyc") and re.sub(r"__pycache__/|\.cpython-\d+\.pyc$|\.pyc$", "",
                                                                      n) + ".py" in files}


def without_docstrings(tree: ast.Module) -> ast.Module:
    """The module with its docstrings removed, as `python -OO` does, but its asserts kept (-O
    would drop them, and some libraries check their callers with assert). A library's docstrings
    are a tenth of its bytecode; nothing Herald runs reads them (drf-spectacular documents the API
    from Herald's own docstrings, whose sources and bytecode are kept whole)."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                # Removed (a module's `from __future__` must stay first), or `pass` if it was all.
                node.body[:1] = [] if len(node.body) > 1 else [ast.copy_location(ast.Pass(), first)]
    return tree


def compile_one(item: tuple[str, bytes]) -> tuple[str, bytes | None, str | None]:
    """(zip name, source) -> (pyc zip name, pyc bytes or None, error). The .pyc goes to __pycache__
    beside a kept source, or to the legacy location (a/b.pyc) in place of a dropped one."""
    name, source = item
    try:
        tree = ast.parse(source, name)
        if not keeps_source(name):
            tree = without_docstrings(tree)
        code = compile(tree, name, "exec", dont_inherit=True, optimize=0)
    except (SyntaxError, ValueError) as exc:  # e.g. a template file named .py; Python would fail too
        return name, None, f"{type(exc).__name__}: {exc}"
    # PEP 552 layout: magic, flags (0b01 = hash-based, source not checked), source hash, code.
    data = importlib.util.MAGIC_NUMBER + (0b01).to_bytes(4, "little") + importlib.util.source_hash(source)
    return (pyc_name(name) if keeps_source(name) else name + "c"), data + marshal.dumps(code), None


def dropped_model(name: str) -> bool:
    if not name.startswith(BOTOCORE_DATA):
        return False
    rest = name[len(BOTOCORE_DATA):]
    return "/" in rest and rest.split("/", 1)[0] not in KEPT_AWS_SERVICES


def dropped_locale(name: str) -> bool:
    match = LOCALE.search(name)
    return bool(match) and match[2] not in KEPT_LOCALES


def dropped(name: str) -> str | None:
    """Why `name` is left out of the package, or None."""
    if dropped_model(name):
        return "model"
    if dropped_locale(name):
        return "locale"
    for pattern in DROPPED:
        if fnmatch.fnmatchcase(name, pattern):
            return "dropped"
    return None


def compressed_static_twins(names: set[str]) -> set[str]:
    """staticfiles/x.css when staticfiles/x.css.gz is there too: one copy is enough."""
    return {n[:-3] for n in names if n.startswith("staticfiles/") and n.endswith(".gz") and n[:-3] in names}


def trimmed_metadata(name: str, data: bytes) -> bytes:
    """A distribution's METADATA without its long description (the headers after it, the name and
    version that importlib.metadata reads, stay), and its RECORD with only the compiled extensions'
    rows (scripts/check_package.py checks each extension's wheel tag through them)."""
    if name.endswith("/METADATA"):
        head, _, _ = data.partition(b"\n\n")
        return head + b"\n"
    return b"".join(row + b"\n" for row in data.splitlines() if re.search(rb"\.so(\.|$)", row.split(b",")[0]))


def strip_binary(data: bytes) -> bytes:
    """An ELF shared object without its symbol table and debug sections (dynamic symbols stay);
    unchanged without binutils' strip or when stripping saves nothing."""
    if not STRIP or not data.startswith(b"\x7fELF"):
        return data
    with tempfile.TemporaryDirectory() as tmp:
        src, out = os.path.join(tmp, "in.so"), os.path.join(tmp, "out.so")
        with open(src, "wb") as fh:
            fh.write(data)
        done = subprocess.run([STRIP, "--strip-unneeded", "-o", out, src], capture_output=True)
        if done.returncode != 0:
            return data
        with open(out, "rb") as fh:
            stripped = fh.read()
    return stripped if len(stripped) < len(data) else data


def finish(path: str, *, jobs: int | None = None, layer: bool = False) -> dict[str, int]:
    """Rewrite the zip at `path` finished. The function's zip (layer=False) loses the layer's
    distributions; a layer's zip (layer=True: its files under LAYER_ROOT) is finished the same way
    otherwise, its names matched without the LAYER_ROOT prefix."""
    if sys.version_info[:2] != RUNTIME:
        raise SystemExit(f"finish_package: run me with Python {RUNTIME[0]}.{RUNTIME[1]} (the Lambda runtime), "
                         f"not {sys.version.split()[0]}: bytecode is version-specific")
    counts = {"compiled": 0, "sourceless": 0, "stale_pyc_dropped": 0, "models_dropped": 0, "locales_dropped": 0,
              "files_dropped": 0, "static_twins_dropped": 0, "stripped": 0, "not_compiled": 0, "layer_files": 0}
    with zipfile.ZipFile(path) as src:
        entries = [(info, src.read(info)) for info in src.infolist()]
    names = {info.filename for info, _ in entries}
    twins = compressed_static_twins(names)
    in_layer = set() if layer else layer_files(names, dict((i.filename, d) for i, d in entries).__getitem__)
    kept, sources = [], []
    for info, data in entries:
        name = info.filename
        if name in in_layer:
            counts["layer_files"] += 1
            continue
        if name.endswith(".pyc"):
            counts["stale_pyc_dropped"] += 1
            continue
        why = dropped(name.removeprefix(LAYER_ROOT) if layer else name)
        if why:
            counts[{"model": "models_dropped", "locale": "locales_dropped"}.get(why, "files_dropped")] += 1
            continue
        if name in twins:
            counts["static_twins_dropped"] += 1
            continue
        if name.endswith(".py"):
            sources.append((name, data))
            if not keeps_source(name):
                continue  # replaced by its sourceless .pyc (or kept below if it does not compile)
        elif name.endswith((".dist-info/RECORD", ".dist-info/METADATA")):
            data = trimmed_metadata(name, data)
        elif re.search(r"\.so(\.|$)", name):
            stripped = strip_binary(data)
            counts["stripped"] += stripped is not data
            data = stripped
        kept.append((info, data))
    if jobs == 1 or len(sources) < 200:
        compiled = [compile_one(item) for item in sources]
    else:
        with ProcessPoolExecutor(max_workers=jobs or os.cpu_count()) as pool:
            compiled = list(pool.map(compile_one, sources, chunksize=64))
    uncompiled = {name for name, data, _ in compiled if data is None}
    kept += [(info, data) for info, data in entries if info.filename in uncompiled and not keeps_source(info.filename)]
    fd, tmp = tempfile.mkstemp(suffix=".zip", dir=os.path.dirname(os.path.abspath(path)))
    os.close(fd)
    try:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as out:
            for info, data in kept:
                info.compress_type = zipfile.ZIP_DEFLATED
                out.writestr(info, data, zipfile.ZIP_DEFLATED, 9)
            for name, data, error in compiled:
                if data is None:
                    counts["not_compiled"] += 1
                    print(f"finish_package: left uncompiled: {name} ({error})", file=sys.stderr)
                    continue
                info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
                info.create_system = 3
                info.external_attr = 0o644 << 16
                out.writestr(info, data, zipfile.ZIP_DEFLATED, 9)
                counts["compiled"] += 1
                counts["sourceless"] += not name.endswith(f".{sys.implementation.cache_tag}.pyc")
        os.chmod(tmp, 0o644)
        shutil.move(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return counts


def summary(counts: dict[str, int]) -> str:
    return (f"{counts['compiled']} modules compiled ({counts['sourceless']} without their sources), "
            f"{counts['stale_pyc_dropped']} stale .pyc, {counts['models_dropped']} unused AWS model files, "
            f"{counts['locales_dropped']} translation files, {counts['files_dropped']} unused files and "
            f"{counts['static_twins_dropped']} uncompressed static twins dropped, {counts['stripped']} binaries stripped"
            + (f", {counts['layer_files']} files left to the layer" if counts.get("layer_files") else ""))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("zip", help="the zip `zappa package` wrote; rewritten in place")
    parser.add_argument("--jobs", type=int, default=None, help="compiler processes [CPU count]")
    args = parser.parse_args(argv)
    counts = finish(args.zip, jobs=args.jobs)
    print(f"finish_package: {summary(counts)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
