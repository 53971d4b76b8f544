"""Read queries for pages and the API, built so a page costs the same few queries at any size."""
from django.db.models import (
    Count,
    Exists,
    F,
    IntegerField,
    OuterRef,
    Prefetch,
    Q,
    Subquery,
    Value,
)
from django.db.models.functions import Coalesce

from . import counters
from .models import Comment, Follow, Like, Post, User


def count_of(model, **filters):
    """How many `model` rows match, as a correlated subquery (0, not NULL, when none do)."""
    counted = model.objects.filter(**filters).order_by().values(*filters).annotate(n=Count("pk")).values("n")
    return Coalesce(Subquery(counted, output_field=IntegerField()), Value(0))


def posts_for(viewer, queryset=None):
    """Posts with author, comment and like counts, whether the viewer liked each, and mentions.

    Counts are correlated subqueries (no JOIN fan-out), mentions one prefetch for the whole page.
    """
    qs = (Post.objects.all() if queryset is None else queryset).select_related("author").annotate(
        comment_count=count_of(Comment, post=OuterRef("pk")),
        like_count=count_of(Like, post=OuterRef("pk")),
    )
    if viewer is not None and viewer.is_authenticated:
        qs = qs.annotate(liked=Exists(Like.objects.filter(post=OuterRef("pk"), user=viewer)))
    else:
        qs = qs.annotate(liked=Value(False))
    return qs.prefetch_related(Prefetch("mentions", queryset=User.objects.only("id", "username")))


def home_feed(user):
    """The user's own posts and those of everyone they follow, newest first."""
    followed = Follow.objects.filter(follower=user).values("followee_id")
    return posts_for(user, Post.objects.filter(Q(author=user) | Q(author_id__in=followed))).order_by("-id")


def comments_for(post):
    """The post's comments, oldest first, each with how many replies it has."""
    return (
        Comment.objects.filter(post=post).select_related("author")
        .annotate(reply_count=count_of(Comment, parent=OuterRef("pk")))
        .prefetch_related(Prefetch("mentions", queryset=User.objects.only("id", "username")))
        .order_by("id")
    )


def threads(comments) -> list:
    """Top-level comments in order, each with `thread`: its replies in order (one level deep)."""
    comments = list(comments)
    replies = {}
    for comment in comments:
        if comment.parent_id is not None:
            replies.setdefault(comment.parent_id, []).append(comment)
    top = [c for c in comments if c.parent_id is None]
    for comment in top:
        comment.thread = replies.get(comment.pk, [])
    return top


def profile_stats(user) -> dict:
    return {
        "follower_count": counters.follower_count(user),
        "following_count": Follow.objects.filter(follower=user).count(),
        "post_count": Post.objects.filter(author=user).count(),
    }


def is_following(viewer, user) -> bool:
    if not viewer.is_authenticated or viewer.pk == user.pk:
        return False
    return Follow.objects.filter(follower=viewer, followee=user).exists()


# --- Finding people -------------------------------------------------------------------------

SEARCH_LIMIT = 20
SEARCH_MAX_LENGTH = 30  # characters of search text, once stripped
SUGGESTION_LIMIT = 10


def people_for(viewer, queryset):
    """Users with their follower count (feed.counters) and whether the viewer follows each (one query).
    Search results, "who to follow" and the follow button's line all show people this way."""
    qs = queryset.only("id", "username", "display_name", "avatar")
    qs = qs.annotate(follower_count=Coalesce("stats__follower_count", Value(0)))
    if viewer is not None and viewer.is_authenticated:
        return qs.annotate(followed_by_me=Exists(Follow.objects.filter(follower=viewer, followee=OuterRef("pk"))))
    return qs.annotate(followed_by_me=Value(False))


def person_for(viewer, user):
    """One user as search results and "who to follow" show them (their count, followed or not)."""
    return people_for(viewer, User.objects.filter(pk=user.pk)).get()


def search_users(viewer, q: str, limit: int = SEARCH_LIMIT) -> list:
    """The first `limit` people feed.search finds for q: any word of the username or display name
    starting with each word of q; the exact username first, then usernames starting with q, each
    most followed first."""
    from .search import people

    return people(viewer, q, size=limit).items


def suggested_users(user, limit: int = SUGGESTION_LIMIT) -> list:
    """Who to follow: people followed by the people the user follows (most such followees first),
    then the most followed users overall, then anyone (by username, on a site where few people
    follow anybody); never the user, nobody they already follow, only active accounts. At most
    three queries, each answered from an index at any number of users: "most followed" walks
    UserStats's follower-count index from the top."""
    if not user.is_authenticated:
        return []
    followees = Follow.objects.filter(follower=user).values("followee_id")
    candidates = User.objects.filter(is_active=True).exclude(pk=user.pk).exclude(pk__in=followees)
    people = list(
        people_for(None, candidates.filter(follower_set__follower__in=followees))
        .annotate(mutual=Count("follower_set"))
        .order_by("-mutual", "-follower_count", "username")[:limit]
    )
    if len(people) < limit:
        popular = people_for(None, candidates.filter(stats__follower_count__gt=0).exclude(pk__in=[u.pk for u in people]))
        # By the stored column itself (not the annotation's COALESCE), so PostgreSQL walks
        # userstats_popular_idx from the top and stops after `limit` (an incremental sort by username).
        people += list(popular.order_by(F("stats__follower_count").desc(), "username")[: limit - len(people)])
    if len(people) < limit:
        anyone = people_for(None, candidates.exclude(pk__in=[u.pk for u in people]))
        people += list(anyone.order_by("username")[: limit - len(people)])
    return people
