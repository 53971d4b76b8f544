from django.urls import path

from . import api, push_api, views
from .mail import views as mail_views

urlpatterns = [
    path("notifications/", views.notifications_page, name="notifications"),
    path("notifications/<int:pk>/read/", views.mark_read, name="notification-read"),
    path("notifications/<int:pk>/open/", views.open_notification, name="notification-open"),
    path("notifications/<int:pk>/unread/", views.mark_unread, name="notification-unread"),
    path("notifications/read-all/", views.mark_all_read, name="notifications-read-all"),
    path("settings/notifications/", views.notification_settings, name="notification-settings"),
    path("email/unsubscribe/<str:token>/", mail_views.unsubscribe, name="email-unsubscribe"),
    path("email/ses-events/", mail_views.ses_events, name="email-ses-events"),
    path("sw.js", views.service_worker, name="service-worker"),
]

api_urlpatterns = [
    path("notifications/", api.NotificationListView.as_view(), name="api-notifications"),
    path("notifications/unread-count/", api.UnreadCountView.as_view(), name="api-unread-count"),
    path("notifications/<int:pk>/read/", api.MarkReadView.as_view(), name="api-notification-read"),
    path("notifications/<int:pk>/open/", views.open_notification, name="notification-open"),
    path("notifications/<int:pk>/unread/", api.MarkUnreadView.as_view(), name="api-notification-unread"),
    path("notifications/read-all/", api.MarkAllReadView.as_view(), name="api-notifications-read-all"),
    path("notifications/seen/", api.MarkSeenView.as_view(), name="api-notifications-seen"),
    path("notifications/preferences/", api.PreferencesView.as_view(), name="api-notification-preferences"),
    path("notifications/credentials/", api.CredentialsView.as_view(), name="api-credentials"),
    path("push/config/", push_api.PushConfigView.as_view(), name="api-push-config"),
    path("push/subscriptions/", push_api.PushSubscriptionsView.as_view(), name="api-push-subscriptions"),
]
