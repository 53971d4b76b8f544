from django.apps import AppConfig


class FeedConfig(AppConfig):
    name = "feed"
    verbose_name = "Feed"

    def ready(self):
        from config import login_guard  # noqa: F401  (counts failed log-ins: a signal receiver)
