from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.authtoken.views import ObtainAuthToken

from feed.urls import api_urlpatterns as feed_api
from notifier.urls import api_urlpatterns as notifier_api

from .api_errors import json_404
from .parsers import API_PARSERS
from .throttles import LoginThrottle


class TokenView(ObtainAuthToken):
    """POST {username, password} → {token}, for scripts (send it as `Authorization: Token …`)."""

    throttle_classes = [LoginThrottle]
    parser_classes = API_PARSERS


api_patterns = [
    path("token/", TokenView.as_view(), name="api-token"),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    *feed_api,
    *notifier_api,
    re_path(r"^.*$", json_404),  # unknown API paths answer JSON, not the HTML 404 page
]

handler400 = "config.errors.bad_request"
handler500 = "config.errors.server_error"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", include(api_patterns)),
    path("", include("notifier.urls")),
    path("", include("feed.urls")),
]
