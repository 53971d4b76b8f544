"""The notifications page, its mark-read forms, opening one from a device notification, the
notification settings page, and the service worker script."""
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.templatetags.static import static
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from config.throttles import WriteByGetThrottle, WriteThrottle, throttle_page

from . import forms, groups, inbox, services
from .models import Digest, Kind, MutedPost, Notification, NotificationState, WebPushSubscription

PAGE_SIZE = 30
# Opening a notification whose post or comment was deleted meanwhile (its notification went with it).
GONE = "This post was deleted (or the comment you were told about was): there is nothing left to open."


def _htmx(request) -> bool:
    return request.headers.get("HX-Request") == "true"


@login_required
def notifications_page(request):
    """The list, newest first, under Today / This week / Earlier, in tabs (`?filter=mentions`,
    `?filter=unread`). Opening it marks everything seen (the badge clears in every tab); items
    stay unread until opened. Older pages come by keyset (`?before=<seq>`): a plain link, which
    htmx follows when it scrolls into view and appends (the rows alone, `?section=` naming the
    section the list above ends in, so its heading is not repeated)."""
    more = _htmx(request) and "before" in request.GET
    if not more:
        services.mark_seen(request.user)
    tab = inbox.filter_name(request.GET.get("filter"))
    qs = inbox.filtered(Notification.objects.for_user(request.user), tab).select_related("event__actor").order_by("-seq")
    before = request.GET.get("before", "")
    if before.isdigit() and len(before) <= 18:
        qs = qs.filter(seq__lt=int(before))
    items = list(qs[: PAGE_SIZE + 1])
    next_before = items[PAGE_SIZE - 1].seq if len(items) > PAGE_SIZE else None
    items = inbox.with_sections(groups.attach_actors(items[:PAGE_SIZE]),
                                previous=request.GET.get("section", "") if more else "")
    context = dict(notifications=items, next_before=next_before, tab=tab, filters=inbox.FILTERS,
                   **inbox.page_queries(tab, next_before, items[-1].section.key if items else ""))
    if more:
        return render(request, "notifier/_rows.html", context)
    return render(request, "notifier/notifications.html", {**context, "kind_icons": inbox.KIND_LABELS})


def _one_row(request, pk):
    """One row again after it changed (htmx): same markup as in the list."""
    item = Notification.objects.for_user(request.user).select_related("event__actor").filter(pk=pk).first()
    if item is None:
        return HttpResponse(status=204)
    return render(request, "notifier/_rows.html",
                  {"notifications": inbox.with_sections(groups.attach_actors([item])), "one": True})


@login_required
@require_POST
def mark_read(request, pk):
    """Mark one read; with ?open=1 go on to what it is about (the notification's own URL). One that
    is gone (what it was about was deleted while the page was open) says so on the list."""
    try:
        services.mark_read(request.user, pk)
    except Notification.DoesNotExist:
        messages.info(request, GONE)
        return _to_list(request)
    if request.POST.get("open"):
        url = Notification.objects.filter(pk=pk, recipient=request.user).values_list("event__url", flat=True).first()
        if url and url_has_allowed_host_and_scheme(url, allowed_hosts=None):
            return redirect(url)
    if _htmx(request):
        return _one_row(request, pk)
    return redirect("notifications")


def _to_list(request):
    """Back to the list: a redirect, or for htmx (a row's button) the whole page, not the list
    swapped into the row."""
    if _htmx(request):
        response = HttpResponse(status=204)
        response["HX-Redirect"] = reverse("notifications")
        return response
    return redirect("notifications")


@login_required
@require_POST
@throttle_page(WriteThrottle)
def mark_unread(request, pk):
    """Keep one as new (own only: 404 otherwise); htmx gets the row back, a form the list."""
    try:
        services.mark_unread(request.user, pk)
    except Notification.DoesNotExist:
        raise Http404("No such notification.") from None
    if _htmx(request):
        return _one_row(request, pk)
    return redirect("notifications")


@login_required
@require_POST
def mark_all_read(request):
    services.mark_all_read(request.user)
    return redirect("notifications")


