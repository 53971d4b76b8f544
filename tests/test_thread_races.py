"""Real concurrency for threads: following and unfollowing a post while people comment on it, and
many replies to one comment at once (writers in threads, each on its own connection; see
test_races for the harness and the checks every scenario ends with)."""
from collections import Counter

import pytest

from feed import services
from feed.models import Comment, Post, PostFollow
from feed.queries import comments_for
from notifier.models import Notification

from .test_races import check_consistency, file_backed_sqlite, make_users, race  # noqa: F401 (fixture)


@pytest.mark.django_db(transaction=True)
def test_following_and_unfollowing_a_post_while_people_comment_on_it():
    """Each round, three threads per person follow (even rounds) or unfollow (odd rounds) the same
    post at once, while a commenter comments on it: exactly one of each person's three calls
    changes anything, one row per person stays, and no comment tells anyone twice."""
    author, commenter, *people = make_users("pf", 6)
    post = services.create_post(author, "follow me")
    rounds = 8

    def toggler(user):
        def job(r):
            return services.follow_post(user, post.pk, r % 2 == 0)

        return job

    jobs = {f"{u.username}-{i}": toggler(u) for u in people for i in range(3)}
    jobs["commenter"] = lambda r: services.add_comment(commenter, post.pk, f"round {r}").pk
    results = race(jobs, rounds=rounds)

    for user in people:
        changed = [sum(results[f"{user.username}-{i}"][r] for i in range(3)) for r in range(rounds)]
        assert changed == [1] * rounds, f"{user}: calls that changed something per round: {changed}"
    rows = Counter(PostFollow.objects.filter(post=post).values_list("user_id", flat=True))
    assert rows == Counter({u.pk: 1 for u in [commenter, *people]})  # one row each (the author has none)
    assert not PostFollow.objects.filter(post=post, user__in=people, following=True).exists()  # odd last
    per_comment = Counter(Notification.objects.filter(event__post_ref=post.pk).values_list("event__comment_ref", "recipient_id"))
    assert per_comment and max(per_comment.values()) == 1
    # The author follows throughout: told of every comment; the togglers of some.
    assert Notification.objects.filter(recipient=author, kind="comment").count() == rounds
    check_consistency([author, commenter, *people])


@pytest.mark.django_db(transaction=True)
def test_many_replies_to_one_comment_at_once():
    """Eight people reply to one comment, and to each other's replies, at once: every reply joins
    the one thread, the counts are exact, and the comment's author is told of each reply once."""
    author, starter, *people = make_users("rr", 10)
    post = services.create_post(author, "a thread")
    top = services.add_comment(starter, post.pk, "start here")
    rounds = 5

    def replier(user, i):
        def job(r):
            # Half reply to the thread's start, half to the newest reply they can see.
            latest = Comment.objects.filter(parent=top).order_by("-pk").values_list("pk", flat=True).first()
            parent = top.pk if i % 2 == 0 or latest is None else latest
            return services.add_comment(user, post.pk, f"reply {r} by {user}", parent_id=parent).pk

        return job

    results = race({u.username: replier(u, i) for i, u in enumerate(people)}, rounds=rounds)
    replies = [pk for done in results.values() for pk in done]
    assert len(replies) == len(people) * rounds
    assert set(Comment.objects.filter(parent=top).values_list("pk", flat=True)) == set(replies)
    assert comments_for(post).get(pk=top.pk).reply_count == len(replies)
    assert Post.objects.get(pk=post.pk).live_seq == len(replies) + 1  # one numbered message per comment
    told = Counter(Notification.objects.filter(event__comment_ref__in=replies, recipient=starter).values_list("kind", flat=True))
    assert told == Counter({"reply": len(replies)})
    # The post's author hears of every reply once (`comment`); its other followers of none.
    heard = Counter(Notification.objects.filter(recipient=author).values_list("event__comment_ref", flat=True))
    assert heard == Counter({top.pk: 1, **{pk: 1 for pk in replies}})
    check_consistency([author, starter, *people])
