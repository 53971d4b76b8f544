"""Rate limits for endpoints that write or hand out credentials (rates: settings.REST_FRAMEWORK)."""
from rest_framework.throttling import AnonRateThrottle, UserRateThrottle


class WriteThrottle(UserRateThrottle):
    """Per-user limit on writes; reads are not counted."""

    scope = "write"

    def allow_request(self, request, view):
        if request.method in ("GET", "HEAD", "OPTIONS"):
            return True
        return super().allow_request(request, view)


class SignupThrottle(AnonRateThrottle):
    scope = "signup"


class LoginThrottle(AnonRateThrottle):
    scope = "login"


class CredentialsThrottle(UserRateThrottle):
    scope = "credentials"
