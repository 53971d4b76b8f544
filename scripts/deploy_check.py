"""Rehearse a deployment without an AWS account: zappa deploy -> status -> undeploy against moto.

    python scripts/deploy_check.py --stage dev --zappa-venv .venv-lambda --layer dist/herald-dev-layer.zip

Run by `make deploy-check` with the development environment's Python (it needs moto's server and
boto3). Steps, each fatal on failure:

1. start moto's server on a free loopback port, and make the stage's deployment bucket with
   versioning on (so the package Zappa uploads, and deletes once the function is created, can
   still be read back in step 6);
2. publish the libraries layer (scripts/build_layer.py's zip) with scripts/publish_layer.py and
   write a copy of zappa_settings.json whose stage differs in two things: "layers" names the
   version just published, and "touch": false (moto stores the function but cannot run it, so
   nothing could answer Zappa's test request);
3. `zappa deploy STAGE`, which builds the package as `make package` does (the zappa_settings.json
   hooks) and creates everything, with botocore sent to moto by AWS_ENDPOINT_URL (honoured for
   every service by botocore >= 1.31) and fake keys. (Not `deploy --zip`: Zappa 0.63 skips
   creating the execution role when given a zip);
4. `zappa status STAGE`;
5. check through boto3 against moto that the function (runtime, handler, memory, timeout,
   code size, its layer: that version, with the built zip's SHA-256), its execution role and
   permissions, the API Gateway REST API and the scheduled events (deliver_pending every
   minute, keep-warm) exist as zappa_settings.json describes;
6. read back the function's code (the uploaded package whose SHA-256 the function has) and the
   layer's, unpack them as Lambda does (/var/task, /opt) and run scripts/check_package.py's smoke
   run on them: pages, API, migrate, pictures and a Web Push encrypted and signed, the last two
   with the libraries only the layer holds;
7. `zappa undeploy STAGE --yes` and check the function, the API's stack and the rules are gone.

Nothing leaves this machine: moto listens on 127.0.0.1 and every AWS call goes there.
"""
import argparse
import base64
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REGION = "us-east-1"
MAX_CODE_BYTES = 15_000_000  # scripts/check_package.py's budget (MAX_ZIPPED_BYTES)
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import check_package  # noqa: E402
import publish_layer  # noqa: E402


class CheckFailed(Exception):
    pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_moto(port: int, log) -> subprocess.Popen:
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise CheckFailed(f"moto server exited with {server.returncode}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/moto-api/", timeout=1).close()
            return server
        except OSError:
            time.sleep(0.2)
    server.kill()
    raise CheckFailed("moto server did not start within 30 s")


def resolved_stage(settings: dict, stage: str) -> dict:
    """A stage's settings with "extends" applied, as Zappa does (a shallow merge)."""
    config = dict(settings[stage])
    parent = config.pop("extends", None)
    return {**resolved_stage(settings, parent), **config} if parent else config


def aws_environment(endpoint: str, venv: str) -> dict:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "BOTO"))}
    env.update({
        "AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION,
        "AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "VIRTUAL_ENV": venv, "PATH": os.path.join(venv, "bin") + os.pathsep + env.get("PATH", ""),
    })
    return env


def zappa(venv: str, env: dict, *args: str, timeout: float = 600) -> str:
    command = [os.path.join(venv, "bin", "zappa"), *args]
    print(f"$ zappa {' '.join(args)}", flush=True)
    started = time.monotonic()
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    output = "\n".join(line for line in (done.stdout + done.stderr).splitlines()
                       if line.strip() and "is ignored: it is neither a file nor a directory" not in line)
    print("  " + output.replace("\n", "\n  "), flush=True)
    print(f"  ({time.monotonic() - started:.1f} s, exit {done.returncode})", flush=True)
    if done.returncode != 0:
        raise CheckFailed(f"zappa {args[0]} exited with {done.returncode}")
    return output


def sha256(data: bytes) -> str:
    """As Lambda reports CodeSha256: base64 of the digest."""
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def make_versioned_bucket(bucket: str) -> None:
    import boto3

    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})


def verify_layer(function: dict, layer_arn: str, layer_zip: str) -> str:
    """The function is configured with the published layer version, which holds the built zip."""
    import boto3

    attached = [layer["Arn"] for layer in function.get("Layers", [])]
    if layer_arn not in attached:
        raise CheckFailed(f"function {function['FunctionName']} has layers {attached}, not {layer_arn}")
    name, number = layer_arn.split(":")[-2:]
    version = boto3.client("lambda", region_name=REGION).get_layer_version(LayerName=name, VersionNumber=int(number))
    with open(layer_zip, "rb") as fh:
        expected = sha256(fh.read())
    if version["Content"]["CodeSha256"] != expected:
        raise CheckFailed(f"layer {layer_arn} holds {version['Content']['CodeSha256']}, not the built {expected}")
    return f"layer {layer_arn}: {version['Content']['CodeSize']:,} bytes, the built zip's SHA-256"


