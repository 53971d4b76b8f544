"""NOTIFIER_BACKEND=aws: scoped temporary keys, presigned WSS URL, endpoint discovery, publishing.

AWS is out of reach here, so the real boto3 clients talk to moto; the presigned URL is checked
against awscrt's signer, which is what AWS's own device SDKs use.
"""
import json
import logging
import re
from datetime import datetime, timezone
from urllib.parse import parse_qsl, urlsplit

import pytest
from botocore.exceptions import EndpointConnectionError
from botocore.stub import Stubber
from moto import mock_aws

from feed import services
from notifier.aws import clients as aws
from notifier.aws.presign import presign_wss_url
from notifier.aws.issuer import role_session_name
from notifier.aws.policies import session_policy
from notifier.push.publisher import _load, get_publisher

pytestmark = pytest.mark.django_db

ACCOUNT = "123456789012"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/herald-iot-browser"
REGION = "eu-west-1"


def clear_caches():
    aws.cache_clear()
    _load.cache_clear()


@pytest.fixture
def aws_mode(settings, monkeypatch):
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": REGION}.items():
        monkeypatch.setenv(name, value)
    settings.NOTIFIER_BACKEND = "aws"
    settings.IOT_ROLE_ARN = ROLE_ARN
    settings.AWS_REGION = REGION
    settings.IOT_DATA_ENDPOINT = ""
    settings.IOT_CREDENTIALS_TTL = 900
    clear_caches()
    with mock_aws():
        yield settings
    clear_caches()


def calls_to(service, operation):
    """Record the parameters of every call of one operation on Herald's cached client."""
    seen = []
    aws.client(service, REGION).meta.events.register(
        f"provide-client-params.{service}.{operation}", lambda params, **kw: seen.append(dict(params))
    )
    return seen


def test_credentials_in_aws_mode(api, alice, aws_mode):
    assumed = calls_to("sts", "AssumeRole")
    r = api.as_(alice).post("/api/notifications/credentials/")
    assert r.status_code == 200, r.content
    creds = r.json()
    assert creds["backend"] == "aws"
    assert set(creds["aws"]) == {"access_key_id", "secret_access_key", "session_token", "region", "endpoint"}
    assert creds["aws"]["region"] == REGION and creds["aws"]["access_key_id"].startswith("ASIA")
    endpoint = creds["aws"]["endpoint"]
    assert re.fullmatch(r"[a-z0-9]+-ats\.iot\.eu-west-1\.amazonaws\.com", endpoint)
    assert creds["topics"] == {"notifications": f"herald/dev/users/{alice.pk}/notifications",
                               "post_comments": "herald/dev/posts/+/comments"}
    expires = datetime.fromisoformat(creds["expires_at"].replace("Z", "+00:00"))
    assert 890 < (expires - datetime.now(timezone.utc)).total_seconds() <= 900

    [call] = assumed
    assert call["RoleArn"] == ROLE_ARN and call["DurationSeconds"] == 900
    assert re.fullmatch(r"[\w+=,.@-]{2,64}", call["RoleSessionName"]) and "alice" in call["RoleSessionName"]
    assert json.loads(call["Policy"]) == session_policy(
        region=REGION, account=ACCOUNT, prefix="herald/dev", client_id=creds["client_id"], user_id=alice.pk
    )

    url = urlsplit(creds["url"])
    assert (url.scheme, url.netloc, url.path) == ("wss", endpoint, "/mqtt")
    params = parse_qsl(url.query)
    assert [k for k, _ in params] == ["X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires",
                                      "X-Amz-SignedHeaders", "X-Amz-Signature", "X-Amz-Security-Token"]
    assert dict(params)["X-Amz-Security-Token"] == creds["aws"]["session_token"]
    assert dict(params)["X-Amz-Credential"].endswith(f"/{REGION}/iotdevicegateway/aws4_request")


def test_role_session_name_is_valid_for_any_username(make_user):
    user = make_user("a" * 30)
    name = role_session_name(user)
    assert re.fullmatch(r"[\w+=,.@-]{2,64}", name) and name.startswith(f"herald-{user.pk}-")


def test_endpoint_is_discovered_once_per_process(api, alice, aws_mode):
    discovered = calls_to("iot", "DescribeEndpoint")
    api.as_(alice)
    first = api.post("/api/notifications/credentials/").json()["aws"]["endpoint"]
    second = api.post("/api/notifications/credentials/").json()["aws"]["endpoint"]
    assert first == second
    assert len(discovered) == 1  # moto answers a new random host on each call: one call was made
    aws_mode.NOTIFIER_PUBLISHER = "notifier.push.publisher.IotDataPublisher"
    assert get_publisher().client.meta.endpoint_url == f"https://{first}"
    assert len(discovered) == 1


def test_configured_endpoint_skips_discovery(api, alice, aws_mode):
    aws_mode.IOT_DATA_ENDPOINT = "abc123-ats.iot.eu-west-1.amazonaws.com"
    discovered = calls_to("iot", "DescribeEndpoint")
    creds = api.as_(alice).post("/api/notifications/credentials/").json()
    assert creds["aws"]["endpoint"] == "abc123-ats.iot.eu-west-1.amazonaws.com"
    assert discovered == []


