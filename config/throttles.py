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


def throttle_page(*throttle_classes):
    """The API's throttles on a page's POST, so a form and its API endpoint share one limit (the
    same scope, the same counters): 429 with Retry-After and a page that says when to come back."""
    import functools
    import math

    from django.shortcuts import render

    def decorator(view):
        @functools.wraps(view)
        def wrapped(request, *args, **kwargs):
            if request.method == "POST":
                waits = [t.wait() or 1 for t in (cls() for cls in throttle_classes) if not t.allow_request(request, None)]
                if waits:
                    wait = math.ceil(max(waits))
                    response = render(request, "429.html", {"wait": wait}, status=429)
                    response["Retry-After"] = str(wait)
                    return response
            return view(request, *args, **kwargs)

        return wrapped

    return decorator
