"""Feed API views: thin wrappers that validate with serializers and act through feed.services."""
import contextlib

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, status
from rest_framework.exceptions import APIException, Throttled, ValidationError
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.utils.urls import replace_query_param
from rest_framework.views import APIView

from config.pagination import IntegerCursorPagination
from config.parsers import UPLOAD_PARSERS
from config.throttles import SignupThrottle, WriteThrottle

import notifier

from . import emails, media, queries, search, services
from .images import ImageRejected
from .models import Comment, Like, Post, User
from .serializers import (
    AvatarInputSerializer,
    AvatarResultSerializer,
    CommentEditSerializer,
    CommentSerializer,
    EmailSerializer,
    FollowResultSerializer,
    LikeResultSerializer,
    MuteResultSerializer,
    PostEditSerializer,
    PostFollowResultSerializer,
    PostSerializer,
    SearchPageSerializer,
    SearchQuerySerializer,
    SignupSerializer,
    UserListSerializer,
    UserQuerySerializer,
    UserSerializer,
    UserSummarySerializer,
    UploadRequestSerializer,
    UploadSerializer,
)


@contextlib.contextmanager
def picture_from(validated: dict, field: str = "image"):
    """The picture a request brought: its uploaded file, or the object of its direct upload (read,
    then deleted whatever happens), or None. A refused picture is a 400 naming the field."""
    key = validated.get("upload")
    try:
        with media.picture(validated.get(field), key) as picture:
            yield picture
    except ImageRejected as exc:
        raise ValidationError({"upload" if key else field: [str(exc)]}) from None


class NewestFirst(IntegerCursorPagination):
    """Keyset pagination on the primary key: no OFFSET, no ties, stable under inserts."""

    ordering = "-id"


class OldestFirst(NewestFirst):
    ordering = "id"


class SignupView(generics.CreateAPIView):
    """Create an account. Log in afterwards with POST /api/token/ or the log-in page."""

    serializer_class = SignupSerializer
    permission_classes = [AllowAny]
    authentication_classes = []
    throttle_classes = [SignupThrottle]


class UsersView(SignupView):
    """Create an account. Log in afterwards with POST /api/token/ or the log-in page."""

    # POST is SignupView unchanged (anyone, no authentication, SignupThrottle); GET finds people
    # and, like the rest of the API, needs a logged-in caller (and is not throttled: a read).

    def _reading(self) -> bool:
        request = getattr(self, "request", None)  # None while drf-spectacular builds its mock request
        return request is not None and request.method in ("GET", "HEAD")

    def get_authenticators(self):
        if self._reading():
            return [auth() for auth in api_settings.DEFAULT_AUTHENTICATION_CLASSES]
        return super().get_authenticators()

    def get_permissions(self):
        return [IsAuthenticated()] if self._reading() else super().get_permissions()

    def get_throttles(self):
        return [] if self._reading() else super().get_throttles()

    @extend_schema(operation_id="users_list", parameters=[UserQuerySerializer], responses=UserListSerializer)
    def get(self, request):
        """Find people: `?q=TEXT` (usernames and display names starting with TEXT, case-insensitive;
        an exact username first, then the most followed; up to 20) or `?suggested=1` (who to follow:
        people followed by people you follow, then the most followed; up to 10). Exactly one of them."""
        query = UserQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        if "q" in query.validated_data:
            people = queries.search_users(request.user, query.validated_data["q"])
        else:
            people = queries.suggested_users(request.user)
        return Response({"results": UserSummarySerializer(people, many=True).data})


class UserDetailView(generics.RetrieveAPIView):
    serializer_class = UserSerializer

    def get_object(self):
        user = services.get_user(self.kwargs["username"])
        for key, value in queries.profile_stats(user).items():
            setattr(user, key, value)
        user.followed_by_me = queries.is_following(self.request.user, user)
        return user


