"""Build the Lambda layer of the libraries the cold start never needs (finish_package.LAYER_DISTRIBUTIONS).

    .venv-lambda/bin/python scripts/build_layer.py dist/herald-dev-layer.zip [--stage dev]

Run by `make package` (and `make deploy-check`) with the packaging environment's Python, whose
site-packages are what `zappa package` zips: the layer takes those distributions' installed files
(their RECORD), leaves out what the stage's "exclude_glob" leaves out of the function (Pillow's
AVIF, fonts and colour management), puts them under python/ (Lambda adds /opt/python to sys.path)
and finishes them as the function's zip is finished: bytecode only, stripped binaries, Pillow's
unused plugins dropped (finish_package.finish(..., layer=True)).

Why a layer: cryptography (with cffi's backend), http_ece and py_vapid send Web Push, Pillow
converts pictures; that is 6 MiB of the zip's 20, nearly all compiled code, which no cold start
imports (scripts/lambda_smoke.py checks it) and which changes only when requirements.txt does.
Out of the function's zip, they are uploaded once per version (scripts/publish_layer.py) rather
than with every deployment of Herald's code.
"""
import argparse
import fnmatch
import importlib.metadata
import json
import os
import sys
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import finish_package  # noqa: E402


def stage_globs(stage: str) -> list[str]:
    """The stage's exclude_glob (with "extends" applied): what Zappa leaves out of the function."""
    with open(os.path.join(ROOT, "zappa_settings.json"), encoding="utf-8") as fh:
        settings = json.load(fh)
    config = settings[stage]
    while "exclude_glob" not in config and "extends" in config:
        config = settings[config["extends"]]
    return config.get("exclude_glob", [])


def layer_sources(globs: list[str]) -> dict[str, str]:
    """{name in site-packages: absolute path} of every installed file of LAYER_DISTRIBUTIONS."""
    found = {}
    for dist in importlib.metadata.distributions():
        if finish_package.normalise(dist.metadata["Name"]) not in finish_package.LAYER_DISTRIBUTIONS:
            continue
        for file in dist.files or ():
            name = file.as_posix()
            path = os.path.realpath(dist.locate_file(file))
            if name.startswith("..") or "__pycache__/" in name or not os.path.isfile(path):
                continue  # scripts installed in bin/, and the virtualenv's own timestamped bytecode
            if any(fnmatch.fnmatch(name, pattern) or fnmatch.fnmatch(name.split("/")[0], pattern) for pattern in globs):
                continue
            found[name] = path
    missing = finish_package.LAYER_DISTRIBUTIONS - {finish_package.normalise(d.metadata["Name"])
                                                     for d in importlib.metadata.distributions()}
    if missing:
        raise SystemExit(f"build_layer: not installed in {sys.prefix}: {sorted(missing)}")
    return found


def build(path: str, stage: str = "dev", *, jobs: int | None = None) -> dict[str, int]:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    sources = layer_sources(stage_globs(stage))
    tmp = path + ".tmp"
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as out:
        for name in sorted(sources):
            info = zipfile.ZipInfo(finish_package.LAYER_ROOT + name, date_time=(1980, 1, 1, 0, 0, 0))
            info.create_system = 3
            info.external_attr = (0o755 if os.access(sources[name], os.X_OK) else 0o644) << 16
            with open(sources[name], "rb") as fh:
                out.writestr(info, fh.read())
    os.replace(tmp, path)
    return finish_package.finish(path, jobs=jobs, layer=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("zip", help="the layer zip to write, e.g. dist/herald-dev-layer.zip")
    parser.add_argument("--stage", default="dev", help="zappa_settings.json stage whose exclude_glob applies")
    parser.add_argument("--jobs", type=int, default=None)
    args = parser.parse_args(argv)
    counts = build(args.zip, args.stage, jobs=args.jobs)
    print(f"build_layer: {args.zip} ({os.path.getsize(args.zip) / 2**20:.1f} MiB): {finish_package.summary(counts)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
