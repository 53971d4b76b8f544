"""Every existing account gets its notification state row (new ones get it when created)."""
from django.conf import settings
from django.db import migrations


def create_missing_states(apps, schema_editor):
    User = apps.get_model(*settings.AUTH_USER_MODEL.split("."))
    NotificationState = apps.get_model("notifier", "NotificationState")
    missing = User.objects.exclude(pk__in=NotificationState.objects.values("user_id")).values_list("pk", flat=True)
    NotificationState.objects.bulk_create(
        (NotificationState(user_id=pk) for pk in missing.iterator()), batch_size=1000, ignore_conflicts=True
    )


class Migration(migrations.Migration):
    dependencies = [
        ("notifier", "0002_notifier_v2"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [migrations.RunPython(create_missing_states, migrations.RunPython.noop)]