def smoke_deployed(function: dict, bucket: str, layer_key: str, python: str, tmp: str) -> str:
    """Read back the deployed function's package and its layer and run them as Lambda would."""
    import boto3

    s3 = boto3.client("s3", region_name=REGION)
    versions = s3.list_object_versions(Bucket=bucket).get("Versions", [])
    function_zip = os.path.join(tmp, "function.zip")
    for candidate in versions:
        if candidate["Key"] == layer_key or not candidate["Key"].endswith(".zip"):
            continue
        data = s3.get_object(Bucket=bucket, Key=candidate["Key"], VersionId=candidate["VersionId"])["Body"].read()
        if sha256(data) == function["CodeSha256"]:
            with open(function_zip, "wb") as fh:
                fh.write(data)
            break
    else:
        raise CheckFailed(f"no package in s3://{bucket} has the function's SHA-256 {function['CodeSha256']}")
    layer_zip = os.path.join(tmp, "layer.zip")
    with open(layer_zip, "wb") as fh:
        fh.write(s3.get_object(Bucket=bucket, Key=layer_key)["Body"].read())
    result, problems = check_package.smoke(function_zip, python, layer_zip)
    if problems:
        raise CheckFailed("the deployed function with its layer: " + "; ".join(problems))
    needed = {"PIL", "cryptography", "http_ece", "py_vapid"}
    if not needed <= set(result.get("from_layer", [])):
        raise CheckFailed(f"imported from the layer: {result.get('from_layer')}, expected {sorted(needed)}")
    return (f"deployed package ({os.path.getsize(function_zip):,} bytes) with its layer: cold start "
            f"{result['cold_start_s']} s, pages, API, migrate, pictures and Web Push OK; "
            f"from the layer: {', '.join(result['from_layer'])}")


def verify_deployed(config: dict, name: str, stage: str) -> list[str]:
    """What zappa deploy should have created, read back from moto; returns the checks made."""
    import boto3

    session = boto3.Session(region_name=REGION)
    checks = []

    function = session.client("lambda").get_function(FunctionName=name)["Configuration"]
    expected = {"Runtime": config["runtime"], "Handler": "handler.lambda_handler",
                "MemorySize": config["memory_size"], "Timeout": config["timeout_seconds"]}
    actual = {key: function.get(key) for key in expected}
    if actual != expected:
        raise CheckFailed(f"function {name}: {actual}, expected {expected}")
    if function["CodeSize"] > MAX_CODE_BYTES:
        raise CheckFailed(f"deployed package is {function['CodeSize']:,} bytes, over {MAX_CODE_BYTES:,}")
    checks.append(f"function {name}: {function['Runtime']}, {function['MemorySize']} MB, "
                  f"{function['Timeout']} s, {function['CodeSize']:,} bytes")

    role_name = function["Role"].rsplit("/", 1)[-1]
    policy = session.client("iam").get_role_policy(RoleName=role_name, PolicyName="zappa-permissions")
    document = policy["PolicyDocument"]
    statements = json.loads(document) if isinstance(document, str) else document
    sids = {s.get("Sid") for s in statements["Statement"]}
    wanted = {p["Sid"] for p in config["extra_permissions"]}
    if not wanted <= sids:
        raise CheckFailed(f"role {role_name} lacks {sorted(wanted - sids)}")
    checks.append(f"role {role_name}: {', '.join(sorted(wanted))}")

    apis = [api for api in session.client("apigateway").get_rest_apis()["items"] if api["name"] == name]
    if len(apis) != 1:
        raise CheckFailed(f"expected one API Gateway REST API named {name}, found {len(apis)}")
    stages = [s["stageName"] for s in session.client("apigateway").get_stages(restApiId=apis[0]["id"])["item"]]
    if stage not in stages:
        raise CheckFailed(f"API {apis[0]['id']} has stages {stages}, not {stage}")
    checks.append(f"API Gateway {apis[0]['id']}: stage {stage}")

    events = session.client("events")
    rules = {rule["Name"]: rule for rule in events.list_rules(NamePrefix=name)["Rules"]}
    for event in config.get("events", []):
        matching = [r for r in rules.values() if r["Name"].endswith(event["function"])]
        if not matching or matching[0].get("ScheduleExpression") != event["expression"]:
            raise CheckFailed(f"no rule running {event['function']} on {event['expression']}: {sorted(rules)}")
        targets = events.list_targets_by_rule(Rule=matching[0]["Name"])["Targets"]
        if not any(t["Arn"] == function["FunctionArn"] for t in targets):
            raise CheckFailed(f"rule {matching[0]['Name']} does not target {function['FunctionArn']}")
        checks.append(f"rule {matching[0]['Name']}: {event['expression']} -> {name}")
    if config.get("keep_warm", True):
        if not any("keep-warm" in rule for rule in rules):
            raise CheckFailed(f"no keep-warm rule: {sorted(rules)}")
        checks.append("keep-warm rule")

    # EventBridge may invoke the function for each rule. (Zappa logs "Problem creating permission"
    # against moto, which answers AddPermission with 200 where AWS answers 201; the grant is made.)
    policy = json.loads(session.client("lambda").get_policy(FunctionName=name)["Policy"])
    allowed = {json.dumps(st.get("Condition", {})) for st in policy["Statement"]
               if st.get("Principal", {}).get("Service") == "events.amazonaws.com"}
    for rule in rules.values():
        if not any(rule["Arn"] in condition for condition in allowed):
            raise CheckFailed(f"EventBridge may not invoke {name} for {rule['Name']}")
    checks.append(f"EventBridge allowed to invoke {name} for {len(rules)} rules")
    return checks


