"""Web Push API: the key browsers subscribe with, and each browser's subscription (its own only).

    GET    /api/push/config/          {"vapid_public_key": "<base64url point>" | null}
    POST   /api/push/subscriptions/   PushSubscription JSON {endpoint, keys: {p256dh, auth}}
                                      -> 201 new, 200 known (same endpoint: one row), 400 invalid,
                                         404 when Web Push is off on this server
    DELETE /api/push/subscriptions/   {endpoint} (or ?endpoint=) -> 204 (deletes the caller's own;
                                      anyone else's stays)

Validation and storage live in notifier.webpush.subscriptions; nothing here imports a crypto
library until a subscription's key is checked.
"""
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.response import Response
from rest_framework.views import APIView

from config.throttles import WriteThrottle

from . import webpush
from .webpush import subscriptions

OFF = "Web Push is off on this server (no VAPID keys are configured)."


class PushConfigSerializer(serializers.Serializer):
    vapid_public_key = serializers.CharField(
        allow_null=True, help_text="The applicationServerKey to subscribe with (base64url uncompressed P-256 "
                                   "point), or null when Web Push is off on this server.")


class PushKeysSerializer(serializers.Serializer):
    p256dh = serializers.CharField(max_length=200, help_text="base64url uncompressed P-256 public key")
    auth = serializers.CharField(max_length=64, help_text="base64url 16-byte authentication secret")

    def validate_p256dh(self, value):
        problem = subscriptions.p256dh_error(value)
        if problem:
            raise serializers.ValidationError(problem)
        return value

    def validate_auth(self, value):
        problem = subscriptions.auth_error(value)
        if problem:
            raise serializers.ValidationError(problem)
        return value


class PushSubscriptionSerializer(serializers.Serializer):
    """The browser's PushSubscription.toJSON(); other fields (expirationTime) are ignored."""

    endpoint = serializers.CharField(max_length=subscriptions.MAX_ENDPOINT, trim_whitespace=False)
    keys = PushKeysSerializer()

    def validate_endpoint(self, value):
        problem = subscriptions.endpoint_error(value)
        if problem:
            raise serializers.ValidationError(problem)
        return value


class PushEndpointSerializer(serializers.Serializer):
    endpoint = serializers.CharField(
        max_length=subscriptions.MAX_ENDPOINT, trim_whitespace=False,
        help_text="The subscription's endpoint: a JSON body {endpoint} (what the pages send) or this query "
                  "parameter (OpenAPI 3.0 cannot describe a DELETE body).")


class StoredSubscriptionSerializer(serializers.Serializer):
    endpoint = serializers.CharField()
    created_at = serializers.DateTimeField()


class PushConfigView(APIView):
    @extend_schema(responses=PushConfigSerializer)
    def get(self, request):
        return Response({"vapid_public_key": webpush.public_key()})


class PushSubscriptionsView(APIView):
    throttle_classes = [WriteThrottle]

    @extend_schema(request=PushSubscriptionSerializer,
                   responses={201: StoredSubscriptionSerializer, 200: StoredSubscriptionSerializer,
                              404: OpenApiResponse(description=OFF)})
    def post(self, request):
        if not webpush.enabled():
            raise NotFound(OFF)
        body = PushSubscriptionSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        sub, created = subscriptions.subscribe(
            request.user, endpoint=data["endpoint"], p256dh=data["keys"]["p256dh"], auth=data["keys"]["auth"],
            user_agent=request.headers.get("User-Agent", ""))
        return Response({"endpoint": sub.endpoint, "created_at": sub.created_at}, status=201 if created else 200)

    @extend_schema(parameters=[PushEndpointSerializer], request=None, responses={204: None})
    def delete(self, request):
        """Idempotent: 204 whether or not the caller had it (a browser may unsubscribe after the
        server already dropped an expired subscription); another user's subscription stays."""
        data = request.data if isinstance(request.data, dict) and "endpoint" in request.data else request.query_params
        body = PushEndpointSerializer(data={"endpoint": data.get("endpoint")} if "endpoint" in data else {})
        body.is_valid(raise_exception=True)
        subscriptions.unsubscribe(request.user, body.validated_data["endpoint"])
        return Response(status=204)
