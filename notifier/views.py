"""The notifications page and its mark-read forms."""
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from . import groups, services
from .models import Notification

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
    """Mark one read; with ?open=1 go on to what it is about (the notification's own URL)."""
    try:
        services.mark_read(request.user, pk)
    except Notification.DoesNotExist:
        raise Http404("No such notification.") from None
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
