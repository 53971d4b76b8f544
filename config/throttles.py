"""Rate limits for endpoints that write or hand out credentials (rates: settings.REST_FRAMEWORK).

They count in limits.counters, shared by every process and atomic, not in DRF's per-process
cache history: with four workers (or many Lambda containers) a rate of 30/min is 30 a minute, not
30 per process, and parallel requests cannot all read "29" and pass. Windows are fixed: one
starts at a key's first request and lasts the rate's period (a minute for "30/min"); a refused
request answers 429 with Retry-After, the seconds until its window ends.
"""
from rest_framework.throttling import AnonRateThrottle, UserRateThrottle

from limits import counters


class SharedCounting:
    """Counting for DRF's SimpleRateThrottle family (same scopes, rates and cache keys): one
    atomic hit of a shared counter per request instead of a cached list of timestamps."""

    hit = None

    def allow_request(self, request, view):
        if self.rate is None:
            return True
        self.key = self.get_cache_key(request, view)
        if self.key is None:
            return True
        self.hit = counters.hit(self.key, self.duration, now=self.timer())
        return self.hit.count <= self.num_requests

    def wait(self):
        """Seconds until the window ends (DRF sends it as Retry-After); None if nothing counted."""
        return None if self.hit is None else self.hit.wait(self.timer())


class WriteThrottle(SharedCounting, UserRateThrottle):
    """Per-user limit on writes; reads are not counted."""

    scope = "write"

    def allow_request(self, request, view):
        if request.method in ("GET", "HEAD", "OPTIONS"):
            return True
        return super().allow_request(request, view)


class SignupThrottle(SharedCounting, AnonRateThrottle):
    scope = "signup"


class LoginThrottle(SharedCounting, AnonRateThrottle):
    scope = "login"


class CredentialsThrottle(SharedCounting, UserRateThrottle):
    scope = "credentials"


class PasswordResetThrottle(SharedCounting, AnonRateThrottle):
    """"Forgot password" requests per client address: each may send a mail."""

    scope = "password_reset"


class WriteByGetThrottle(SharedCounting, UserRateThrottle):
    """The write limit (same scope and counters as WriteThrottle) for a GET that writes: opening
    a notification from a device notification marks it read."""

    scope = "write"


def throttle_page(*throttle_classes, methods=("POST",)):
    """The API's throttles on a page's POST (or `methods`), so a form and its API endpoint share
    one limit (the same scope, the same counters): 429 with Retry-After and a page that says when
    to come back."""
    import functools
    import math

    from django.shortcuts import render

    def decorator(view):
        @functools.wraps(view)
        def wrapped(request, *args, **kwargs):
            if request.method in methods:
                waits = [t.wait() or 1 for t in (cls() for cls in throttle_classes) if not t.allow_request(request, None)]
                if waits:
                    wait = math.ceil(max(waits))
                    response = render(request, "429.html", {"wait": wait}, status=429)
                    response["Retry-After"] = str(wait)
                    return response
            return view(request, *args, **kwargs)

        return wrapped

    return decorator