class FollowView(APIView):
    throttle_classes = [WriteThrottle]

    @extend_schema(request=None, responses={200: FollowResultSerializer, 201: FollowResultSerializer})
    def post(self, request, username):
        created = services.follow(request.user, username)
        data = {"username": username, "following": True, "created": created}
        return Response(data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)

    @extend_schema(request=None, responses={204: None})
    def delete(self, request, username):
        services.unfollow(request.user, username)
        return Response(status=status.HTTP_204_NO_CONTENT)


class PostListView(generics.ListCreateAPIView):
    """All posts, newest first (`?author=username` for one person's), and publishing a post."""

    serializer_class = PostSerializer
    pagination_class = NewestFirst
    throttle_classes = [WriteThrottle]
    parser_classes = UPLOAD_PARSERS  # JSON, or multipart with a picture

    def get_queryset(self):
        qs = Post.objects.all()
        author = self.request.query_params.get("author")
        if author:
            qs = qs.filter(author__in=User.objects.named(author))
        return queries.posts_for(self.request.user, qs)

    def perform_create(self, serializer):
        data = serializer.validated_data
        with picture_from(data) as image:
            serializer.instance = services.create_post(self.request.user, data["text"], image=image,
                                                       image_alt=data.get("image_alt", ""))

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        self.perform_create(serializer)
        post = queries.posts_for(request.user).get(pk=serializer.instance.pk)
        return Response(self.get_serializer(post).data, status=status.HTTP_201_CREATED)


class PostDetailView(generics.RetrieveDestroyAPIView):
    serializer_class = PostSerializer
    throttle_classes = [WriteThrottle]

    def get_queryset(self):
        return queries.posts_for(self.request.user)

    @extend_schema(request=PostEditSerializer, responses=PostSerializer)
    def patch(self, request, pk):
        """Edit your post's text (`{text}`, validated as when posting); it gains `edited_at`."""
        generics.get_object_or_404(Post.objects.only("pk"), pk=pk)  # a missing post is a 404 whatever was sent
        serializer = PostEditSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        services.edit_post(request.user, pk, serializer.validated_data["text"])
        return Response(self.get_serializer(self.get_queryset().get(pk=pk)).data)

    def destroy(self, request, *args, **kwargs):
        services.delete_post(request.user, self.kwargs["pk"])
        return Response(status=status.HTTP_204_NO_CONTENT)


class CommentListView(generics.ListCreateAPIView):
    """A post's comments, oldest first, and commenting on it."""

    serializer_class = CommentSerializer
    pagination_class = OldestFirst
    throttle_classes = [WriteThrottle]

    def get_queryset(self):
        post = generics.get_object_or_404(Post.objects.only("pk"), pk=self.kwargs["pk"])
        return queries.comments_for(post)

    def perform_create(self, serializer):
        serializer.instance = services.add_comment(self.request.user, self.kwargs["pk"], serializer.validated_data["text"],
                                                   serializer.validated_data.get("parent_id"))


class CommentDetailView(APIView):
    throttle_classes = [WriteThrottle]

    @extend_schema(request=CommentEditSerializer, responses=CommentSerializer)
    def patch(self, request, pk):
        """Edit your comment's text (`{text}`, validated as when commenting); it gains `edited_at`."""
        generics.get_object_or_404(Comment.objects.only("pk"), pk=pk)  # a missing comment is a 404 whatever was sent
        serializer = CommentEditSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        comment = services.edit_comment(request.user, pk, serializer.validated_data["text"])
        return Response(CommentSerializer(queries.comments_for(comment.post_id).get(pk=pk)).data)

    @extend_schema(request=None, responses={204: None})
    def delete(self, request, pk):
        services.delete_comment(request.user, pk)
        return Response(status=status.HTTP_204_NO_CONTENT)


