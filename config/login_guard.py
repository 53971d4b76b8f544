"""Failed log-ins, limited per username and per client address, on every log-in path.

The log-in page and `POST /api/token/` share these counters (limits.counters: one store for every
process, like the API's throttles), so guessing passwords through one does not reset the other,
and four workers or a hundred Lambda containers do not get four or a hundred times the guesses.

An attempt takes its slots before the password is checked (`begin`: one atomic increment per
counter), and is refused when that passes a limit. Checking first and counting after would let
every attempt that arrives while the others are still hashing passwords through: 60 parallel
guesses would all be checked. A slot that was taken stays taken (a failure counts) unless the
log-in succeeds (`succeeded`: the account's count is cleared and the address gets its slot back).
So at most LIMIT password checks run per window, however many arrive at once.

Past a limit every attempt is refused with 429 and `Retry-After` until the window ends, the right
password included: a guesser must not learn which guess was right.

Limits (settings): LOGIN_FAILURES_PER_USERNAME in LOGIN_FAILURE_WINDOW seconds for one account
(whoever tries), LOGIN_FAILURES_PER_ADDRESS for one client address (whichever accounts). Windows
are fixed: they start at a counter's first attempt and last LOGIN_FAILURE_WINDOW seconds.

Log-in paths that do not call `begin` (the admin's) are counted by the `user_login_failed` signal:
their failures use up the same slots, though those paths do not refuse by themselves.
"""
import hashlib
import time

from django.conf import settings
from django.contrib.auth.signals import user_login_failed
from django.dispatch import receiver
from rest_framework.settings import api_settings
from rest_framework.throttling import BaseThrottle

from limits import counters

MESSAGE = "Too many failed log-ins for this account or from this address. Try again in {wait} seconds."
_TAKEN = "_login_guard_slots"  # on the HttpRequest: the slots `begin` took for it


def _address(request) -> str:
    # The same client identity as the API's throttles (X-Forwarded-For with NUM_PROXIES, else REMOTE_ADDR).
    return BaseThrottle().get_ident(request) if api_settings.NUM_PROXIES is not None else request.META.get("REMOTE_ADDR", "")


def _keys(request, username: str) -> list[tuple[str, int]]:
    name = hashlib.sha256((username or "").strip().lower().encode()).hexdigest()[:32]  # any length, any bytes
    return [
        (f"login-failures:user:{name}", settings.LOGIN_FAILURES_PER_USERNAME),
        (f"login-failures:addr:{_address(request)}", settings.LOGIN_FAILURES_PER_ADDRESS),
    ]


def _http(request):
    return getattr(request, "_request", request)  # DRF's Request wraps Django's HttpRequest


def begin(request, username: str) -> int:
    """Take this attempt's slots (account, then address) before its password is checked.

    Returns 0 when the password may be checked, else the seconds until it may be tried again; a
    refused attempt gives back whatever it took, so refusals do not count."""
    now = time.time()
    taken = []
    for key, limit in _keys(request, username):
        slot = counters.hit(key, settings.LOGIN_FAILURE_WINDOW, now=now)
        taken.append((key, slot))
        if slot.count > limit:
            for key_taken, slot_taken in taken:
                counters.release(key_taken, slot_taken)
            return int(slot.wait(now)) + 1
    setattr(_http(request), _TAKEN, taken)
    return 0


def succeeded(request, username: str) -> None:
    """The password was right: clear the account's count and give the address its slot back
    (logging in to one's own account costs no guesses, nor buys any)."""
    user_key, address_key = (key for key, _ in _keys(request, username))
    counters.clear(user_key)
    for key, slot in getattr(_http(request), _TAKEN, []):
        if key == address_key:
            counters.release(key, slot)
    setattr(_http(request), _TAKEN, [])


@receiver(user_login_failed, dispatch_uid="config.login_guard.count")
def _count_failure(sender, credentials, request=None, **kwargs):
    # An attempt that went through `begin` was counted there; any other path is counted now.
    if request is not None and not hasattr(_http(request), _TAKEN):
        for key, _ in _keys(request, credentials.get("username", "")):
            counters.hit(key, settings.LOGIN_FAILURE_WINDOW)
