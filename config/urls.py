from csp.decorators import csp_update
from django.contrib import admin
from django.http import HttpResponsePermanentRedirect
from django.templatetags.static import static
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.exceptions import Throttled

from feed.urls import api_urlpatterns as feed_api
from notifier.urls import api_urlpatterns as notifier_api

from . import login_guard
from .api_errors import json_404
from .csp import SWAGGER_UI
from .media import serve_media
from .parsers import TOKEN_PARSERS
from .throttles import LoginThrottle


class TokenView(ObtainAuthToken):
    """POST {username, password} → {token}, for scripts (send it as `Authorization: Token …`)."""

    throttle_classes = [LoginThrottle]
    parser_classes = TOKEN_PARSERS

    def post(self, request, *args, **kwargs):
        # Failed log-ins are limited per username and per address, as on the log-in page.
        username = str(request.data.get("username", "")) if hasattr(request.data, "get") else ""
        wait = login_guard.begin(request, username)
        if wait:
            raise Throttled(wait, detail=login_guard.MESSAGE.format(wait=wait))
        response = super().post(request, *args, **kwargs)
        login_guard.succeeded(request, username)
        return response


api_patterns = [
    path("token/", TokenView.as_view(), name="api-token"),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # The split view serves Swagger UI's set-up script as a file: no inline script for the CSP.
    path("docs/", csp_update(SWAGGER_UI)(SpectacularSwaggerSplitView.as_view(url_name="api-schema")), name="api-docs"),
    *feed_api,
    *notifier_api,
    re_path(r"^[\s\S]*$", json_404),  # unknown API paths (any characters, newlines too) answer JSON
]

handler400 = "config.errors.bad_request"
handler403 = "config.errors.permission_denied"
handler404 = "config.errors.page_not_found"
handler500 = "config.errors.server_error"

def favicon(request):
    """/favicon.ico, which browsers ask for where no page names an icon (the admin, JSON in a tab)."""
    return HttpResponsePermanentRedirect(static("feed/favicon.png"))


urlpatterns = [
    path("favicon.ico", favicon),
    re_path(r"^media/(?P<path>(?:avatars|posts)/.+)$", serve_media, name="media"),
    path("admin/", admin.site.urls),
    path("api/", include(api_patterns)),
    path("", include("notifier.urls")),
    path("", include("feed.urls")),
]