class LikeView(APIView):
    throttle_classes = [WriteThrottle]

    def _result(self, request, pk, code):
        data = {"post": pk, "liked": Like.objects.filter(post_id=pk, user=request.user).exists(),
                "like_count": Like.objects.filter(post_id=pk).count()}
        return Response(data, status=code)

    @extend_schema(request=None, responses={200: LikeResultSerializer, 201: LikeResultSerializer})
    def post(self, request, pk):
        created = services.like(request.user, pk)
        return self._result(request, pk, status.HTTP_201_CREATED if created else status.HTTP_200_OK)

    @extend_schema(request=None, responses={200: LikeResultSerializer})
    def delete(self, request, pk):
        services.unlike(request.user, pk)
        return self._result(request, pk, status.HTTP_200_OK)


class MuteView(APIView):
    """Mute a post (no more notifications about it for you) or unmute it."""

    throttle_classes = [WriteThrottle]

    def _result(self, request, pk, code):
        return Response({"post": pk, "muted": notifier.muted(request.user, pk)}, status=code)

    @extend_schema(request=None, responses={200: MuteResultSerializer, 201: MuteResultSerializer})
    def post(self, request, pk):
        created = services.mute_post(request.user, pk, True)
        return self._result(request, pk, status.HTTP_201_CREATED if created else status.HTTP_200_OK)

    @extend_schema(request=None, responses={200: MuteResultSerializer})
    def delete(self, request, pk):
        services.mute_post(request.user, pk, False)
        return self._result(request, pk, status.HTTP_200_OK)


class PostFollowView(APIView):
    """Follow a post (be told of new top-level comments on it) or unfollow it (kept: commenting
    later does not follow it again)."""

    throttle_classes = [WriteThrottle]

    def _result(self, request, pk, code):
        return Response({"post": pk, "following": services.follows_post(request.user, pk)}, status=code)

    @extend_schema(request=None, responses={200: PostFollowResultSerializer, 201: PostFollowResultSerializer})
    def post(self, request, pk):
        changed = services.follow_post(request.user, pk, True)
        return self._result(request, pk, status.HTTP_201_CREATED if changed else status.HTTP_200_OK)

    @extend_schema(request=None, responses={200: PostFollowResultSerializer})
    def delete(self, request, pk):
        services.follow_post(request.user, pk, False)
        return self._result(request, pk, status.HTTP_200_OK)


class HomeFeedView(generics.ListAPIView):
    """Your posts and those of the people you follow, newest first, with counts."""

    serializer_class = PostSerializer
    pagination_class = NewestFirst

    def get_queryset(self):
        return queries.home_feed(self.request.user)


