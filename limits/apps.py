from django.apps import AppConfig


class LimitsConfig(AppConfig):
    name = "limits"
    verbose_name = "Limits"
    default_auto_field = "django.db.models.BigAutoField"
