"""Search in real headless Chromium: a surname typed in the navbar finds the person; the Posts tab
(a link, the same words) finds a matching post, its text shown as text."""
import re

import pytest
from playwright.sync_api import expect, sync_playwright

from feed import services

from .browser import launch, log_in, logged_in_page, make_users

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_surname_finds_the_person_and_the_posts_tab_finds_a_post(live_server):
    alice, ana = make_users("alice", "ana_w")
    ana.display_name = "Ana Wójcik"
    ana.save()
    services.create_post(ana, "Notes from <b>Wójcik</b> on herons")
    services.create_post(alice, "Nothing to see here")
    base = live_server.url
    with sync_playwright() as p:
        browser = launch(p)
        page = logged_in_page(browser, base, "alice")

        page.fill("#nav-search-q", "wojcik")  # the surname, typed without its accent
        page.press("#nav-search-q", "Enter")
        expect(page).to_have_url(re.compile(r"/people/\?q=wojcik$"))
        people = page.locator("#search-results li.person")
        expect(people).to_have_count(1)
        expect(people.first).to_contain_text("Ana Wójcik")
        expect(page.get_by_role("link", name="People")).to_have_attribute("aria-current", "page")

        page.get_by_role("navigation", name="Search in").get_by_role("link", name="Posts").click()
        expect(page).to_have_url(re.compile(r"/people/\?q=wojcik&type=posts$"))
        expect(page.get_by_role("link", name="Posts")).to_have_attribute("aria-current", "page")
        cards = page.locator("#search-results article.post")
        expect(cards).to_have_count(1)
        expect(cards.first).to_contain_text("Notes from <b>Wójcik</b> on herons")  # text, not markup

        # Searching again from the page stays on the Posts tab.
        page.fill("#people-q", "hero")
        page.press("#people-q", "Enter")
        expect(page).to_have_url(re.compile(r"/people/\?q=hero&type=posts$"))
        expect(page.locator("#search-results article.post")).to_have_count(1)
        browser.close()


def test_axe_finds_no_serious_problem_on_either_tab(live_server):
    from .test_browser_polish import AXE, DESKTOP, PHONE, axe_problems

    assert AXE.is_file(), "axe-core is missing: run make npm (npm ci)"
    alice, bob = make_users("alice", "bob")
    services.follow(alice, "bob")
    services.create_post(bob, "Bob on boats")
    problems = []
    with sync_playwright() as p:
        browser = launch(p)
        for viewport in (DESKTOP, PHONE):
            page = browser.new_context(viewport=viewport, bypass_csp=True).new_page()  # axe runs inline
            log_in(page, live_server.url, "alice")
            for path in ("/people/?q=bo", "/people/?q=bo&type=posts", "/people/?q=zzz&type=posts"):
                page.goto(live_server.url + path)
                page.wait_for_load_state("networkidle")
                problems += [f"{viewport['width']}px {path}: {x}" for x in axe_problems(page)]
            page.context.close()
        browser.close()
    assert problems == [], "axe-core found:\n" + "\n".join(problems)
