"""One relative-time format on the server (the `ago` filter) and in the browser (feed/time.js),
checked against each other over one table, and the pages use it."""
import json
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from feed import services
from feed.models import Comment, Post
from feed.templatetags.reltime import ago, relative

TIME_JS = Path(__file__).resolve().parent.parent / "feed" / "static" / "feed" / "time.js"
NOW = datetime(2026, 3, 15, 12, 0, 0, tzinfo=UTC)

# (time before NOW, what both must say)
TABLE = [
    (timedelta(0), "just now"),
    (timedelta(seconds=1), "just now"),
    (timedelta(seconds=59, milliseconds=999), "just now"),
    (timedelta(seconds=-30), "just now"),  # a clock a little ahead
    (timedelta(hours=-2), "just now"),
    (timedelta(seconds=60), "1 minute ago"),
    (timedelta(seconds=119), "1 minute ago"),
    (timedelta(seconds=120), "2 minutes ago"),
    (timedelta(minutes=5), "5 minutes ago"),
    (timedelta(minutes=59, seconds=59), "59 minutes ago"),
    (timedelta(hours=1), "1 hour ago"),
    (timedelta(hours=1, minutes=59), "1 hour ago"),
    (timedelta(hours=3), "3 hours ago"),
    (timedelta(hours=23, minutes=59, seconds=59), "23 hours ago"),
    (timedelta(hours=24), "yesterday"),
    (timedelta(hours=47, minutes=59), "yesterday"),
    (timedelta(hours=48), "2 days ago"),
    (timedelta(days=3), "3 days ago"),
    (timedelta(days=6, hours=23), "6 days ago"),
    (timedelta(days=7), "Mar 8"),
    (timedelta(days=30), "Feb 13"),
    (NOW - datetime(2026, 1, 1, 0, 0, tzinfo=UTC), "Jan 1"),
    (NOW - datetime(2025, 12, 31, 23, 59, tzinfo=UTC), "Dec 31, 2025"),
    (NOW - datetime(2025, 11, 3, 9, 30, tzinfo=UTC), "Nov 3, 2025"),
    (NOW - datetime(2019, 9, 9, tzinfo=UTC), "Sep 9, 2019"),
]


def js_ago(cases: list[tuple[str, str]]) -> list[str]:
    """feed/time.js's ago(date, now, "UTC") for each (date, now) pair, run by node."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    script = (
        "const t = require(process.argv[1]);"
        "const cases = JSON.parse(process.argv[2]);"
        "process.stdout.write(JSON.stringify(cases.map(([d, n]) => t.ago(d, n, 'UTC'))));"
    )
    out = subprocess.run([node, "-e", script, str(TIME_JS), json.dumps(cases)],
                         check=True, capture_output=True, text=True, timeout=30)
    return json.loads(out.stdout)


def iso(dt: datetime) -> str:
    return dt.isoformat(timespec="milliseconds")


def test_python_and_javascript_say_the_same():
    python = [relative(NOW - delta, NOW, UTC) for delta, _ in TABLE]
    javascript = js_ago([(iso(NOW - delta), iso(NOW)) for delta, _ in TABLE])
    expected = [want for _, want in TABLE]
    assert python == expected
    assert javascript == expected


def test_javascript_reads_django_datetime_attributes():
    # <time datetime="{{ dt|date:'c' }}">: microseconds and an offset.
    created = datetime(2026, 3, 15, 11, 55, 0, 123456, tzinfo=UTC)
    attribute = created.isoformat()
    assert attribute == "2026-03-15T11:55:00.123456+00:00"
    assert js_ago([(attribute, iso(NOW))]) == [relative(created, NOW, UTC)] == ["4 minutes ago"]


def test_the_filter_uses_the_current_time_and_ignores_what_is_not_a_datetime():
    assert ago(timezone.now()) == "just now"
    assert ago(timezone.now() - timedelta(minutes=3)) == "3 minutes ago"
    assert ago(None) == ""
    assert ago("yesterday") == ""


def test_pages_say_just_now_and_never_0_minutes(client, alice, bob):
    post = services.create_post(alice, "fresh post")
    services.add_comment(bob, post.pk, "fresh comment")
    old = services.create_post(alice, "old post")
    Post.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(hours=3))
    Comment.objects.filter(post=post).update(created_at=timezone.now() - timedelta(days=1, hours=1))
    client.force_login(alice)
    for url in ("/", f"/posts/{post.pk}/", "/notifications/"):
        html = client.get(url).content.decode()
        assert "0 minutes" not in html and "0\xa0minutes" not in html, url
        assert " ago</time>" in html or "just now</time>" in html, url
    home = client.get("/").content.decode()
    assert "just now</time>" in home and "3 hours ago</time>" in home
    detail = client.get(f"/posts/{post.pk}/").content.decode()
    assert ">yesterday</time>" in detail