class AvatarView(APIView):
    """Your avatar: PUT a picture (multipart `image`, or JSON `upload` after POST /api/uploads/);
    its centre square is stored at 48, 96 and 256 px and the old one's files are deleted. DELETE
    goes back to initials."""

    throttle_classes = [WriteThrottle]
    parser_classes = UPLOAD_PARSERS

    @extend_schema(request={"multipart/form-data": AvatarInputSerializer, "application/json": AvatarInputSerializer},
                   responses=AvatarResultSerializer)
    def put(self, request):
        serializer = AvatarInputSerializer(data=request.data, context={"request": request})
        serializer.is_valid(raise_exception=True)
        with picture_from(serializer.validated_data) as image:
            services.set_avatar(request.user, image)
        return Response({"avatar": request.user.avatar_urls})

    @extend_schema(request=None, responses={204: None})
    def delete(self, request):
        services.remove_avatar(request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class EmailView(APIView):
    """Your email address. PUT a new one: it is stored unconfirmed and a confirmation link is
    mailed to it (at most EMAIL_VERIFY_PER_HOUR an hour); digests and password resets use it once
    the link is opened. The same address again changes nothing."""

    throttle_classes = [WriteThrottle]

    @staticmethod
    def _answer(user) -> Response:
        return Response({"email": user.email, "verified": user.email_verified})

    @extend_schema(responses=EmailSerializer)
    def get(self, request):
        return self._answer(request.user)

    @extend_schema(request=EmailSerializer, responses=EmailSerializer)
    def put(self, request):
        serializer = EmailSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user = User.objects.get(pk=request.user.pk)
        refused, wait = emails.change_refused(request, user, serializer.validated_data["email"],
                                              serializer.validated_data.get("current_password", ""))
        if wait:
            raise Throttled(wait=wait, detail=refused)
        if refused:
            raise ValidationError({"current_password": [refused]})
        if serializer.validated_data["email"] != user.email:
            old, was_verified = user.email, user.email_verified
            user.email = serializer.validated_data["email"]
            user.save(update_fields=["email"])
            emails.tell_old_address(old, was_verified, user)
            if user.email:
                emails.send_verification(user)
        return self._answer(user)


DETAIL = {"type": "object", "properties": {"detail": {"type": "string"}}, "required": ["detail"]}


class EmailVerifyView(APIView):
    """Mail the confirmation link again: 202, or 409 with nothing to confirm, or 429 with Retry-After."""

    throttle_classes = [WriteThrottle]

    @extend_schema(request=None, responses={
        202: OpenApiResponse(DETAIL, description="The link was mailed."),
        409: OpenApiResponse(DETAIL, description="No address, or it is confirmed already."),
    })
    def post(self, request):
        user = request.user
        if not user.email or user.email_verified_at:
            return Response({"detail": "There is no unconfirmed address to confirm."}, status=status.HTTP_409_CONFLICT)
        wait = emails.send_verification(user)
        if wait:
            response = Response({"detail": f"Too many confirmation emails for now: try again in {wait} seconds."},
                                status=status.HTTP_429_TOO_MANY_REQUESTS)
            response["Retry-After"] = str(wait)
            return response
        return Response({"detail": f"A link was mailed to {user.email}."}, status=status.HTTP_202_ACCEPTED)


class DirectUploadsUnavailable(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "Direct uploads need S3 storage (MEDIA_BUCKET); send the picture with the request instead."


class UploadView(APIView):
    """A presigned POST for one picture up to 10 MB, straight to storage (past API Gateway's
    payload limit). Send the file there, then hand its `key` to POST /api/posts/ or PUT
    /api/users/me/avatar/ as `upload` within a few minutes: it is checked like a direct upload."""

    throttle_classes = [WriteThrottle]

    @extend_schema(request=UploadRequestSerializer, responses={
        201: UploadSerializer,
        409: OpenApiResponse({"type": "object", "properties": {"detail": {"type": "string"}}, "required": ["detail"]},
                             description="Pictures are stored on this server's disk (no MEDIA_BUCKET): send the file "
                             "with the request instead."),
    })
    def post(self, request):
        serializer = UploadRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        if not media.direct_uploads_available():
            raise DirectUploadsUnavailable()
        upload = media.presigned_upload(request.user.pk, serializer.validated_data["content_type"])
        return Response(UploadSerializer(upload).data, status=status.HTTP_201_CREATED)
class SearchView(APIView):
    """Find people or posts by their words, a cursor page at a time (feed.search)."""

    RESULTS = {"people": (search.people, UserSummarySerializer), "posts": (search.posts, PostSerializer)}

    @extend_schema(operation_id="search", parameters=[SearchQuerySerializer], responses=SearchPageSerializer)
    def get(self, request):
        """`?q=TEXT&type=people|posts`: people by any word of their username or display name (an exact
        username first, then usernames starting with TEXT, then the most followed), or posts by their
        words (most relevant, then newest). Pages of 20 (`page_size` up to 100); follow `next`."""
        query = SearchQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        data = query.validated_data
        find, serializer = self.RESULTS[data["type"]]
        page = find(request.user, data["q"], after=search.decode_cursor(data.get("cursor")),
                    size=data.get("page_size", search.PAGE_SIZE))
        next_url = page.next_cursor and replace_query_param(request.build_absolute_uri(), "cursor", page.next_cursor)
        return Response({"next": next_url, "previous": None,
                         "results": serializer(page.items, many=True, context={"request": request}).data})
