"""Screenshots for the README, taken in headless Chromium against a scratch Herald.

    .venv/bin/python scripts/screenshots.py [--out docs/screenshots]

It needs nothing running: it makes a scratch SQLite database in a temporary directory (migrated,
then filled with a few people and some activity), starts the local IoT emulator and a Django
test server on free ports in this process, logs in as "alice" and saves

    grouped-notifications.png   the notifications page, 1100 px wide: kind icons, unread dots,
                                Today / Earlier, grouped likes, an author's new posts grouped, a
                                follow group with Follow back, a comment, a reply and a mention,
                                with one group bumped live (moved to the top) while the page is open.
    post-replies.png            a post with its picture, comments and a thread of replies.
    home-desktop.png            alice's home feed (a few posts), 1280 px wide.
    home-phone.png              the same feed on a phone: 390 x 844, device scale 2, with the
                                one-row header and the bottom tab bar.

The faces and the photo are drawn here (Pillow), uploaded through the same services as the site.

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
    os.environ["MEDIA_ROOT"] = str(workdir / "media")
    os.environ["TASK_BACKEND"] = "immediate"  # follower fan-out runs inline
    os.environ["NOTIFIER_PUBLISHER"] = "notifier.push.publisher.IotDataPublisher"
    os.environ["LOCALIOT_HOST"] = "127.0.0.1"
    for name in ("LOCALIOT_MQTT_PORT", "LOCALIOT_WS_PORT", "LOCALIOT_HTTP_PORT"):
        os.environ[name] = str(free_port())
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # Playwright's loop + the ORM
    sys.path.insert(0, str(ROOT))


def face(hue: int):
    """A made-up avatar: a soft two-tone portrait silhouette on a coloured ground (PNG bytes)."""
    import colorsys
    import io

    from PIL import Image, ImageDraw

    def rgb(h, s, v):
        return tuple(int(c * 255) for c in colorsys.hsv_to_rgb(h / 360, s, v))

    image = Image.new("RGB", (256, 256), rgb(hue, 0.35, 0.95))
    draw = ImageDraw.Draw(image)
    draw.ellipse((78, 44, 178, 144), fill=rgb(hue + 20, 0.25, 0.55))  # head
    draw.ellipse((38, 150, 218, 330), fill=rgb(hue + 200, 0.45, 0.55))  # shoulders
    out = io.BytesIO()
    image.save(out, "PNG")
    out.seek(0)
    return out


def sunrise():
    """A made-up photo: a sunrise over water, 1,200 × 800 (JPEG bytes)."""
    import io

    from PIL import Image, ImageDraw

    image = Image.new("RGB", (1200, 800))
    draw = ImageDraw.Draw(image)
    for y in range(520):  # sky: deep blue to orange at the horizon
        t = y / 520
        draw.line([(0, y), (1200, y)], fill=(int(40 + 215 * t), int(60 + 110 * t), int(120 - 40 * t)))
    draw.ellipse((520, 400, 680, 560), fill=(255, 214, 120))  # the sun, half under the horizon
    for y in range(520, 800):  # water, with the sun's path on it
        t = (y - 520) / 280
        draw.line([(0, y), (1200, y)], fill=(int(30 + 40 * (1 - t)), int(50 + 40 * (1 - t)), int(90 + 30 * (1 - t))))
        half = 80 - int(60 * t)
        if y % 6 < 3:
            draw.line([(600 - half, y), (600 + half, y)], fill=(250, 190, 110))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    out.seek(0)
    return out


def seed():
    """Alice's notifications: a bit of everything, older ones read."""
    from feed import services
    from feed.models import User
    from notifier import services as notifier_services

    def person(username, name, hue=None):
        user = User.objects.create_user(username, password=PASSWORD, display_name=name)
        if hue is not None:
            services.set_avatar(user, face(hue))
            user.refresh_from_db()
        return user

    alice = person("alice", "Alice Moreau", 20)
    ana, ben, cleo, dan, eve, finn = (
        person(u, name, hue) for u, name, hue in (
            ("ana", "Ana Silva", 330), ("ben", "Ben Okafor", 200), ("cleo", "Cleo Park", None),
            ("dan", "Dan Weiss", 120), ("eve", "Eve Laurent", 270), ("finn", "Finn Byrne", None)))

    for someone in (dan, cleo, finn):
        services.follow(someone, "alice")
    services.follow(alice, "ben")
    services.create_post(ben, "Three things I learned running Postgres on a laptop for a year.")
    photo = services.create_post(alice, "Sunrise over the harbour this morning, no filter. https://example.org/harbour",
                                 image=sunrise(), image_alt="The sun rising over calm water, its path glowing orange")
    where = services.add_comment(finn, photo.pk, "Wow, what a view. Where exactly was this?")
    services.add_comment(alice, photo.pk, "The old lighthouse pier, about 6:40.", parent_id=where.pk)
    services.add_comment(ben, photo.pk, "Worth the early alarm, clearly.")
    notifier_services.mark_all_read(alice)  # everything so far: read
    services.add_comment(finn, photo.pk, "@alice adding it to my list, thanks!", parent_id=where.pk)

    services.create_post(ben, "Follow-up: the vacuum settings that finally made it fast.")
    post = services.create_post(alice, "Shipped grouped notifications today: one line per post, not fifty.")
    for someone in (ana, ben, cleo):
        services.like(someone, post.pk)
    services.add_comment(eve, post.pk, "Finally! @alice the badge no longer shouts at me.")
    services.follow(ana, "alice")
    return alice, dan, post, photo


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
        alice, dan, post, photo = seed()
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
            expect(page.locator("#notification-list li.notification").first).to_contain_text("Dan Weiss and 3 others", timeout=5_000)
            page.wait_for_timeout(1_500)  # let the highlight of the bumped line fade
            page.screenshot(path=str(target), full_page=True)
            # The photo post: its picture, a comment with its thread of replies, a top-level comment.
            page.goto(f"{base}/posts/{photo.pk}/")
            expect(page.locator("#live-state")).to_have_attribute("data-state", "live", timeout=10_000)
            expect(page.locator("ol.replies li.comment")).to_have_count(2)
            page.evaluate("document.querySelectorAll('img').forEach((i) => { i.loading = 'eager'; })")
            page.wait_for_function("[...document.images].every((i) => i.complete && i.naturalWidth > 0)")
            page.screenshot(path=str(out / "post-replies.png"), full_page=True)
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
