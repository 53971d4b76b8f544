"""Failed log-ins, limited per username and per client address, on every log-in path.

The log-in page and `POST /api/token/` share these counters (Django's cache, like the API's
throttles), so guessing passwords through one does not reset the other. Past a limit, every
attempt is refused with 429 and `Retry-After` until the window ends, the right password included:
a guesser must not learn which guess was right. A successful log-in clears its username's count.

Limits (settings): LOGIN_FAILURES_PER_USERNAME in LOGIN_FAILURE_WINDOW seconds for one account
(whoever tries), LOGIN_FAILURES_PER_ADDRESS for one client address (whichever accounts).
"""
import hashlib
import time

from django.conf import settings
from django.contrib.auth.signals import user_login_failed
from django.core.cache import cache
from django.dispatch import receiver
from rest_framework.settings import api_settings
from rest_framework.throttling import BaseThrottle

MESSAGE = "Too many failed log-ins for this account or from this address. Try again in {wait} seconds."


def _address(request) -> str:
    # The same client identity as the API's throttles (X-Forwarded-For with NUM_PROXIES, else REMOTE_ADDR).
    return BaseThrottle().get_ident(request) if api_settings.NUM_PROXIES is not None else request.META.get("REMOTE_ADDR", "")


def _keys(request, username: str) -> list[tuple[str, int]]:
    name = hashlib.sha256((username or "").strip().lower().encode()).hexdigest()[:32]  # any length, any bytes
    return [
        (f"login-failures:user:{name}", settings.LOGIN_FAILURES_PER_USERNAME),
        (f"login-failures:addr:{_address(request)}", settings.LOGIN_FAILURES_PER_ADDRESS),
    ]


def wait_seconds(request, username: str) -> int:
    """Seconds until this username / address may try again; 0 when they may now."""
    now = time.time()
    waits = [
        int(ends - now) + 1
        for key, limit in _keys(request, username)
        for count, ends in [cache.get(key) or (0, 0)]
        if count >= limit and ends > now
    ]
    return max(waits, default=0)


def failed(request, username: str) -> None:
    now = time.time()
    for key, _ in _keys(request, username):
        count, ends = cache.get(key) or (0, 0)
        if ends <= now:
            count, ends = 0, now + settings.LOGIN_FAILURE_WINDOW
        cache.set(key, (count + 1, ends), timeout=int(ends - now) + 1)


def succeeded(request, username: str) -> None:
    cache.delete(_keys(request, username)[0][0])


@receiver(user_login_failed, dispatch_uid="config.login_guard.count")
def _count_failure(sender, credentials, request=None, **kwargs):
    if request is not None:
        failed(request, credentials.get("username", ""))
