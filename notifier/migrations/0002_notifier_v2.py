"""Notifier core v2: read watermark, pushes owed in their own table (PendingPush), index diet.

Existing pending and failed pushes move into PendingPush before the delivery columns go; existing
read marks stay (read_seq starts at 0, so read_at alone still says what is read).
"""

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models


def move_owed_pushes(apps, schema_editor):
    Notification = apps.get_model("notifier", "Notification")
    PendingPush = apps.get_model("notifier", "PendingPush")
    owed = Notification.objects.exclude(delivery="delivered").values_list(
        "pk", "recipient_id", "delivery", "attempts", "next_attempt_at", "last_attempt_at", "last_error"
    )
    PendingPush.objects.bulk_create(
        [
            PendingPush(notification_id=pk, recipient_id=recipient, attempts=attempts, last_attempt_at=last,
                        due_at=(due or django.utils.timezone.now()) if delivery == "pending" else None,
                        last_error=error)
            for pk, recipient, delivery, attempts, due, last, error in owed.iterator()
        ],
        batch_size=1000,
    )


def leave_room_for_hot_updates(apps, schema_editor):
    """PostgreSQL: leave 10% of each notification page free, so marking one read (read_at, not
    indexed) is a heap-only-tuple update on the same page."""
    if schema_editor.connection.vendor == "postgresql":
        table = schema_editor.quote_name(apps.get_model("notifier", "Notification")._meta.db_table)
        schema_editor.execute(f"ALTER TABLE {table} SET (fillfactor = 90)")


class Migration(migrations.Migration):

    dependencies = [
        ('notifier', '0001_initial'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='PendingPush',
            fields=[
                ('notification', models.OneToOneField(db_constraint=False, on_delete=django.db.models.deletion.DO_NOTHING, primary_key=True, related_name='pending_push', serialize=False, to='notifier.notification')),
                ('attempts', models.PositiveSmallIntegerField(default=0)),
                ('due_at', models.DateTimeField(blank=True, null=True)),
                ('last_attempt_at', models.DateTimeField(blank=True, null=True)),
                ('last_error', models.CharField(blank=True, max_length=300)),
                ('recipient', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to=settings.AUTH_USER_MODEL)),
            ],
        ),
        migrations.RunPython(move_owed_pushes, migrations.RunPython.noop),
        migrations.RunPython(leave_room_for_hot_updates, migrations.RunPython.noop),
        migrations.RemoveIndex(
            model_name='notification',
            name='notification_unread_idx',
        ),
        migrations.RemoveIndex(
            model_name='notification',
            name='notification_pending_idx',
        ),
        migrations.RemoveField(
            model_name='notification',
            name='attempts',
        ),
        migrations.RemoveField(
            model_name='notification',
            name='delivery',
        ),
        migrations.RemoveField(
            model_name='notification',
            name='last_attempt_at',
        ),
        migrations.RemoveField(
            model_name='notification',
            name='last_error',
        ),
        migrations.RemoveField(
            model_name='notification',
            name='next_attempt_at',
        ),
        migrations.AddField(
            model_name='notificationstate',
            name='read_seq',
            field=models.PositiveBigIntegerField(default=0),
        ),
        migrations.AlterField(
            model_name='notification',
            name='comment_ref',
            field=models.PositiveBigIntegerField(blank=True, null=True),
        ),
        migrations.AlterField(
            model_name='notification',
            name='created_at',
            field=models.DateTimeField(default=django.utils.timezone.now),
        ),
        migrations.AlterField(
            model_name='notification',
            name='post_ref',
            field=models.PositiveBigIntegerField(blank=True, null=True),
        ),
        migrations.AlterField(
            model_name='notification',
            name='recipient',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='notifications', to=settings.AUTH_USER_MODEL),
        ),
        migrations.AddIndex(
            model_name='notification',
            index=models.Index(condition=models.Q(('post_ref__isnull', False)), fields=['post_ref'], name='notification_post_ref_idx'),
        ),
        migrations.AddIndex(
            model_name='notification',
            index=models.Index(condition=models.Q(('comment_ref__isnull', False)), fields=['comment_ref'], name='notification_comment_ref_idx'),
        ),
        migrations.AddConstraint(
            model_name='notificationstate',
            constraint=models.CheckConstraint(condition=models.Q(('read_seq__lte', models.F('last_seq'))), name='state_read_seq_le_last'),
        ),
        migrations.AddIndex(
            model_name='pendingpush',
            index=models.Index(condition=models.Q(('due_at__isnull', False)), fields=['due_at'], name='pendingpush_due_idx'),
        ),
    ]
