"""The emulator's constructor arguments from Herald's settings: the same IAM as production.

    LocalIoT(**options_from_settings())

* root key pair: notifier.aws.local.root_credentials() (derived from SECRET_KEY), what the local
  publisher and credential issuer sign with;
* region: AWS_REGION; account: notifier.aws.local.ACCOUNT;
* roles: {IOT_ROLE_ARN or the dev stage's role: notifier.aws.policies.role_policy(...)}, the one
  document `iot_setup` writes to IAM;
* root_policy: the stage's `extra_permissions` in zappa_settings.json (what the Lambda function
  may do: publish to the stage's topics, assume the role, end live connections), "extends"
  resolved as Zappa resolves it;
* ports and limits: the LOCALIOT_* settings; the HTTP connection cap follows PUSH_CONCURRENCY
  (gate.http_connection_cap: twice the keep-alive pools of 8 web and 2 task workers).

So a policy change in zappa_settings.json or policies.py changes what works locally too. No amqtt
is imported here (a guard test holds that).
"""
import json
from pathlib import Path

ZAPPA_SETTINGS = Path(__file__).resolve().parents[2] / "zappa_settings.json"
POLICY_VERSION = "2012-10-17"


def stage_settings(stage: str, *, path: Path = ZAPPA_SETTINGS) -> dict:
    """One stage of zappa_settings.json with its "extends" chain merged (the child's keys win)."""
    stages = json.loads(Path(path).read_text())
    chain, name = [], stage
    while name is not None:
        if name not in stages:
            raise ValueError(f"{path.name} has no stage {name!r}.")
        if name in chain:
            raise ValueError(f"{path.name}: stage {name!r} extends itself.")
        chain.append(name)
        name = stages[name].get("extends")
    merged: dict = {}
    for name in reversed(chain):
        merged.update({key: value for key, value in stages[name].items() if key != "extends"})
    return merged


def stage_policy(stage: str, *, path: Path = ZAPPA_SETTINGS) -> dict:
    """The stage's Lambda permissions (`extra_permissions`) as an IAM policy document."""
    statements = stage_settings(stage, path=path).get("extra_permissions")
    if not statements:
        raise ValueError(f"Stage {stage!r} has no extra_permissions: its function could do nothing.")
    return {"Version": POLICY_VERSION, "Statement": statements}


def options_from_settings(stage: str | None = None, **overrides) -> dict:
    """LocalIoT's keyword arguments from Django settings; `overrides` replace any of them (ports...)."""
    from django.conf import settings

    from notifier.aws import local
    from notifier.aws.policies import role_policy

    from .gate import http_connection_cap

    access_key_id, secret_access_key = local.root_credentials()
    region = settings.AWS_REGION
    role_arn = settings.IOT_ROLE_ARN or local.ROLE_ARN
    options = {
        "host": settings.LOCALIOT_HOST,
        "mqtt_port": settings.LOCALIOT_MQTT_PORT,
        "ws_port": settings.LOCALIOT_WS_PORT,
        "http_port": settings.LOCALIOT_HTTP_PORT,
        "root_access_key_id": access_key_id,
        "root_secret_access_key": secret_access_key,
        "region": region,
        "account": local.ACCOUNT,
        "root_policy": stage_policy(stage or local.STAGE),
        "roles": {role_arn: role_policy(region=region, account=local.ACCOUNT, prefix=settings.IOT_TOPIC_PREFIX)},
        "connect_timeout": settings.LOCALIOT_CONNECT_TIMEOUT,
        "max_connections": settings.LOCALIOT_MAX_CONNECTIONS,
        "max_http_connections": http_connection_cap(settings.PUSH_CONCURRENCY),
        "max_publish_rate": settings.LOCALIOT_PUBLISH_RATE or None,
    }
    options.update(overrides)
    return options
