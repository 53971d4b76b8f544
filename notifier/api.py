"""Notification API: a user only ever sees or changes their own notifications."""
import hashlib

from django.utils.cache import patch_cache_control, patch_vary_headers
from django.utils.http import parse_etags, urlencode
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import generics
from rest_framework.response import Response
from rest_framework.views import APIView

from config.pagination import IntegerCursorPagination
from config.throttles import CredentialsThrottle, WriteThrottle

from . import groups, inbox, live_clients, services
from .aws import issuer as credentials
from .models import Notification, NotificationState
from .serializers import (
    ListQuerySerializer,
    NotificationSerializer,
    PreferencesSerializer,
    ReadResultSerializer,
    SeenResultSerializer,
    UnreadCountSerializer,
    UnreadResultSerializer,
)

CATCH_UP_LIMIT = 100


class NewestFirst(IntegerCursorPagination):
    ordering = "-seq"


@extend_schema(parameters=[ListQuerySerializer])
class NotificationListView(generics.ListAPIView):
    serializer_class = NotificationSerializer
    pagination_class = NewestFirst

    def get_queryset(self):
        query = ListQuerySerializer(data=self.request.query_params)
        query.is_valid(raise_exception=True)
        self.query = query.validated_data
        qs = Notification.objects.for_user(self.request.user).select_related("event__actor")
        if self.query["unread"]:
            qs = qs.unread()
        return inbox.filtered(qs, self.query["filter"])

    def paginate_queryset(self, queryset):
        page = super().paginate_queryset(queryset)
        return groups.attach_actors(page) if page is not None else None

    def list(self, request, *args, **kwargs):
        """Newest first; with ?after_seq=N, the catch-up: items whose seq is above N, oldest first
        (a bumped group is there again, with its new seq: clients replace it by id). A catch-up
        from the newest seq is the state row alone, with an ETag (see _nothing_new)."""
        self.paginator.get_page_size(request)  # a bad page_size is a 400 on the catch-up path too
        qs = self.get_queryset()
        if "after_seq" not in self.query:  # ListModelMixin.list, without building the queryset twice
            page = self.paginate_queryset(qs)
            return self.get_paginated_response(self.get_serializer(page, many=True).data)
        after = self.query["after_seq"]
        state = NotificationState.of(request.user)
        if after >= state.last_seq:
            return _nothing_new(request, state)
        items = list(qs.filter(seq__gt=after).order_by("seq")[: CATCH_UP_LIMIT + 1])
        more = len(items) > CATCH_UP_LIMIT
        items = groups.attach_actors(items[:CATCH_UP_LIMIT])
        state = NotificationState.of(request.user)  # again, after the items: counts at least as new as they are
        next_url = None
        if more:
            params = {**request.query_params.dict(), "after_seq": items[-1].seq}
            next_url = request.build_absolute_uri(f"{request.path}?{urlencode(params)}")
        return _private(Response(_catch_up_page(state, NotificationSerializer(items, many=True).data, next_url)))


def _catch_up_page(state, results, next_url=None) -> dict:
    return {
        "results": results,
        "next": next_url,
        "last_seq": state.last_seq,
        "unread_count": state.unread_count,
        "unseen_count": state.unseen_count,
    }


def catch_up_tag(request, state) -> str:
    """The ETag of a catch-up that has nothing to list: a digest of the user, the query and every
    field of the state row that could change the answer (new or bumped items move `last_seq`;
    reading, opening the bell and withdrawals move the watermarks or the counts)."""
    parts = (state.user_id, request.get_full_path(), state.last_seq, state.read_seq, state.seen_seq,
             state.unread_count, state.unseen_count)
    return 'W/"%s"' % hashlib.blake2b(repr(parts).encode(), digest_size=12).hexdigest()


def _nothing_new(request, state) -> Response:
    """The catch-up when the client is up to date with `last_seq`: answered from the state row
    alone (one primary-key read), and 304 when the client's If-None-Match holds the same state.

    Open pages ask this every half minute and on every reconnect, so the answer that is almost
    always the same must not touch the notifications table. (A page that asks after the newest
    seq only ever gets counts: the list is empty by definition.)"""
    tag = catch_up_tag(request, state)
    offered = {t.removeprefix("W/") for t in parse_etags(request.headers.get("If-None-Match", ""))}
    if tag.removeprefix("W/") in offered or "*" in offered:
        response = Response(status=304)
    else:
        response = Response(_catch_up_page(state, []))
    response["ETag"] = tag
    return _private(response)


def _private(response: Response) -> Response:
    """Per user, and always asked again (a shared cache must not keep it; the browser revalidates)."""
    patch_cache_control(response, private=True, no_cache=True)
    patch_vary_headers(response, ["Authorization", "Cookie"])
    return response


class UnreadCountView(APIView):
    @extend_schema(responses=UnreadCountSerializer)
    def get(self, request):
        state = NotificationState.of(request.user)
        return Response({"unread_count": state.unread_count, "unseen_count": state.unseen_count})


class MarkSeenView(APIView):
    """The user opened the bell: everything is seen (the badge clears in every tab); items stay
    unread until opened."""

    throttle_classes = [WriteThrottle]

    @extend_schema(request=None, responses=SeenResultSerializer)
    def post(self, request):
        return Response({"unseen_count": services.mark_seen(request.user)})


class PreferencesView(APIView):
    throttle_classes = [WriteThrottle]

    def get_throttles(self):
        return [] if self.request.method == "GET" else super().get_throttles()

    @extend_schema(responses=PreferencesSerializer)
    def get(self, request):
        return Response(services.preferences(request.user))

    @extend_schema(request=PreferencesSerializer, responses=PreferencesSerializer)
    def put(self, request):
        body = PreferencesSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        fields = dict(body.validated_data)
        if "channels" in fields:
            fields["channels_on"] = fields.pop("channels")
        return Response(services.set_preferences(request.user, **fields))


class MarkReadView(APIView):
    throttle_classes = [WriteThrottle]

    @extend_schema(request=None, responses=ReadResultSerializer)
    def post(self, request, pk):
        unread = services.mark_read(request.user, pk)
        return Response({"marked": 1, "unread_count": unread})


class MarkUnreadView(APIView):
    """Keep one as new: it is unread again (own only: 404 for anyone else's), in every tab."""

    throttle_classes = [WriteThrottle]

    @extend_schema(request=None, responses=UnreadResultSerializer)
    def post(self, request, pk):
        return Response({"unread_count": services.mark_unread(request.user, pk)})


class MarkAllReadView(APIView):
    throttle_classes = [WriteThrottle]

    @extend_schema(request=None, responses=ReadResultSerializer)
    def post(self, request):
        changed = services.mark_all_read(request.user)
        return Response({"marked": changed, "unread_count": 0})



class CredentialsView(APIView):
    """Short-lived credentials for the caller's own live connection (see notifier.aws.issuer)."""

    throttle_classes = [CredentialsThrottle]

    @extend_schema(request=None, responses={200: OpenApiTypes.OBJECT, 503: OpenApiTypes.OBJECT})
    def post(self, request):
        try:
            return Response(live_clients.vend(request.user))
        except credentials.CredentialsUnavailable as exc:
            return Response({"detail": str(exc)}, status=503)
