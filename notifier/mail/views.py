"""Pages reached from outside a log-in: the digest's unsubscribe URL and SES's SNS endpoint."""
from django.http import Http404
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_POST

from . import unsubscribe as tokens


@csrf_exempt
@require_http_methods(["GET", "HEAD", "POST"])
def unsubscribe(request, token):
    """GET: a page with the button (nothing changes: mail scanners prefetch links). POST (the
    button, or a mail client's RFC 8058 one-click `List-Unsubscribe=One-Click`): the digest goes
    off; 200 either way. A token that is not ours: 404."""
    user_id = tokens.user_id_of(token)
    if user_id is None:
        raise Http404("This unsubscribe link is not valid.")
    from django.contrib.auth import get_user_model

    if not get_user_model().objects.filter(pk=user_id).exists():
        raise Http404("This account no longer exists.")
    if request.method == "POST":
        from ..services import set_preferences

        set_preferences(user_id, email_digest="off")
        return render(request, "notifier/unsubscribe.html", {"done": True})
    return render(request, "notifier/unsubscribe.html", {"done": False})


@csrf_exempt
@require_POST
def ses_events(request):
    """Amazon SES bounce and complaint notifications, posted by SNS (notifier.mail.bounces)."""
    from .bounces import SesEventsView  # django-ses and boto3: only when SNS posts

    return SesEventsView.as_view()(request)
