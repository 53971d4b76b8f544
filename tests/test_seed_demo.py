"""manage.py seed_demo: demo data that is safe to load twice."""
import pytest
from django.contrib.auth import authenticate
from django.core.management import call_command

from feed.models import Comment, Follow, Like, Post, User
from notifier.models import Notification

from .helpers import assert_count_exact


def counts():
    return [m.objects.count() for m in (User, Follow, Post, Comment, Like, Notification)]


@pytest.mark.django_db
def test_seed_demo_is_idempotent_and_notifies_for_real(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        call_command("seed_demo", verbosity=0)
    first = counts()
    assert first[:5] == [4, 7, 5, 5, 6]
    with django_capture_on_commit_callbacks(execute=True):
        call_command("seed_demo", verbosity=0)
    assert counts() == first
    assert Notification.objects.filter(kind="new_post").exists()
    assert Notification.objects.filter(kind="mention", recipient__username="alice").exists()
    assert authenticate(username="alice", password="herald-demo-pass") is not None
    assert_count_exact(*User.objects.all())
