"""Read queries for pages and the API, built so a page costs the same few queries at any size."""
from django.db.models import (
    Count,
    Exists,
    IntegerField,
    OuterRef,
    Prefetch,
    Q,
    Subquery,
    Value,
)
from django.db.models.functions import Coalesce

from .models import Comment, Follow, Like, Post, User


def _count_of(model, **filters):
    counted = model.objects.filter(**filters).order_by().values(*filters).annotate(n=Count("pk")).values("n")
    return Coalesce(Subquery(counted, output_field=IntegerField()), Value(0))


def posts_for(viewer, queryset=None):
    """Posts with author, comment and like counts, whether the viewer liked each, and mentions.

    Counts are correlated subqueries (no JOIN fan-out), mentions one prefetch for the whole page.
    """
    qs = (Post.objects.all() if queryset is None else queryset).select_related("author").annotate(
        comment_count=_count_of(Comment, post=OuterRef("pk")),
        like_count=_count_of(Like, post=OuterRef("pk")),
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
    return (
        Comment.objects.filter(post=post).select_related("author")
        .prefetch_related(Prefetch("mentions", queryset=User.objects.only("id", "username")))
        .order_by("id")
    )


def profile_stats(user) -> dict:
    return {
        "follower_count": Follow.objects.filter(followee=user).count(),
        "following_count": Follow.objects.filter(follower=user).count(),
        "post_count": Post.objects.filter(author=user).count(),
    }


def is_following(viewer, user) -> bool:
    if not viewer.is_authenticated or viewer.pk == user.pk:
        return False
    return Follow.objects.filter(follower=viewer, followee=user).exists()
