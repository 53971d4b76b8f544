"""API shapes and input validation for the feed (contract: README "HTTP API")."""
from django.contrib.auth import password_validation
from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from .models import Comment, Post, User
from .queries import SEARCH_MAX_LENGTH
from .text import MAX_TEXT_LENGTH, clean_text


@extend_schema_field({"type": "string", "minLength": 1, "maxLength": MAX_TEXT_LENGTH,
                     "pattern": r"^[^\u0000]*[^\u0000\s][^\u0000]*$",
                     "description": "Not blank (at least one character other than white space); no NUL characters."})
class TextField(serializers.CharField):
    """Post/comment text: stripped, non-blank, at most 2,000 characters, with a readable message."""

    def __init__(self, *, what: str, **kwargs):
        self.what = what
        kwargs.setdefault("error_messages", {"required": f"{what} text is required.", "null": f"{what} cannot be empty.",
                                             "blank": f"{what} cannot be empty."})
        super().__init__(allow_blank=False, trim_whitespace=False, **kwargs)

    def run_validation(self, data=serializers.empty):
        # Overrides run_validation, not to_internal_value: CharField returns "" before
        # to_internal_value is reached, and every text must pass through clean_text.
        if data is not serializers.empty and data is not None and not isinstance(data, str):
            raise serializers.ValidationError(f"{self.what} text must be a string.")  # not 0, true, [..]
        value = super().run_validation(data)
        try:
            return clean_text(value, what=self.what)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.messages) from exc


class ActorSerializer(serializers.Serializer):
    username = serializers.CharField()
    display_name = serializers.CharField(source="name")


class SignupSerializer(serializers.ModelSerializer):
    password = serializers.CharField(
        write_only=True, min_length=8, style={"input_type": "password"},
        help_text="At least 8 characters, not all digits, not a common password.",
        error_messages={"min_length": "This password is too short. It must contain at least 8 characters."},
    )

    class Meta:
        model = User
        fields = ["username", "password", "display_name"]
        extra_kwargs = {"display_name": {"required": False}}

    def validate_username(self, value):
        if User.objects.named(value).exists():
            raise serializers.ValidationError("That username is taken.")
        return value

    def validate(self, attrs):
        candidate = User(username=attrs["username"], display_name=attrs.get("display_name", ""))
        try:
            password_validation.validate_password(attrs["password"], candidate)
        except DjangoValidationError as exc:
            raise serializers.ValidationError({"password": exc.messages}) from exc
        return attrs

    def create(self, validated_data):
        return User.objects.create_user(**validated_data)


class UserSerializer(serializers.ModelSerializer):
    url = serializers.CharField(source="get_absolute_url", read_only=True)
    follower_count = serializers.IntegerField(read_only=True)
    following_count = serializers.IntegerField(read_only=True)
    post_count = serializers.IntegerField(read_only=True)
    followed_by_me = serializers.BooleanField(read_only=True)

    class Meta:
        model = User
        fields = ["username", "display_name", "bio", "url", "follower_count", "following_count", "post_count",
                  "followed_by_me"]


class PostSerializer(serializers.ModelSerializer):
    author = ActorSerializer(read_only=True)
    text = TextField(what="Post")
    comment_count = serializers.IntegerField(read_only=True)
    like_count = serializers.IntegerField(read_only=True)
    liked = serializers.BooleanField(read_only=True)
    mentions = serializers.SlugRelatedField(many=True, read_only=True, slug_field="username")
    url = serializers.CharField(source="get_absolute_url", read_only=True)

    class Meta:
        model = Post
        fields = ["id", "author", "text", "created_at", "edited_at", "comment_count", "like_count", "liked", "mentions",
                  "url", "live_seq"]
        read_only_fields = ["live_seq", "edited_at"]


