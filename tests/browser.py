"""Headless Debian Chromium driven by Playwright, for the browser tests."""
import os
import shutil

# Playwright's sync API runs an event loop in the test thread; the test still uses the ORM
# synchronously between browser steps, which is safe here.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


def launch(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)


# --- shared steps of the browser tests ----------------------------------------------------------

def make_users(*names):
    """Accounts with the tests' password and a display name from the username ("alice" → "Alice")."""
    from feed.models import User

    from .conftest import PASSWORD

    return [User.objects.create_user(name, password=PASSWORD, display_name=name.capitalize()) for name in names]


def log_in(page, base, username):
    """Log `page` in through the log-in form (with the tests' password)."""
    from playwright.sync_api import expect

    from .conftest import PASSWORD

    page.goto(f"{base}/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button:has-text('Log in')")
    expect(page.locator("#bell-count")).to_be_attached()


def logged_in_page(browser, base, username):
    """A page in a fresh browser context (its own cookies), logged in as `username`."""
    page = browser.new_context().new_page()
    log_in(page, base, username)
    return page


def wait_live(page):
    """Until the page's live connection is up."""
    from playwright.sync_api import expect

    expect(page.locator("#live-state")).to_have_attribute("data-state", "live", timeout=10_000)
    # …and its first requests after connecting (catch-up, the post's sync) have come back, so a
    # test's next write does not race them (SQLite's in-memory test database refuses a write to a
    # table another request is reading, where PostgreSQL would wait).
    page.wait_for_function("() => window.heraldLive && window.heraldLive.idle()", timeout=10_000)
