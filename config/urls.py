from csp.decorators import csp_update
from django.contrib import admin
from django.http import HttpResponsePermanentRedirect
from django.templatetags.static import static
from django.urls import include, path, re_path
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


def built_on_first_request(factory):
    """A view that `factory` builds when it is first requested. The schema and Swagger UI views bring
    drf-spectacular's generator, plumbing and YAML renderer (about 0.1 s of imports), which no
    other request needs: importing them here would add that to every cold start on Lambda."""
    view = None

    def lazy_view(request, *args, **kwargs):
        nonlocal view
        if view is None:
            view = factory()
        return view(request, *args, **kwargs)

    lazy_view.csrf_exempt = True  # as DRF's as_view() marks its views (both are GET-only anyway)
    return lazy_view


def schema_view():
    from drf_spectacular.views import SpectacularAPIView

    return SpectacularAPIView.as_view()


def swagger_view():
    from drf_spectacular.views import SpectacularSwaggerSplitView

    return SpectacularSwaggerSplitView.as_view(url_name="api-schema")


api_patterns = [
    path("token/", TokenView.as_view(), name="api-token"),
    path("schema/", built_on_first_request(schema_view), name="api-schema"),
    # The split view serves Swagger UI's set-up script as a file: no inline script for the CSP.
    path("docs/", csp_update(SWAGGER_UI)(built_on_first_request(swagger_view)), name="api-docs"),
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