def _settings_context(request, posted=None, errors=()):
    """The matrix (stored, or a refused submission's valid parts), the digest's cadence, the email
    address it goes to, and the muted posts."""
    state = NotificationState.of(request.user)
    digest = posted.get("email_digest") if posted else None
    return {
        "columns": [heading for _, heading, _ in forms.COLUMNS],
        "rows": forms.matrix(state, posted),
        "digests": Digest.choices,
        "digest": digest if digest in Digest.values else state.email_digest,
        "email": request.user.email,
        # A digest goes only to a confirmed address (the account's `email_verified_at`, set by the
        # link the profile page sends; an account model without it has nothing to confirm).
        "email_confirmed": getattr(request.user, "email_verified_at", True) is not None,
        # This user's devices (by the endpoint's hash): the switch is on only where the browser's
        # subscription is one of them, not where it still carries pushes for another account.
        "push_endpoints": list(WebPushSubscription.objects.filter(user=request.user)
                               .values_list("endpoint_hash", flat=True)),
        # Ids: the page shows each post's author and start (feed's `posts_by_id`, one query).
        "muted_posts": list(MutedPost.objects.filter(user=request.user).order_by("post_ref")
                            .values_list("post_ref", flat=True)),
        "errors": list(errors),
    }


def _posted(request) -> dict:
    """The valid parts of a submission, to show again beside its errors."""
    return {**{name: [k for k in request.POST.getlist(name) if k in Kind.values] for name, _, _ in forms.COLUMNS},
            "email_digest": request.POST.get("email_digest", "")}


@login_required
@throttle_page(WriteThrottle)
def notification_settings(request):
    """Where each kind of notification reaches the user (the matrix: in-app, Web Push, email
    digest), how often the digest comes, this device's push switch (settings.js) and the muted posts
    (each with an Unmute button). Takes effect for what happens next; what is stored stays."""
    if request.method != "POST":
        return render(request, "notifier/settings.html", _settings_context(request))
    if "unmute_post" in request.POST:
        post_ref = request.POST["unmute_post"]
        if not post_ref.isdigit() or len(post_ref) > 18:
            context = _settings_context(request, errors=["That is not a post you muted."])
            return render(request, "notifier/settings.html", context, status=400)
        services.mute_post(request.user, int(post_ref), muted=False)
        messages.success(request, "Unmuted: you will be notified about that post again.")
        return redirect("notification-settings")
    form = forms.ChannelMatrixForm(request.POST)
    if not form.is_valid():
        errors = [str(e)[:200] for field_errors in form.errors.values() for e in field_errors]
        context = _settings_context(request, posted=_posted(request), errors=errors)
        return render(request, "notifier/settings.html", context, status=400)
    services.set_preferences(request.user, **form.preferences())
    messages.success(request, "Notification settings saved.")
    return redirect("notification-settings")


@login_required
@throttle_page(WriteByGetThrottle, methods=("GET",))
def open_notification(request, pk):
    """GET: mark one of the user's notifications read and go on to what it is about. For the
    service worker's notification click, which cannot send a CSRF token (GitHub marks read on visit
    the same way). Marking read is the only effect, and the session cookie is SameSite=Lax: another
    site can at most send the user here by a link, which is what a click does. Another user's
    notification, or one whose post was deleted, is a 404 (nobody learns which); the redirect goes
    only to a same-site URL."""
    try:
        services.mark_read(request.user, pk)
    except Notification.DoesNotExist:
        return render(request, "notifier/open_gone.html", status=404)
    url = Notification.objects.filter(pk=pk, recipient=request.user).values_list("event__url", flat=True).first()
    if url and url_has_allowed_host_and_scheme(url, allowed_hosts={request.get_host()},
                                               require_https=request.is_secure()):
        return redirect(url)
    return redirect("notifications")


def service_worker(request):
    """/sw.js: the service worker, at the site's root so its scope is every page (a worker's
    scope cannot be above its script's folder). Always revalidated (no-cache), so a new version
    reaches browsers at their next visit rather than after a day in the HTTP cache."""
    response = render(request, "notifier/sw.js", {"site_icon": static("feed/apple-touch-icon.png")},
                      content_type="application/javascript; charset=utf-8")
    response["Cache-Control"] = "no-cache"
    response["Service-Worker-Allowed"] = request.META.get("SCRIPT_NAME", "").rstrip("/") + "/"
    return response
