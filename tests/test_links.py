"""URLs in user text become links by one rule (feed.text.find_links, link_href and the
with_mentions / with_links filters; live.js follows it for live comments): only http(s) and bare
"www." URLs, trailing prose punctuation left outside, everything escaped."""
import re
from types import SimpleNamespace

import pytest
from django.template import Context, Template

from feed.templatetags.feed_text import with_links, with_mentions
from feed.text import find_links, link_href

pytestmark = pytest.mark.django_db

REL = 'rel="nofollow ugc noopener"'


def links(text):
    """[(link text as written, href)] for text."""
    return [(text[a:b], link_href(text[a:b])) for a, b in find_links(text)]


@pytest.mark.parametrize("text, expected", [
    # Only http(s) and www. ever link, whatever the case or the characters inside the scheme.
    ("javascript:alert(1)", []),
    ("JaVaScRiPt:alert(1)", []),
    ("java\tscript:alert(1)", []),
    ("data:text/html,<b>hi</b>", []),
    ("vbscript:msgbox(1)", []),
    ("httpſ://x.test", []),  # a long s is not an s
    ("javascript://x.test/%0aalert(1)", []),
    # Trailing punctuation and an unbalanced ")" stay outside; balanced parentheses stay inside.
    ("https://x.test/a_(b)", [("https://x.test/a_(b)", "https://x.test/a_(b)")]),
    ("(see https://x.test).", [("https://x.test", "https://x.test")]),
    ("((https://x.test/(a)))", [("https://x.test/(a)", "https://x.test/(a)")]),
    ("go to http://x.test:80/a;b,c!?", [("http://x.test:80/a;b,c", "http://x.test:80/a;b,c")]),
    # www. hosts link as https://; the scheme's case is the href's only normalisation.
    ("www.x.test", [("www.x.test", "https://www.x.test")]),
    ("HTTPS://X.TEST/Path", [("HTTPS://X.TEST/Path", "https://X.TEST/Path")]),
    # A URL ends at characters that end it in HTML and prose.
    ("https://x.test/<script>", [("https://x.test/", "https://x.test/")]),
    ('https://x.test/"onmouseover=alert(1)', [("https://x.test/", "https://x.test/")]),
    ("https://x.test/'onmouseover='alert(1)", [("https://x.test/", "https://x.test/")]),
    ("https://x.test\\@evil.test", [("https://x.test", "https://x.test")]),
    ("https://x.test/\u202egnp.exe", [("https://x.test/", "https://x.test/")]),  # a bidi override
    # Percent-safe hrefs: non-ASCII as UTF-8, a stray % as %25, valid escapes kept.
    ("https://аpple.test/путь", [("https://аpple.test/путь", "https://%D0%B0pple.test/%D0%BF%D1%83%D1%82%D1%8C")]),
    ("https://x.test/%zz%41%", [("https://x.test/%zz%41%", "https://x.test/%25zz%41%25")]),
    ("https://x.test/a&b=c", [("https://x.test/a&b=c", "https://x.test/a&b=c")]),
    # Not URLs of their own: inside an e-mail address, a word, a path; user names hide the host.
    ("bob@www.x.test", []),
    ("write to bob@x.test", []),
    ("xhttps://x.test", []),
    ("https://good.test@evil.test/", []),
    ("https://", []),
    ("www.", []),
    ("https://...", []),
])
def test_which_text_links_and_where(text, expected):
    assert links(text) == expected


def test_rendered_link_is_escaped_and_carries_rel_without_target():
    html = with_mentions('<script>alert("x")</script> & see https://x.test/?a=1&b=<2> "onmouseover=', [])
    assert "<script>" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; see " in html
    assert f'<a href="https://x.test/?a=1&amp;b=" {REL}>https://x.test/?a=1&amp;b=</a>&lt;2&gt; &quot;onmouseover=' in html
    assert "target" not in html


def test_javascript_text_stays_text():
    for text in ("javascript:alert(1)", "JaVaScRiPt:alert(1)", "java\tscript:alert(1)", "data:text/html,x"):
        html = with_mentions(text, [])
        assert "<a" not in html
        assert html == text


def test_look_alike_host_is_shown_as_written_and_escaped():
    html = with_mentions("pay at https://раураl.test/<b>", [])
    assert html == f'pay at <a href="https://%D1%80%D0%B0%D1%83%D1%80%D0%B0l.test/" {REL}>https://раураl.test/</a>&lt;b&gt;'
    html = with_mentions("https://xn--80aa0cbo65f.test", [])
    assert html == f'<a href="https://xn--80aa0cbo65f.test" {REL}>https://xn--80aa0cbo65f.test</a>'


def test_mentions_still_link_and_a_mention_inside_a_url_stays_in_the_url():
    alice = SimpleNamespace(username="alice")
    html = with_mentions("@alice see https://x.test/@alice (@alice)", [alice])
    assert html == (
        '<a class="mention" href="/u/alice/">@alice</a> see '
        f'<a href="https://x.test/@alice" {REL}>https://x.test/@alice</a> '
        '(<a class="mention" href="/u/alice/">@alice</a>)'
    )
    # An e-mail address is neither a mention nor a link.
    assert with_mentions("bob@alice.test", [alice]) == "bob@alice.test"


def test_line_breaks_in_posts_and_none_in_bios():
    assert with_mentions("a\nhttps://x.test\nb", []) == f'a<br><a href="https://x.test" {REL}>https://x.test</a><br>b'
    assert with_links("me: www.x.test.") == f'me: <a href="https://www.x.test" {REL}>www.x.test</a>.'


def test_filters_work_in_templates():
    post = "{% load feed_text %}{{ text|with_links }}"
    assert Template(post).render(Context({"text": "<i>https://x.test</i>"})) == (
        f'&lt;i&gt;<a href="https://x.test" {REL}>https://x.test</a>&lt;/i&gt;'
    )


@pytest.mark.parametrize("text", [
    "a" * 10_000,
    "https://x" * 1_200,
    "https://" + ")" * 10_000,
    "https://x.test/" + "(" * 5_000 + ")" * 5_000 + "." * 100,
    "www." * 2_500,
    "@" * 10_000,
    "https://a@" * 1_000,
    ".https://" * 1_200,
])
def test_ten_kilobytes_without_spaces_complete(text):
    """No backtracking blow-up: each of these finishes (a catastrophic pattern would not)."""
    html = with_mentions(text, [])
    assert re.sub(r"<[^>]*>", "", html).replace("&amp;", "&") == text
