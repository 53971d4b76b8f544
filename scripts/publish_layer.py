"""Publish the libraries layer (scripts/build_layer.py) and name its version in zappa_settings.json.

    python scripts/publish_layer.py dist/herald-dev-layer.zip --stage dev [--settings zappa_settings.json]

Run before `zappa deploy` or `zappa update` when the layer changed (requirements.txt did): the
function's zip no longer holds cryptography, http_ece, py_vapid or Pillow, so the function must
be created with the layer that does. The layer is named "{project_name}-{stage}-libs"; if its
latest version already has this zip's SHA-256, that version is kept (no upload). The zip goes
through the stage's deployment bucket ("s3_bucket"), as Zappa's own code does, then
lambda:PublishLayerVersion; the stage's "layers" entry for this layer in the settings file is set
to the version's ARN (other layers listed there are left alone).

Needs boto3 and credentials allowed s3:PutObject on the bucket and lambda:PublishLayerVersion,
lambda:ListLayerVersions; scripts/deploy_check.py runs it against moto.
"""
import argparse
import base64
import hashlib
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNTIME = "python3.11"


def layer_name(settings: dict, stage: str) -> str:
    return f"{stage_value(settings, stage, 'project_name') or 'herald'}-{stage}-libs"


def stage_value(settings: dict, stage: str, key: str):
    """A stage's setting with "extends" applied (Zappa's shallow merge)."""
    config = settings[stage]
    while key not in config and "extends" in config:
        config = settings[config["extends"]]
    return config.get(key)


def object_key(name: str, data: bytes) -> str:
    """The layer zip's key in the deployment bucket: one object per content."""
    return f"{name}-{hashlib.sha256(data).hexdigest()[:16]}.zip"


def publish(zip_path: str, name: str, bucket: str, region: str, session=None) -> tuple[str, bool]:
    """(LayerVersionArn, published?) for the zip: the latest version if it has the same contents."""
    import boto3

    session = session or boto3.Session(region_name=region)
    client = session.client("lambda", region_name=region)
    with open(zip_path, "rb") as fh:
        data = fh.read()
    sha256 = base64.b64encode(hashlib.sha256(data).digest()).decode()
    versions = client.list_layer_versions(LayerName=name).get("LayerVersions", [])
    if versions:
        latest = max(versions, key=lambda v: v["Version"])
        found = client.get_layer_version(LayerName=name, VersionNumber=latest["Version"])
        if found["Content"].get("CodeSha256") == sha256:
            return latest["LayerVersionArn"], False
    key = object_key(name, data)
    s3 = session.client("s3", region_name=region)
    try:
        s3.head_bucket(Bucket=bucket)
    except s3.exceptions.ClientError:
        s3.create_bucket(Bucket=bucket, **({} if region == "us-east-1" else
                                           {"CreateBucketConfiguration": {"LocationConstraint": region}}))
    s3.put_object(Bucket=bucket, Key=key, Body=data)
    published = client.publish_layer_version(
        LayerName=name, Description="Herald: cryptography, http_ece, py_vapid, Pillow (scripts/build_layer.py)",
        Content={"S3Bucket": bucket, "S3Key": key}, CompatibleRuntimes=[RUNTIME],
        CompatibleArchitectures=["x86_64"])
    if published["Content"].get("CodeSha256") not in (None, sha256):
        raise SystemExit(f"publish_layer: {name} was stored with SHA-256 {published['Content']['CodeSha256']}, "
                         f"not {sha256}")
    return published["LayerVersionArn"], True


def with_layer(layers: list[str], arn: str) -> list[str]:
    """The list with `arn` in place of any other version of the same layer (or appended)."""
    base = arn.rsplit(":", 1)[0]
    kept = [entry for entry in layers if entry.rsplit(":", 1)[0] != base]
    return [*kept, arn]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("zip")
    parser.add_argument("--stage", default="dev")
    parser.add_argument("--settings", default=os.path.join(ROOT, "zappa_settings.json"))
    args = parser.parse_args(argv)
    with open(args.settings, encoding="utf-8") as fh:
        settings = json.load(fh)
    region = stage_value(settings, args.stage, "aws_region")
    name = layer_name(settings, args.stage)
    arn, new = publish(args.zip, name, stage_value(settings, args.stage, "s3_bucket"), region)
    settings[args.stage]["layers"] = with_layer(stage_value(settings, args.stage, "layers") or [], arn)
    with open(args.settings, "w", encoding="utf-8") as fh:
        json.dump(settings, fh, indent=4)
        fh.write("\n")
    print(f"publish_layer: {arn} ({'published' if new else 'unchanged, not uploaded again'}); "
          f"{os.path.basename(args.settings)} [{args.stage}].layers = {settings[args.stage]['layers']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