class CommentSerializer(serializers.ModelSerializer):
    """A comment. Threads are one level deep: `parent` is the top-level comment a reply is under
    (null for a top-level comment), `replies` how many replies a top-level comment has. A post's
    comment list stays one flat page of all its comments, oldest first, so a thread is never split
    across pages in a way a client cannot put back together: group replies under `parent`."""

    author = ActorSerializer(read_only=True)
    text = TextField(what="Comment")
    parent = serializers.IntegerField(
        source="parent_id", required=False, allow_null=True, min_value=1, max_value=2**63 - 1,
        help_text="On create: the id of a comment on the same post to reply to (a reply to a reply joins its "
                  "thread). In responses: the top-level comment this reply is under, or null.",
        error_messages={"invalid": "parent must be the id of a comment on this post."},
    )
    replies = serializers.IntegerField(source="reply_count", read_only=True, default=0, help_text="Replies to this comment (0 for a reply).")
    mentions = serializers.SlugRelatedField(many=True, read_only=True, slug_field="username")
    url = serializers.CharField(source="get_absolute_url", read_only=True)

    class Meta:
        model = Comment
        fields = ["id", "post", "parent", "replies", "author", "text", "created_at", "edited_at", "mentions", "url"]
        read_only_fields = ["post", "edited_at"]


class FollowResultSerializer(serializers.Serializer):
    username = serializers.CharField()
    following = serializers.BooleanField()
    created = serializers.BooleanField()


class LikeResultSerializer(serializers.Serializer):
    post = serializers.IntegerField()
    liked = serializers.BooleanField()
    like_count = serializers.IntegerField()


class _WholeBody(serializers.Serializer):
    """A PATCH body that is never partial: an edit sends the text, required as when creating.
    (drf-spectacular marks a PATCH body partial, which would document every field as optional.)"""

    @property
    def partial(self):
        return False

    @partial.setter
    def partial(self, value):
        pass


class PostEditSerializer(_WholeBody):
    """PATCH /api/posts/{id}/: the new text, required and checked as when posting."""

    text = TextField(what="Post")


class CommentEditSerializer(_WholeBody):
    """PATCH /api/comments/{id}/: the new text, required and checked as when commenting."""

    text = TextField(what="Comment")


class PostFollowResultSerializer(serializers.Serializer):
    post = serializers.IntegerField()
    following = serializers.BooleanField()


class MuteResultSerializer(serializers.Serializer):
    post = serializers.IntegerField()
    muted = serializers.BooleanField()


# A search text: 1 to 30 characters once white space is stripped from both ends, no NUL.
SEARCH_PATTERN = rf"^\s*[^\s\u0000]([^\u0000]{{0,{SEARCH_MAX_LENGTH - 2}}}[^\s\u0000])?\s*$"


@extend_schema_field({"type": "string", "minLength": 1, "pattern": SEARCH_PATTERN,
                      "description": f"1 to {SEARCH_MAX_LENGTH} characters (white space at either end does not count)."})
class SearchTextField(serializers.CharField):
    """Stripped search text; its length is checked after stripping (a max_length would also put a
    maxLength on the raw parameter in the schema)."""

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if len(value) > SEARCH_MAX_LENGTH:
            raise serializers.ValidationError(f"Search for at most {SEARCH_MAX_LENGTH} characters.")
        return value


class UserQuerySerializer(serializers.Serializer):
    """GET /api/users/: exactly one of `q` (search) and `suggested` (who to follow)."""

    q = SearchTextField(
        required=False,
        help_text="Users whose username or display name starts with this text (case-insensitive): "
        "an exact username first, then the most followed. Up to 20.",
        error_messages={"blank": f"Type 1 to {SEARCH_MAX_LENGTH} characters to search for."},
    )
    suggested = serializers.BooleanField(
        required=False,
        help_text="Who to follow: people followed by people you follow (most of them first), then the most "
        "followed; never you or anyone you follow. Up to 10.",
    )

    def validate(self, attrs):
        # Which parameters were sent (from a query string DRF reads a missing boolean as false).
        if "q" in self.initial_data and "suggested" in self.initial_data:
            raise serializers.ValidationError("Give either q (to search) or suggested=1, not both.")
        if "q" not in attrs and not attrs.get("suggested"):
            raise serializers.ValidationError("Give q (the start of a username or display name) or suggested=1.")
        return attrs


class UserSummarySerializer(serializers.ModelSerializer):
    """A person in search results and suggestions."""

    url = serializers.CharField(source="get_absolute_url", read_only=True)
    follower_count = serializers.IntegerField(read_only=True)
    followed_by_me = serializers.BooleanField(read_only=True)

    class Meta:
        model = User
        fields = ["username", "display_name", "follower_count", "followed_by_me", "url"]


class UserListSerializer(serializers.Serializer):
    results = UserSummarySerializer(many=True)
