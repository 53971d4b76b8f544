"""Zappa build hooks (zappa_settings.json), so that every `zappa package|deploy|update` builds the
same package as `make package`:

- "prebuild_script": "scripts.zappa_hooks.collect_static" - collectstatic with the manifest storage
  (hashed, compressed names; MQTT.js from node_modules) into staticfiles/, which goes into the zip;
- "callbacks": {"zip": "scripts.zappa_hooks.finish_zip"} - scripts/finish_package.py on the zip
  Zappa just wrote: bytecode Lambda can use; unused AWS API models, translations, build-only
  libraries and duplicate static files dropped; binaries stripped.

Both run inside the zappa command, with the packaging virtualenv's Python (.venv-lambda).
"""
import os
import secrets
import subprocess
import sys

SCRIPTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(SCRIPTS)
MQTT_DIST = os.path.join(ROOT, "node_modules", "mqtt", "dist")


def collect_static() -> None:
    # Zappa zips the site-packages of $VIRTUAL_ENV: it must be the packaging environment zappa runs
    # in, not an activated development venv (moto, pytest, playwright... would go into the zip).
    venv = os.environ.get("VIRTUAL_ENV")
    if not venv or os.path.realpath(venv) != os.path.realpath(sys.prefix):
        raise SystemExit(f"VIRTUAL_ENV is {venv!r}, but zappa runs in {sys.prefix}: Zappa would package the "
                         "wrong environment. Use `make package`, or set VIRTUAL_ENV to zappa's own venv.")
    if not os.path.isdir(MQTT_DIST):
        raise SystemExit("MQTT.js is not installed (node_modules/mqtt/dist): run `make npm` (npm ci) first; "
                         "the browser client needs it in the package")
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--no-input", "--clear", "-v", "0"],
        # collectstatic signs nothing: a throwaway key satisfies settings' refusal of a missing one.
        cwd=ROOT, env={"SECRET_KEY": secrets.token_urlsafe(40), **os.environ, "STATIC_MANIFEST": "1"}, check=True,
    )
    print("collectstatic: staticfiles/ collected with hashed, compressed names")


def finish_zip(cli) -> None:
    if SCRIPTS not in sys.path:
        sys.path.insert(0, SCRIPTS)
    import finish_package  # importable by name: its compiler processes need that
    for path in {cli.zip_path, getattr(cli, "handler_path", None)} - {None}:
        if str(path).endswith(".zip"):
            counts = finish_package.finish(str(path))
            print(f"finish_package: {os.path.basename(str(path))}: {finish_package.summary(counts)}")
