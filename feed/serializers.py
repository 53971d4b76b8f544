"""API shapes and input validation for the feed (contract: README "HTTP API")."""
from django.contrib.auth import password_validation
from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import PolymorphicProxySerializer, extend_schema_field
from rest_framework import serializers

from . import search
from .media import NOT_YOUR_UPLOAD, UPLOAD_CONTENT_TYPES, upload_key_belongs_to
from .models import Comment, Post, User
from .queries import SEARCH_MAX_LENGTH
from .text import MAX_ALT_LENGTH, MAX_TEXT_LENGTH, clean_text, normalize_newlines


class StringField(serializers.CharField):
    """A JSON string only: DRF's CharField would take 12 or true as the text "12" or "True"."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


@extend_schema_field({"type": "string", "minLength": 1, "maxLength": MAX_TEXT_LENGTH,
                     "pattern": r"^[^\u0000]*[^\u0000\s][^\u0000]*$",
                     "description": "Not blank (at least one character other than white space); no NUL characters. A CRLF line break counts as one character."})
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
        sent = normalize_newlines(data) if isinstance(data, str) else ""
        if len(sent) > MAX_TEXT_LENGTH:
            # As the schema says, the text as sent counts, white space around it included (a CRLF
            # line break is one character, as everywhere); only then is it stripped.
            raise serializers.ValidationError(
                f"{self.what} is too long: {len(sent)} characters, the limit is {MAX_TEXT_LENGTH}.")
        value = super().run_validation(data)
        try:
            return clean_text(value, what=self.what)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.messages) from exc


class AvatarSerializer(serializers.Serializer):
    """An avatar's URLs: square WebP pictures of 48, 96 and 256 pixels."""

    small = serializers.CharField()
    medium = serializers.CharField()
    large = serializers.CharField()


def avatar_field():
    return AvatarSerializer(source="avatar_urls", read_only=True, allow_null=True,
                            help_text="The person's picture in three sizes, or null (show initials).")


class ActorSerializer(serializers.Serializer):
    username = serializers.CharField()
    display_name = serializers.CharField(source="name")
    avatar = avatar_field()


PICTURE_SCHEMA = {"type": "object", "required": ["url", "width", "height", "alt"], "properties": {
    "url": {"type": "string"}, "width": {"type": "integer"}, "height": {"type": "integer"}, "alt": {"type": "string"}}}


@extend_schema_field({"oneOf": [{"type": "string", "format": "binary"}, PICTURE_SCHEMA, {"type": "null"}],
                      "description": "In (multipart): a JPEG, PNG, WebP or GIF of at most 10 MB and 40 megapixels. "
                      "Out: the stored picture {url, width, height, alt} (WebP, at most 1,600 px a side, no "
                      "EXIF), or null."})
class PictureField(serializers.FileField):
    """A post's picture: an uploaded file in, {url, width, height, alt} (or null) out."""

    def __init__(self, **kwargs):
        super().__init__(source="*", required=False, **kwargs)

    def to_internal_value(self, data):
        return {"image": super().to_internal_value(data)}

    def to_representation(self, post):
        return post.image_info


class UploadKeyField(serializers.CharField):
    """The key of a picture uploaded straight to storage with a presigned POST (POST /api/uploads/)."""

    def __init__(self, **kwargs):
        kwargs.setdefault("help_text", "Instead of `image`: the `key` of an upload made with POST /api/uploads/.")
        # Blank is none (a form's empty field, which DRF reads as absent anyway).
        super().__init__(write_only=True, required=False, allow_blank=True, max_length=200, **kwargs)

    def to_internal_value(self, data):
        key = super().to_internal_value(data)
        if key and not upload_key_belongs_to(key, self.context["request"].user.pk):
            raise serializers.ValidationError(NOT_YOUR_UPLOAD)
        return key


def one_picture(attrs, *, field: str = "image") -> dict:
    """A file or an upload key, not both."""
    if attrs.get(field) is not None and attrs.get("upload"):
        raise serializers.ValidationError({"upload": [f"Send either {field} or upload, not both."]})
    return attrs


