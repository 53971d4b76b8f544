"""Security headers: a Content-Security-Policy that the pages really live within, and HSTS behind
HTTPS."""
import os
import subprocess
import sys

import pytest
from playwright.sync_api import expect, sync_playwright

from feed import services

from .browser import launch
from .conftest import PASSWORD


def directives(response) -> dict[str, list[str]]:
    header = response["Content-Security-Policy"]
    return {part.split()[0]: part.split()[1:] for part in header.split(";") if part.strip()}


@pytest.mark.django_db
def test_every_page_has_a_strict_policy_with_the_live_push_origin(client, settings):
    settings.LOCALIOT_WS_PORT = 18083
    for path in ("/accounts/login/", "/api/notifications/unread-count/"):
        policy = directives(client.get(path))
        assert policy["script-src"] == ["'self'"] and policy["style-src"] == ["'self'"]
        assert policy["frame-ancestors"] == ["'none'"] and policy["object-src"] == ["'none'"]
        assert policy["connect-src"] == ["'self'", "ws://127.0.0.1:18083"]


@pytest.mark.django_db
def test_the_aws_backend_allows_its_iot_endpoint(client, settings):
    settings.NOTIFIER_BACKEND = "aws"
    settings.IOT_DATA_ENDPOINT = "abc123-ats.iot.eu-west-1.amazonaws.com"
    assert directives(client.get("/accounts/login/"))["connect-src"] == [
        "'self'", "wss://abc123-ats.iot.eu-west-1.amazonaws.com"]
    settings.IOT_DATA_ENDPOINT = ""
    settings.AWS_REGION = "eu-west-1"
    assert directives(client.get("/accounts/login/"))["connect-src"] == ["'self'", "wss://*.iot.eu-west-1.amazonaws.com"]


def hsts_settings(**env) -> str:
    from django.conf import settings

    code = ("import django, os; os.environ['DJANGO_SETTINGS_MODULE'] = 'config.settings'; django.setup();"
            "from django.conf import settings as s; print(s.SECURE_HSTS_SECONDS, s.SECURE_PROXY_SSL_HEADER if hasattr(s, 'SECURE_PROXY_SSL_HEADER') else None)")
    result = subprocess.run([sys.executable, "-c", code], cwd=settings.BASE_DIR, env=os.environ | env,
                            capture_output=True, text=True, timeout=60, check=True)
    return result.stdout.strip()


def test_hsts_only_behind_https():
    assert hsts_settings(SECURE_COOKIES="1") == "31536000 ('HTTP_X_FORWARDED_PROTO', 'https')"
    assert hsts_settings(SECURE_COOKIES="0").startswith("0 ")


@pytest.mark.django_db
def test_hsts_header_on_https_requests(client, settings):
    settings.SECURE_HSTS_SECONDS = 31_536_000
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    r = client.get("/accounts/login/", HTTP_X_FORWARDED_PROTO="https")
    assert r["Strict-Transport-Security"] == "max-age=31536000"


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_pages_break_no_rule_of_their_policy(live_server, live_push, make_user):
    """Every main page, logged in (live push connected) and out, the admin and the API docs:
    Chromium reports no Content-Security-Policy violation, and the delete confirmation still asks."""
    alice = make_user("alice", display_name="Alice", is_staff=True, is_superuser=True)
    post = services.create_post(alice, "hello")
    base = live_server.url
    violations = []
    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_context().new_page()
        page.on("console", lambda m: violations.append((page.url, m.text[:160])) if "Content Security Policy" in m.text else None)
        for path in ("/accounts/login/", "/accounts/signup/", "/api/docs/"):
            page.goto(base + path)
            page.wait_for_load_state("networkidle")
        page.goto(f"{base}/accounts/login/")
        page.fill("#id_username", "alice")
        page.fill("#id_password", PASSWORD)
        page.click("button:has-text('Log in')")
        for path in ("/admin/", "/", "/u/alice/", f"/posts/{post.pk}/", "/notifications/"):
            page.goto(base + path)
            page.wait_for_load_state("networkidle")
        expect(page.locator("#live-state")).to_have_attribute("data-state", "live", timeout=10_000)
        page.goto(f"{base}/u/alice/")
        page.click("form[data-delete] button")  # asked in the page's own dialog
        expect(page.get_by_role("dialog", name="Delete this post?")).to_be_visible()
        page.keyboard.press("Escape")
        expect(page.locator("#delete-dialog")).to_be_hidden()
        browser.close()
    assert violations == [], "\n".join(f"{url}: {text}" for url, text in violations)