def verify_undeployed(name: str) -> None:
    import boto3
    from botocore.exceptions import ClientError

    session = boto3.Session(region_name=REGION)
    try:
        session.client("lambda").get_function(FunctionName=name)
    except ClientError:
        pass
    else:
        raise CheckFailed(f"function {name} still exists after undeploy")
    # Zappa removes the API by deleting its CloudFormation stack. (moto marks the stack deleted but
    # keeps the REST API it created, so the API itself is not checked here.)
    stacks = session.client("cloudformation").list_stacks()["StackSummaries"]
    if any(st["StackName"] == name and st["StackStatus"] != "DELETE_COMPLETE" for st in stacks):
        raise CheckFailed(f"CloudFormation stack {name} (the API) still exists after undeploy")
    left = [r["Name"] for r in session.client("events").list_rules(NamePrefix=name)["Rules"]]
    if left:
        raise CheckFailed(f"rules left after undeploy: {left}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stage", default="dev")
    parser.add_argument("--zappa-venv", default=".venv-lambda", help="virtualenv with zappa installed")
    parser.add_argument("--settings", default=os.path.join(ROOT, "zappa_settings.json"))
    parser.add_argument("--layer", required=True, help="the layer zip scripts/build_layer.py wrote")
    args = parser.parse_args(argv)

    started = time.monotonic()
    venv = os.path.abspath(args.zappa_venv)
    with open(args.settings, encoding="utf-8") as fh:
        settings = json.load(fh)
    config = resolved_stage(settings, args.stage)
    name = f"{config.get('project_name', 'herald')}-{args.stage}"
    tmp = tempfile.mkdtemp(prefix="herald-deploy-check-")
    log = open(os.path.join(tmp, "moto.log"), "w")
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    server = None
    deployed = False
    try:
        server = start_moto(port, log)
        print(f"moto server at {endpoint}")
        import boto3

        env = aws_environment(endpoint, venv)
        os.environ.update({k: v for k, v in env.items() if k.startswith("AWS_")})
        bucket = config["s3_bucket"]
        make_versioned_bucket(bucket)
        layer_name = publish_layer.layer_name(settings, args.stage)
        layer_arn, _ = publish_layer.publish(args.layer, layer_name, bucket, REGION)
        with open(args.layer, "rb") as fh:
            layer_key = publish_layer.object_key(layer_name, fh.read())
        print(f"  ok: layer published: {layer_arn}")
        layers = publish_layer.with_layer(config.get("layers") or [], layer_arn)
        settings[args.stage] = {**settings[args.stage], "layers": layers, "touch": False}
        check_settings = os.path.join(tmp, "zappa_settings.json")
        with open(check_settings, "w", encoding="utf-8") as fh:
            json.dump(settings, fh, indent=2)

        deployed = True  # from here on, always try to undeploy
        zappa(venv, env, "deploy", args.stage, "-s", check_settings, "--disable_progress")
        status = zappa(venv, env, "status", args.stage, "-s", check_settings, "--json")
        if name not in status:
            raise CheckFailed(f"zappa status does not mention {name}")
        for line in verify_deployed(config, name, args.stage):
            print(f"  ok: {line}")
        function = boto3.client("lambda", region_name=REGION).get_function(FunctionName=name)["Configuration"]
        print(f"  ok: {verify_layer(function, layer_arn, args.layer)}")
        print(f"  ok: {smoke_deployed(function, bucket, layer_key, os.path.join(venv, 'bin', 'python'), tmp)}", flush=True)
        deployed = False
        zappa(venv, env, "undeploy", args.stage, "--yes", "-s", check_settings)
        verify_undeployed(name)
        print("  ok: function, API stack and rules removed")
    except (CheckFailed, subprocess.TimeoutExpired, Exception) as exc:  # noqa: BLE001 - report any failure
        print(f"deploy-check FAILED: {exc}", file=sys.stderr)
        if deployed:
            try:
                zappa(venv, aws_environment(endpoint, venv), "undeploy", args.stage, "--yes",
                      "-s", os.path.join(tmp, "zappa_settings.json"), timeout=300)
            except Exception:  # noqa: BLE001 - the original failure is what matters
                pass
        return 1
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"deploy-check OK: deploy, status, undeploy of {name} against moto in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