def test_publishes_reach_aws_iot_with_topic_and_envelope(alice, bob, aws_mode, on_commit):
    from moto.iotdata.models import iotdata_backends

    aws_mode.NOTIFIER_PUBLISHER = "notifier.push.publisher.IotDataPublisher"
    aws_mode.IOT_DATA_ENDPOINT = f"data-ats.iot.{REGION}.amazonaws.com"  # the host moto serves
    aws_mode.IOT_TOPIC_PREFIX = "herald/prod"
    post = services.create_post(alice, "hello")
    with on_commit():
        comment = services.add_comment(bob, post.pk, "from the cloud")
    published = iotdata_backends[ACCOUNT][REGION].published_payloads
    [(topic, payload)] = [(t, p) for t, p in published if "/users/" in t]
    assert topic == f"herald/prod/users/{alice.pk}/notifications"
    body = json.loads(payload)
    assert body["type"] == "notification" and body["kind"] == "comment" and body["unread_count"] == 1
    assert body["url"] == f"/posts/{post.pk}/#comment-{comment.pk}"
    # Open post pages hear of the comment on the post's public topic (feed.live).
    [live] = [json.loads(p) for t, p in published if t == f"herald/prod/posts/{post.pk}/comments"]
    assert live["type"] == "comment" and live["comment"]["id"] == comment.pk and live["comment_count"] == 1


def test_presigned_url_matches_awscrt_signature():
    from awscrt.auth import (
        AwsCredentialsProvider, AwsSignatureType, AwsSigningAlgorithm, AwsSigningConfig, aws_sign_request,
    )
    from awscrt.http import HttpHeaders, HttpRequest

    moment = datetime(2026, 11, 25, 12, 30, 45, tzinfo=timezone.utc)
    endpoint = "a1b2c3-ats.iot.eu-west-1.amazonaws.com"
    key_id, secret, token = "ASIAEXAMPLEKEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "FwoG/token+with=chars"
    ours = presign_wss_url(endpoint=endpoint, region=REGION, access_key_id=key_id, secret_access_key=secret,
                               session_token=token, now=moment, expires=900)

    request = HttpRequest("GET", "/mqtt", HttpHeaders([("host", endpoint)]))
    config = AwsSigningConfig(
        algorithm=AwsSigningAlgorithm.V4, signature_type=AwsSignatureType.HTTP_REQUEST_QUERY_PARAMS,
        credentials_provider=AwsCredentialsProvider.new_static(key_id, secret, token),
        region=REGION, service="iotdevicegateway", date=moment, omit_session_token=True,
        expiration_in_seconds=900,
    )
    signed = aws_sign_request(request, config).result(timeout=5)
    theirs = dict(parse_qsl(urlsplit(signed.path).query))
    mine = dict(parse_qsl(urlsplit(ours).query))
    assert mine["X-Amz-Signature"] == theirs["X-Amz-Signature"]
    for name in ("X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires", "X-Amz-SignedHeaders", "X-Amz-Algorithm"):
        assert mine[name] == theirs[name], name
    assert mine["X-Amz-Security-Token"] == token
    # And the signature really depends on the secret.
    other = presign_wss_url(endpoint=endpoint, region=REGION, access_key_id=key_id, secret_access_key="x",
                                session_token=token, now=moment, expires=900)
    assert dict(parse_qsl(urlsplit(other).query))["X-Amz-Signature"] != theirs["X-Amz-Signature"]


def assert_503_with_one_log_line(api, user, caplog, expected_in_log):
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="notifier.aws.issuer"):
        r = api.as_(user).post("/api/notifications/credentials/")
    assert r.status_code == 503
    assert r.json() == {"detail": "Live notifications are unavailable right now; the page still works and will catch up."}
    records = [rec for rec in caplog.records if rec.name == "notifier.aws.issuer"]
    assert len(records) == 1 and records[0].exc_info is None
    assert expected_in_log in records[0].getMessage()


@pytest.mark.parametrize("code", ["AccessDenied", "Throttling", "RegionDisabledException"])
def test_sts_failures_become_503(api, alice, aws_mode, caplog, code):
    with Stubber(aws.client("sts", REGION)) as stub:
        stub.add_client_error("assume_role", service_error_code=code, http_status_code=403 if code == "AccessDenied" else 400)
        assert_503_with_one_log_line(api, alice, caplog, code)


def test_iot_failure_becomes_503(api, alice, aws_mode, caplog):
    with Stubber(aws.client("iot", REGION)) as stub:
        stub.add_client_error("describe_endpoint", service_error_code="ThrottlingException", http_status_code=429)
        assert_503_with_one_log_line(api, alice, caplog, "ThrottlingException")
    # Not cached: the next request discovers it.
    assert api.post("/api/notifications/credentials/").status_code == 200


def test_unreachable_region_becomes_503(api, alice, aws_mode, caplog):
    def unreachable(**kwargs):
        raise EndpointConnectionError(endpoint_url="https://sts.eu-west-1.amazonaws.com")

    aws.client("sts", REGION).meta.events.register("before-send.sts.AssumeRole", unreachable)
    assert_503_with_one_log_line(api, alice, caplog, "EndpointConnectionError")


def test_unknown_region_and_missing_role_become_503(api, alice, aws_mode, caplog):
    aws_mode.AWS_REGION = "moon"
    assert_503_with_one_log_line(api, alice, caplog, "unknown AWS region 'moon'")
    aws_mode.AWS_REGION = REGION
    aws_mode.IOT_ROLE_ARN = ""
    assert_503_with_one_log_line(api, alice, caplog, "IOT_ROLE_ARN is not set")
