"""Cold start: a fresh process imports the WSGI app and serves its first requests.

What a Lambda cold start costs beyond the runtime's own start: importing Herald's WSGI app
(settings, Django set-up, middleware) and serving the first page and the first API call, each
run in a new interpreter so nothing is warm but the operating system's file cache.

- source (always): `python -c` in this checkout, with this interpreter (the development venv),
  its bytecode caches as a developer has them. Requests go straight to the WSGI callable with a
  minimal environ: GET /accounts/login/ (the login page, a template render) and
  GET /api/notifications/unread-count/ (DRF, anonymous: 401).
- package (with --package ZIP, e.g. dist/herald-dev.zip from `make package`): the zip unpacked
  and run as on Lambda by scripts/lambda_smoke.py --cold-only: Zappa's handler, an isolated
  interpreter that sees only the package and the standard library, no bytecode written (Lambda's
  code directory is read-only; the package's own unchecked-hash bytecode is all it loads), one
  API Gateway request for the login page. The Lambda layer the package needs (its sibling
  NAME-layer.zip from `make package`, or --layer) is unpacked beside it and put on sys.path after
  the package, where Lambda puts /opt/python. Also reported: the process's CPU time at that point
  (steadier than wall time on a shared machine), which of the libraries only some requests need
  the first request imported (none, or the package check fails), what importing each of those
  costs when its first request comes, and what the libraries Web Push and email brought cost in
  the zip.

    python bench/cold_start.py [--runs 10] [--package dist/herald-dev.zip [--layer LAYER.zip]
                               [--baseline OLD.zip] [--no-source]]
                               [--python python3.11]

Prints median and max and writes bench/results/cold_start.json. Targets: <= 1.5 s to the first
response from source (max), <= 0.6 s from the package (median).
"""
import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_S = 1.5
PACKAGE_TARGET_S = 0.6  # median, from the package
# What Web Push and email brought (requirements.txt): top-level names in the zip.
NEW_LIBRARIES = {"cryptography": ("cryptography", "cryptography-"), "cffi": ("_cffi_backend.", "cffi-"),
                 "http_ece": ("http_ece", "http_ece-"), "py_vapid": ("py_vapid", "py_vapid-"),
                 "django_ses": ("django_ses", "django_ses-")}

CHILD = r"""
import io, json, sys, time
t0 = time.perf_counter()
import config.wsgi
t1 = time.perf_counter()

def get(path):
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": "", "SCRIPT_NAME": "",
               "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8000", "SERVER_PROTOCOL": "HTTP/1.1",
               "HTTP_HOST": "127.0.0.1", "REMOTE_ADDR": "127.0.0.1", "wsgi.version": (1, 0),
               "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(b""), "wsgi.errors": sys.stderr,
               "wsgi.multithread": False, "wsgi.multiprocess": True, "wsgi.run_once": False}
    seen = {}
    body = b"".join(config.wsgi.application(environ, lambda status, headers: seen.setdefault("s", status)))
    return int(seen["s"].split()[0]), len(body)

page = get("/accounts/login/")
t2 = time.perf_counter()
api = get("/api/notifications/unread-count/")
t3 = time.perf_counter()
print("COLD " + json.dumps({"import_s": t1 - t0, "page_s": t2 - t1, "api_s": t3 - t2, "first_response_s": t2 - t0,
                            "both_s": t3 - t0, "page": page, "api": api}))
"""


def summary(values: list[float]) -> dict:
    return {"median": round(statistics.median(values), 3), "max": round(max(values), 3),
            "min": round(min(values), 3)}


