"""The notifications page, its mark-read forms, and the notification settings page."""
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.urls import NoReverseMatch, reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from config.throttles import WriteThrottle, throttle_page

from . import groups, services
from .models import MUTABLE_KINDS, Kind, Notification

PAGE_SIZE = 30


@login_required
def notifications_page(request):
    """The list, newest first. Opening it marks everything seen (the badge clears in every tab);
    items stay unread until opened."""
    services.mark_seen(request.user)
    qs = Notification.objects.for_user(request.user).select_related("actor").order_by("-seq")
    before = request.GET.get("before", "")
    if before.isdigit():
        qs = qs.filter(seq__lt=int(before))
    items = list(qs[: PAGE_SIZE + 1])
    next_before = items[PAGE_SIZE - 1].seq if len(items) > PAGE_SIZE else None
    return render(request, "notifier/notifications.html", {
        "notifications": groups.attach_actors(items[:PAGE_SIZE]), "next_before": next_before,
    })


@login_required
@require_POST
def mark_read(request, pk):
    """Mark one read; with ?open=1 go on to what it is about (the notification's own URL). One that
    is gone (what it was about was deleted while the page was open) says so on the list."""
    try:
        services.mark_read(request.user, pk)
    except Notification.DoesNotExist:
        messages.info(request, "That notification is gone: what it was about has been deleted.")
        return redirect("notifications")
    if request.POST.get("open"):
        url = Notification.objects.filter(pk=pk, recipient=request.user).values_list("url", flat=True).first()
        if url and url_has_allowed_host_and_scheme(url, allowed_hosts=None):
            return redirect(url)
    return redirect("notifications")


@login_required
@require_POST
def mark_all_read(request):
    services.mark_all_read(request.user)
    return redirect("notifications")


def _post_url(post_ref: int) -> str:
    # notifier does not import feed: it knows a post only by its id and the page's URL name.
    try:
        return reverse("post-detail", args=[post_ref])
    except NoReverseMatch:
        return ""


def _settings_context(request, muted_kinds, error=""):
    prefs = services.preferences(request.user)
    return {
        "kinds": [(value, Kind(value).label, value in muted_kinds) for value in MUTABLE_KINDS],
        "muted_posts": [{"id": ref, "url": _post_url(ref)} for ref in prefs["muted_posts"]],
        "error": error,
    }


@login_required
@throttle_page(WriteThrottle)
def notification_settings(request):
    """What the user does not want to be told about: kinds (checkboxes) and muted posts (each
    with an Unmute button). Takes effect for what happens next; what is stored stays."""
    if request.method != "POST":
        return render(request, "notifier/settings.html",
                      _settings_context(request, services.preferences(request.user)["muted_kinds"]))
    if "unmute_post" in request.POST:
        post_ref = request.POST["unmute_post"]
        if not post_ref.isdigit() or len(post_ref) > 18:
            context = _settings_context(request, services.preferences(request.user)["muted_kinds"],
                                        error="That is not a post you muted.")
            return render(request, "notifier/settings.html", context, status=400)
        services.mute_post(request.user, int(post_ref), muted=False)
        messages.success(request, "Unmuted: you will be notified about that post again.")
        return redirect("notification-settings")
    kinds = request.POST.getlist("muted_kinds")
    unknown = sorted({k for k in kinds if k not in Kind.values})
    if unknown:
        valid = [k for k in kinds if k in Kind.values]
        context = _settings_context(request, valid, error=f"Unknown kind: {', '.join(unknown)[:100]}.")
        return render(request, "notifier/settings.html", context, status=400)
    services.set_preferences(request.user, muted_kinds=kinds)
    messages.success(request, "Notification settings saved.")
    return redirect("notification-settings")
