"""The peer's own URLs, as its README mounts them: /inbox/notifications/ (live JSON API included)."""
from django.urls import include, path

urlpatterns = [path("inbox/notifications/", include("notifications.urls", namespace="notifications"))]