def run_source(runs: int, python: str) -> dict:
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        env = {"SECRET_KEY": secrets.token_urlsafe(40), **os.environ, "DATABASE_URL": f"sqlite:///{tmp}/cold.sqlite3",
               "DJANGO_SETTINGS_MODULE": "config.settings", "LOG_LEVEL": "ERROR"}
        env.pop("DEBUG", None)
        for _ in range(runs):
            started = time.perf_counter()
            done = subprocess.run([python, "-c", CHILD], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
            wall = time.perf_counter() - started
            line = next((l for l in done.stdout.splitlines() if l.startswith("COLD ")), None)
            if line is None:
                raise SystemExit(f"cold start run failed:\n{done.stderr[-3000:]}")
            result = json.loads(line[5:])
            if result["page"][0] != 200 or result["api"][0] != 401:
                raise SystemExit(f"unexpected responses: page {result['page']}, api {result['api']}")
            result["process_wall_s"] = wall
            results.append(result)
    return {key: summary([r[key] for r in results])
            for key in ("import_s", "page_s", "api_s", "first_response_s", "both_s", "process_wall_s")}


def run_packages(runs: int, package_zips: list[tuple[str, str | None]], python: str) -> list[dict]:
    """Each (zip, layer)'s cold start, `runs` times, the zips taking turns (A B A B ...): on a shared
    machine the load moves from minute to minute, and interleaving gives every zip the same share."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import check_package

    results = [[] for _ in package_zips]
    with tempfile.TemporaryDirectory() as tmp:
        tasks = []
        for index, (package_zip, layer) in enumerate(package_zips):
            tasks.append(check_package.unpack(package_zip, layer, os.path.join(tmp, str(index))))
        for run in range(runs):
            for index, (task, opt) in enumerate(tasks):
                started = time.perf_counter()
                result = check_package.run_smoke(python, task, os.path.join(tmp, f"db{index}-{run}.sqlite3"),
                                                 "--cold-only", "--import-cost", *(["--layer", opt] if opt else []))
                if "error" in result:
                    raise SystemExit(result["error"])
                if result["login_status"] != 200:
                    raise SystemExit(f"login page: HTTP {result['login_status']}")
                result["process_wall_s"] = time.perf_counter() - started
                results[index].append(result)
    return [package_summary(package_zip, layer, rows) for (package_zip, layer), rows in zip(package_zips, results)]


def package_summary(package_zip: str, layer: str | None, results: list[dict]) -> dict:
    return {"zip": package_zip, "zip_mib": round(os.path.getsize(package_zip) / 2**20, 1),
            "zip_bytes": os.path.getsize(package_zip), "layer": layer,
            "layer_bytes": os.path.getsize(layer) if layer else 0,
            **{key: summary([r[key] for r in results])
               for key in ("import_s", "cold_start_s", "cold_start_cpu_s", "process_wall_s")},
            "cold_start_modules": summary([r["cold_start_modules"] for r in results]),
            "cold_start_imported": sorted({m for r in results for m in r["cold_start_imported"]}),
            "compiled_from_source": sorted({m for r in results for m in r["compiled_from_source"]}),
            "first_use_import_ms": {name: statistics.median(r["import_cost_ms"][name] for r in results)
                                    for name in results[0]["import_cost_ms"]},
            "new_libraries_zipped_mib": new_libraries_size(package_zip),
            "new_libraries_in_layer_mib": new_libraries_size(layer, "python/") if layer else None}


def new_libraries_size(package_zip: str, root: str = "") -> dict:
    """MiB (compressed) of each library Web Push and email brought, with its metadata."""
    with zipfile.ZipFile(package_zip) as zf:
        infos = [i for i in zf.infolist() if i.filename.startswith(root)]
    sizes = {name: round(sum(i.compress_size for i in infos
                             if i.filename[len(root):].split("/")[0].startswith(prefixes)) / 2**20, 2)
             for name, prefixes in NEW_LIBRARIES.items()}
    return {**sizes, "total": round(sum(sizes.values()), 2)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--package", help="also measure this Lambda zip (make package)")
    parser.add_argument("--python", default=sys.executable, help="interpreter [this one]")
    parser.add_argument("--no-source", action="store_true", help="measure the package only")
    parser.add_argument("--layer", help="the package's Lambda layer [its sibling NAME-layer.zip, if any]")
    parser.add_argument("--baseline", help="another package zip (e.g. an earlier build) measured taking turns with "
                                           "--package (with its own sibling layer, if any)")
    args = parser.parse_args(argv)

    report = {"runs": args.runs, "python": subprocess.run([args.python, "-V"], capture_output=True, text=True).stdout.strip(),
              "cpus": os.cpu_count(), "target_s": TARGET_S}
    s = report["source"] = None if args.no_source else run_source(args.runs, args.python)
    if s:
        print(f"source  ({args.runs} fresh processes): import config.wsgi {s['import_s']['median']} s, "
              f"+ login page {s['page_s']['median']} s = first response {s['first_response_s']['median']} s median, "
              f"{s['first_response_s']['max']} s max; + API GET {s['api_s']['median']} s")
    if args.package:
        sys.path.insert(0, str(ROOT / "scripts"))
        from check_package import layer_path

        zips = [(args.package, args.layer or layer_path(args.package)),
                *([(args.baseline, layer_path(args.baseline))] if args.baseline else [])]
        measured = run_packages(args.runs, zips, args.python)
        report["package"] = measured[0]
        if args.baseline:
            report["baseline"] = b = measured[1]
            print(f"baseline ({b['zip']}, {b['zip_mib']} MiB, taking turns with the package): first response "
                  f"{b['cold_start_s']['median']} s median, {b['cold_start_s']['max']} s max "
                  f"(CPU {b['cold_start_cpu_s']['median']} s median; {b['cold_start_modules']['median']:.0f} modules)")
        p = report["package"]
        print(f"package ({p['zip']}, {p['zip_bytes']:,} bytes = {p['zip_mib']} MiB"
              + (f", layer {p['layer']} {p['layer_bytes']:,} bytes on sys.path" if p["layer"] else "")
              + "; Zappa handler, isolated, no bytecode writes): "
              f"first response {p['cold_start_s']['median']} s median, {p['cold_start_s']['max']} s max "
              f"(import handler {p['import_s']['median']} s; CPU {p['cold_start_cpu_s']['median']} s median, "
              f"{p['cold_start_cpu_s']['max']} s max; {p['cold_start_modules']['median']:.0f} modules)")
        print(f"  imported by the first request, of the libraries only some requests need: "
              f"{p['cold_start_imported'] or 'none'}")
        print(f"  modules compiled at start-up for want of bytecode: {p['compiled_from_source'] or 'none'}")
        print(f"  importing them when their first request comes (ms, median): {p['first_use_import_ms']}")
        print(f"  Web Push and email libraries in the zip (MiB): {p['new_libraries_zipped_mib']}")
        if p["layer"]:
            print(f"  ... and in the layer (MiB): {p['new_libraries_in_layer_mib']}")
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    report["load_average"] = os.getloadavg()
    (out / "cold_start.json").write_text(json.dumps(report, indent=2) + "\n")
    ok = True
    if s:
        ok = s["first_response_s"]["max"] <= TARGET_S
        print(f"{'OK' if ok else 'OVER TARGET'}: max first response {s['first_response_s']['max']} s (target {TARGET_S} s)")
    if args.package:
        package_ok = p["cold_start_s"]["median"] <= PACKAGE_TARGET_S and not p["cold_start_imported"]
        print(f"{'OK' if package_ok else 'OVER TARGET'}: package first response {p['cold_start_s']['median']} s median "
              f"(target {PACKAGE_TARGET_S} s; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
        ok = ok and package_ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
