"""Finish the zip that `zappa package` built, in place: valid bytecode, and only the AWS API models used.

    python scripts/finish_package.py build/herald-dev.zip

Run by `make package` with the packaging environment's Python, which must be the Lambda runtime's
version (python3.11): bytecode is version-specific.

1. Bytecode that Lambda can use. Lambda's code directory is read-only, so Python cannot cache what
   it compiles there: a module without a valid .pyc is compiled again on every cold start (about
   2.5 s of a 3.6 s cold start for Herald on this machine). The .pyc files zappa copies from the
   virtualenv are timestamp-checked, and zappa stores every file in the zip with the date
   1980-01-01, so none of them matches its source once unpacked. This replaces them with .pyc files
   compiled from the zipped sources with the "unchecked-hash" invalidation mode (PEP 552): Python
   loads them without looking at the source's date or contents, which is right for code that
   cannot change after deployment.
2. AWS API models. botocore ships the models of 400+ AWS services (15 MB compressed, half the zip);
   Herald and Zappa's runtime call a handful. boto3 and botocore stay pinned in the package (the
   versions the tests ran against, not whatever the Lambda runtime bundles this month), with only
   these models: KEPT_AWS_SERVICES. A client for another service fails with UnknownServiceError,
   so a new service Herald calls must be added here (tests/test_packaging.py checks the source).
"""
import argparse
import importlib.util
import marshal
import os
import shutil
import sys
import tempfile
import zipfile
from concurrent.futures import ProcessPoolExecutor

# iot, iot-data, sts: Herald's publisher and credential issuer. iam: `manage.py iot_setup`.
# s3: Zappa's remote_env (the secrets file), read at cold start. lambda, sns, sqs, dynamodb:
# Zappa's asynchronous tasks and their response table. events, logs: scheduling and logging
# from management commands (`zappa manage`).
KEPT_AWS_SERVICES = frozenset(
    {"iot", "iot-data", "sts", "iam", "s3", "lambda", "sns", "sqs", "dynamodb", "events", "logs"}
)
RUNTIME = (3, 11)
BOTOCORE_DATA = "botocore/data/"


def pyc_name(source: str) -> str:
    """a/b.py -> a/__pycache__/b.cpython-311.pyc (this interpreter's cache tag)."""
    head, tail = os.path.split(source)
    return os.path.join(head, "__pycache__", f"{tail[:-3]}.{sys.implementation.cache_tag}.pyc")


def compile_one(item: tuple[str, bytes]) -> tuple[str, bytes | None, str | None]:
    """(zip name, source) -> (pyc zip name, pyc bytes or None, error)."""
    name, source = item
    try:
        code = compile(source, name, "exec", dont_inherit=True, optimize=0)
    except (SyntaxError, ValueError) as exc:  # e.g. a template file named .py; Python would fail too
        return name, None, f"{type(exc).__name__}: {exc}"
    # PEP 552 layout: magic, flags (0b01 = hash-based, source not checked), source hash, code.
    data = importlib.util.MAGIC_NUMBER + (0b01).to_bytes(4, "little") + importlib.util.source_hash(source)
    return pyc_name(name), data + marshal.dumps(code), None


def dropped_model(name: str) -> bool:
    if not name.startswith(BOTOCORE_DATA):
        return False
    rest = name[len(BOTOCORE_DATA):]
    return "/" in rest and rest.split("/", 1)[0] not in KEPT_AWS_SERVICES


def finish(path: str, *, jobs: int | None = None) -> dict[str, int]:
    if sys.version_info[:2] != RUNTIME:
        raise SystemExit(f"finish_package: run me with Python {RUNTIME[0]}.{RUNTIME[1]} (the Lambda runtime), "
                         f"not {sys.version.split()[0]}: bytecode is version-specific")
    counts = {"compiled": 0, "stale_pyc_dropped": 0, "models_dropped": 0, "not_compiled": 0}
    with zipfile.ZipFile(path) as src:
        entries = [(info, src.read(info)) for info in src.infolist()]
    kept, sources = [], []
    for info, data in entries:
        name = info.filename
        if name.endswith(".pyc"):
            counts["stale_pyc_dropped"] += 1
            continue
        if dropped_model(name):
            counts["models_dropped"] += 1
            continue
        kept.append((info, data))
        if name.endswith(".py"):
            sources.append((name, data))
    if jobs == 1 or len(sources) < 200:
        compiled = [compile_one(item) for item in sources]
    else:
        with ProcessPoolExecutor(max_workers=jobs or os.cpu_count()) as pool:
            compiled = list(pool.map(compile_one, sources, chunksize=64))
    fd, tmp = tempfile.mkstemp(suffix=".zip", dir=os.path.dirname(os.path.abspath(path)))
    os.close(fd)
    try:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as out:
            for info, data in kept:
                out.writestr(info, data)
            for name, data, error in compiled:
                if data is None:
                    counts["not_compiled"] += 1
                    print(f"finish_package: left uncompiled: {name} ({error})", file=sys.stderr)
                    continue
                info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
                info.create_system = 3
                info.external_attr = 0o644 << 16
                out.writestr(info, data, zipfile.ZIP_DEFLATED)
                counts["compiled"] += 1
        os.chmod(tmp, 0o644)
        shutil.move(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return counts


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("zip", help="the zip `zappa package` wrote; rewritten in place")
    parser.add_argument("--jobs", type=int, default=None, help="compiler processes [CPU count]")
    args = parser.parse_args(argv)
    counts = finish(args.zip, jobs=args.jobs)
    print(f"finish_package: {counts['compiled']} modules compiled (unchecked-hash .pyc), "
          f"{counts['stale_pyc_dropped']} stale .pyc and {counts['models_dropped']} unused AWS model files dropped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
