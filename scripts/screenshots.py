"""Screenshots for the README, taken in headless Chromium against a scratch Herald.

    .venv/bin/python scripts/screenshots.py [--out docs/screenshots]

It needs nothing running: it makes a scratch SQLite database in a temporary directory (migrated,
then filled with a few people and some activity), starts the local IoT emulator and a Django
test server on free ports in this process, logs in as "alice" and saves

    grouped-notifications.png   the notifications page, 1100 px wide: grouped likes, an
                                author's new posts grouped, a follow group, a comment and a
                                mention, with one group bumped live (moved to the top) while
                                the page is open.
    home-desktop.png            alice's home feed (a few posts), 1280 px wide.
    home-phone.png              the same feed on a phone: 390 x 844, device scale 2.

Everything is thrown away afterwards. Chromium is Debian's (/usr/bin/chromium), as in the tests.
"""
import argparse
import os
import secrets
import socket
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "herald-screenshot-pass"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def configure(workdir: Path) -> None:
    """Environment for a scratch Herald, set before Django reads its settings."""
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
    os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(40))  # a throwaway Herald's own key
    os.environ["DATABASE_URL"] = f"sqlite:///{workdir / 'screenshots.sqlite3'}"
    os.environ["TASK_BACKEND"] = "immediate"  # follower fan-out runs inline
    os.environ["NOTIFIER_PUBLISHER"] = "notifier.push.publisher.IotDataPublisher"
    os.environ["LOCALIOT_HOST"] = "127.0.0.1"
    for name in ("LOCALIOT_MQTT_PORT", "LOCALIOT_WS_PORT", "LOCALIOT_HTTP_PORT"):
        os.environ[name] = str(free_port())
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # Playwright's loop + the ORM
    sys.path.insert(0, str(ROOT))


def seed():
    """Alice's notifications: a bit of everything, older ones read."""
    from feed import services
    from feed.models import User
    from notifier import services as notifier_services

    def person(username, name):
        return User.objects.create_user(username, password=PASSWORD, display_name=name)

    alice = person("alice", "Alice")
    ana, ben, cleo, dan, eve, finn = (person(u, u.capitalize()) for u in ("ana", "ben", "cleo", "dan", "eve", "finn"))

    for someone in (dan, cleo, finn):
        services.follow(someone, "alice")
    services.follow(alice, "ben")
    services.create_post(ben, "Three things I learned running Postgres on a laptop for a year.")
    photo = services.create_post(alice, "Sunrise over the harbour this morning, no filter.")
    services.add_comment(finn, photo.pk, "Wow, what a view. Where exactly was this?")
    notifier_services.mark_all_read(alice)  # everything so far: read

    services.create_post(ben, "Follow-up: the vacuum settings that finally made it fast.")
    post = services.create_post(alice, "Shipped grouped notifications today: one line per post, not fifty.")
    for someone in (ana, ben, cleo):
        services.like(someone, post.pk)
    services.add_comment(eve, post.pk, "Finally! @alice the badge no longer shouts at me.")
    services.follow(ana, "alice")
    return alice, dan, post


def log_in(page, base: str, username: str) -> None:
    page.goto(f"{base}/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button:has-text('Log in')")


def home_feed(browser, base: str, out: Path) -> None:
    """Alice's home feed at desktop and phone size (live, nothing typed, no toast on screen)."""
    from playwright.sync_api import expect

    for name, context in (
        ("home-desktop.png", {"viewport": {"width": 1280, "height": 900}, "device_scale_factor": 1}),
        ("home-phone.png", {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2,
                            "is_mobile": True, "has_touch": True}),
    ):
        page = browser.new_context(color_scheme="light", **context).new_page()
        log_in(page, base, "alice")
        page.goto(f"{base}/")
        expect(page.locator("#live-state")).to_have_attribute("data-state", "live", timeout=10_000)
        expect(page.locator("#feed article.post").first).to_be_visible()
        page.wait_for_timeout(300)
        page.screenshot(path=str(out / name))
        page.context.close()


def take(out: Path) -> Path:
    import django
    from django.contrib.staticfiles.handlers import StaticFilesHandler
    from django.core.management import call_command
    from django.test.testcases import LiveServerThread

    django.setup()
    from django.conf import settings
    from playwright.sync_api import expect, sync_playwright

    from feed import services
    from notifier.localiot.config import options_from_settings
    from notifier.localiot.server import LocalIoT
    from notifier.aws.local import root_credentials as local_credentials

    call_command("migrate", verbosity=0)
    key_id, secret = local_credentials()
    iot = LocalIoT(**options_from_settings()).start_in_thread()
    server = LiveServerThread("127.0.0.1", StaticFilesHandler, port=0)
    server.daemon = True
    server.start()
    server.is_ready.wait()
    if server.error:
        raise server.error
    base = f"http://127.0.0.1:{server.port}"
    try:
        alice, dan, post = seed()
        out.mkdir(parents=True, exist_ok=True)
        target = out / "grouped-notifications.png"
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                        args=["--no-sandbox", "--disable-gpu"])
            home_feed(browser, base, out)
            page = browser.new_context(viewport={"width": 1100, "height": 760}, color_scheme="light",
                                       device_scale_factor=1).new_page()
            page.goto(f"{base}/accounts/login/")
            page.fill("#id_username", "alice")
            page.fill("#id_password", PASSWORD)
            page.click("button:has-text('Log in')")
            page.goto(f"{base}/notifications/")
            expect(page.locator("#live-state")).to_have_attribute("data-state", "live", timeout=10_000)
            # Live, while the page is open: Dan's like bumps the likes group to the top.
            services.like(dan, post.pk)
            expect(page.locator("#notification-list li").first).to_contain_text("Dan and 3 others", timeout=5_000)
            page.wait_for_timeout(1_500)  # let the highlight of the bumped line fade
            page.screenshot(path=str(target), full_page=True)
            browser.close()
        return target
    finally:
        server.terminate()
        iot.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "screenshots"), help="where to save the PNGs")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="herald-screens-") as workdir:
        configure(Path(workdir))
        print(take(Path(args.out).resolve()))


if __name__ == "__main__":
    main()