class SignupSerializer(serializers.ModelSerializer):
    password = serializers.CharField(
        write_only=True, min_length=8, style={"input_type": "password"},
        help_text="At least 8 characters, not all digits, not a common password.",
        error_messages={"min_length": "This password is too short. It must contain at least 8 characters."},
    )

    class Meta:
        model = User
        fields = ["username", "password", "display_name", "email"]
        extra_kwargs = {
            "display_name": {"required": False},
            "email": {"required": False, "write_only": True, "help_text": (
                "Optional. Digests and password resets go to it once confirmed by the link mailed to it.")},
        }

    def validate_email(self, value):
        return User.objects.normalize_email(value or "")

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
        from .emails import send_verification

        user = User.objects.create_user(**validated_data)
        if user.email:
            send_verification(user)  # throttled per account; a brand-new one is far from its limit
        return user


class UserSerializer(serializers.ModelSerializer):
    url = serializers.CharField(source="get_absolute_url", read_only=True)
    follower_count = serializers.IntegerField(read_only=True)
    following_count = serializers.IntegerField(read_only=True)
    post_count = serializers.IntegerField(read_only=True)
    followed_by_me = serializers.BooleanField(read_only=True)
    avatar = avatar_field()

    class Meta:
        model = User
        fields = ["username", "display_name", "bio", "url", "follower_count", "following_count", "post_count",
                  "followed_by_me", "avatar"]


class PostSerializer(serializers.ModelSerializer):
    author = ActorSerializer(read_only=True)
    text = TextField(what="Post")
    comment_count = serializers.IntegerField(read_only=True)
    like_count = serializers.IntegerField(read_only=True)
    liked = serializers.BooleanField(read_only=True)
    mentions = serializers.SlugRelatedField(many=True, read_only=True, slug_field="username")
    url = serializers.CharField(source="get_absolute_url", read_only=True)
    image = PictureField()
    image_alt = serializers.CharField(
        write_only=True, required=False, allow_blank=True, max_length=MAX_ALT_LENGTH,
        help_text="What the picture shows, for people who cannot see it (with `image` or `upload`).",
        error_messages={"max_length": f"Describe the picture in at most {MAX_ALT_LENGTH} characters."},
    )
    upload = UploadKeyField()

    class Meta:
        model = Post
        fields = ["id", "author", "text", "created_at", "edited_at", "comment_count", "like_count", "liked", "mentions",
                  "url", "live_seq", "image", "image_alt", "upload"]
        read_only_fields = ["live_seq", "edited_at"]

    def validate(self, attrs):
        one_picture(attrs)
        if attrs.get("image_alt", "").strip() and attrs.get("image") is None and not attrs.get("upload"):
            raise serializers.ValidationError({"image_alt": ["Alt text describes a picture: send one with it."]})
        return attrs


class EmailSerializer(serializers.Serializer):
    """GET / PUT /api/users/me/email/: your address and whether it is confirmed."""

    email = serializers.EmailField(allow_blank=True, max_length=254, help_text=(
        "Your address (empty: none). A new one is unconfirmed until the link mailed to it is opened."))
    verified = serializers.BooleanField(read_only=True, help_text="Whether the address is confirmed.")
    current_password = StringField(
        write_only=True, required=False, allow_blank=True, trim_whitespace=False, max_length=4096,
        help_text="The account's password: needed to change the address (not to send the same one again).")

    def validate_email(self, value):
        return User.objects.normalize_email(value or "")


class AvatarInputSerializer(serializers.Serializer):
    """PUT /api/users/me/avatar/: a picture (multipart `image`) or the key of a direct upload."""

    image = serializers.FileField(
        required=False, help_text="A JPEG, PNG, WebP or GIF of at most 10 MB and 40 megapixels; its centre "
        "square becomes the avatar.")
    upload = UploadKeyField()

    def validate(self, attrs):
        one_picture(attrs)
        if attrs.get("image") is None and not attrs.get("upload"):
            raise serializers.ValidationError({"image": ["Choose a picture to upload."]})
        return attrs


class AvatarResultSerializer(serializers.Serializer):
    avatar = AvatarSerializer(allow_null=True)


class UploadRequestSerializer(serializers.Serializer):
    content_type = serializers.ChoiceField(
        choices=sorted(UPLOAD_CONTENT_TYPES),
        error_messages={"invalid_choice": "Upload a JPEG, PNG, WebP or GIF image."},
        help_text="The picture's type; the upload must be sent with this Content-Type.")


class UploadSerializer(serializers.Serializer):
    """A presigned POST: send the file as multipart form data to `url` with every field of
    `fields` and the file last (as `file`), then pass `key` as `upload`."""

    url = serializers.CharField()
    fields = serializers.DictField(child=serializers.CharField())
    key = serializers.CharField()
    expires_at = serializers.DateTimeField()


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

    limit = SEARCH_MAX_LENGTH

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if len(value) > self.limit:
            raise serializers.ValidationError(f"Search for at most {self.limit} characters.")
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


TEXT_SEARCH_PATTERN = rf"^\s*[^\s\u0000]([^\u0000]{{0,{search.MAX_LENGTH - 2}}}[^\s\u0000])?\s*$"


@extend_schema_field({"type": "string", "minLength": 1, "pattern": TEXT_SEARCH_PATTERN,
                      "description": f"1 to {search.MAX_LENGTH} characters (white space at either end does not count)."})
class TextSearchField(SearchTextField):
    """GET /api/search/'s text: longer than a name, since posts are searched by phrases too."""

    limit = search.MAX_LENGTH


class SearchQuerySerializer(serializers.Serializer):
    """GET /api/search/: what to find, and where a page starts."""

    q = TextSearchField(
        help_text="Words to find; the last one also matches the start of a word (search as you type). People: "
        "every word starts a word of the username or display name. Posts: every word appears, \"quoted words\" "
        "together, -word never.",
        error_messages={"required": "Give q, the text to search for.",
                        "blank": f"Type 1 to {search.MAX_LENGTH} characters to search for."},
    )
    type = serializers.ChoiceField(
        choices=["people", "posts"], default="people",
        help_text="people (the default): an exact username first, then usernames starting with q, each most "
        "followed first. posts: most relevant first, then newest, among the newest "
        f"{search.POST_CANDIDATES:,} matches.",
        error_messages={"invalid_choice": "type must be people or posts."},
    )
    cursor = serializers.RegexField(
        search.CURSOR_PATTERN, required=False,
        help_text="Where the page starts: copy it from a page's `next` link.",
        error_messages={"invalid": search.INVALID_CURSOR},
    )
    page_size = serializers.IntegerField(
        required=False, min_value=1, max_value=search.MAX_PAGE_SIZE,
        error_messages={"invalid": f"A whole number from 1 to {search.MAX_PAGE_SIZE}.",
                        "min_value": f"A whole number from 1 to {search.MAX_PAGE_SIZE}.",
                        "max_value": f"A whole number from 1 to {search.MAX_PAGE_SIZE}."},
    )


class UserSummarySerializer(serializers.ModelSerializer):
    """A person in search results and suggestions."""

    url = serializers.CharField(source="get_absolute_url", read_only=True)
    follower_count = serializers.IntegerField(read_only=True)
    followed_by_me = serializers.BooleanField(read_only=True)
    avatar = avatar_field()

    class Meta:
        model = User
        fields = ["username", "display_name", "follower_count", "followed_by_me", "url", "avatar"]


class UserListSerializer(serializers.Serializer):
    results = UserSummarySerializer(many=True)


class SearchPageSerializer(serializers.Serializer):
    """A page of GET /api/search/: people (type=people) or posts (type=posts), never both."""

    next = serializers.URLField(allow_null=True, help_text="The next page, or null on the last one.")
    previous = serializers.URLField(allow_null=True, help_text="Always null: search pages go forwards.")
    results = PolymorphicProxySerializer(component_name="SearchResult", many=True, resource_type_field_name=None,
                                         serializers=[UserSummarySerializer, PostSerializer])
