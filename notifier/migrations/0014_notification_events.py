"""Event + recipient rows: what is the same for every recipient of a notification moves to a
NotificationEvent row; the notification keeps who, seq, which event and read state.

Existing rows are migrated in place, in batches of BATCH ids: each notification gets an event
with the same id (so no mapping table is needed, and the event id sequence is moved past them),
and each group's member rows point at it where they name its actor. Non-grouped notifications'
dedupe keys move to their events; grouped ones keep theirs (their group's key). The copy is
idempotent, and the migration reverses: the columns come back and are filled from the events.
"""
import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models

BATCH = 20_000
GROUPED = "('like', 'follow', 'new_post')"


def _batches(cursor, table):
    cursor.execute(f"SELECT MIN(id), MAX(id) FROM {table}")
    low, high = cursor.fetchone()
    if low is None:
        return
    for start in range(low - 1, high, BATCH):
        yield start, start + BATCH


def to_events(apps, schema_editor):
    with schema_editor.connection.cursor() as cursor:
        for a, b in list(_batches(cursor, "notifier_notification")):
            cursor.execute(
                "INSERT INTO notifier_notificationevent (id, kind, actor_id, post_ref, comment_ref, dedupe_key, text, url,"
                " created_at) SELECT id, kind, actor_id, post_ref, comment_ref,"
                f" CASE WHEN kind IN {GROUPED} THEN NULL ELSE dedupe_key END, text, url, created_at"
                " FROM notifier_notification WHERE id > %s AND id <= %s AND event_id IS NULL"
                " ON CONFLICT (id) DO NOTHING", [a, b])
            cursor.execute(
                "UPDATE notifier_notification SET event_id = id,"
                f" dedupe_key = CASE WHEN kind IN {GROUPED} THEN dedupe_key END"
                " WHERE id > %s AND id <= %s AND event_id IS NULL", [a, b])
            cursor.execute(
                "UPDATE notifier_notificationactor SET event_id = notification_id WHERE notification_id > %s"
                " AND notification_id <= %s AND event_id IS NULL AND actor_id = (SELECT n.actor_id FROM"
                " notifier_notification n WHERE n.id = notifier_notificationactor.notification_id)", [a, b])
        if schema_editor.connection.vendor == "postgresql":
            cursor.execute("SELECT setval(pg_get_serial_sequence('notifier_notificationevent', 'id'),"
                           " GREATEST((SELECT MAX(id) FROM notifier_notificationevent), 1))")


def from_events(apps, schema_editor):
    with schema_editor.connection.cursor() as cursor:
        for a, b in list(_batches(cursor, "notifier_notification")):
            cursor.execute(
                "UPDATE notifier_notification SET actor_id = e.actor_id, post_ref = e.post_ref,"
                " comment_ref = e.comment_ref, text = e.text, url = e.url, created_at = e.created_at,"
                " dedupe_key = COALESCE(notifier_notification.dedupe_key, e.dedupe_key)"
                " FROM notifier_notificationevent e WHERE e.id = notifier_notification.event_id"
                " AND notifier_notification.id > %s AND notifier_notification.id <= %s", [a, b])


class Migration(migrations.Migration):

    dependencies = [
        ('notifier', '0013_webpush_subscriptions'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='NotificationEvent',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('kind', models.CharField(choices=[('comment', 'Comments on posts you follow'), ('reply', 'Replies to your comments'), ('like', 'Likes of your posts'), ('follow', 'New followers'), ('mention', 'Mentions of you'), ('new_post', 'Posts from people you follow')], max_length=16)),
                ('post_ref', models.PositiveBigIntegerField(blank=True, null=True)),
                ('comment_ref', models.PositiveBigIntegerField(blank=True, null=True)),
                ('dedupe_key', models.CharField(blank=True, max_length=100, null=True)),
                ('text', models.CharField(max_length=300)),
                ('url', models.CharField(max_length=200)),
                ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('actor', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'indexes': [
                    models.Index(condition=models.Q(('post_ref__isnull', False)), fields=['post_ref'], name='event_post_ref_idx'),
                    models.Index(condition=models.Q(('comment_ref__isnull', False)), fields=['comment_ref'], name='event_comment_ref_idx'),
                    models.Index(condition=models.Q(('dedupe_key__isnull', False)), fields=['dedupe_key'], name='event_dedupe_idx'),
                ],
            },
        ),
        migrations.AddField(
            model_name='notification',
            name='event',
            field=models.ForeignKey(db_constraint=False, null=True, on_delete=django.db.models.deletion.DO_NOTHING, related_name='+', to='notifier.notificationevent'),
        ),
        migrations.AddField(
            model_name='notificationactor',
            name='event',
            field=models.ForeignKey(blank=True, db_constraint=False, db_index=False, null=True, on_delete=django.db.models.deletion.DO_NOTHING, related_name='+', to='notifier.notificationevent'),
        ),
        migrations.RunPython(to_events, from_events, elidable=False),
        migrations.AlterField(
            model_name='notification',
            name='event',
            field=models.ForeignKey(db_constraint=False, on_delete=django.db.models.deletion.DO_NOTHING, related_name='+', to='notifier.notificationevent'),
        ),
        migrations.RemoveConstraint(model_name='notification', name='notification_dedupe_unique'),
        migrations.AddConstraint(
            model_name='notification',
            constraint=models.UniqueConstraint(condition=models.Q(('dedupe_key__isnull', False)), fields=('recipient', 'dedupe_key'), name='notification_group_unique'),
        ),
        migrations.RemoveIndex(model_name='notification', name='notification_post_ref_idx'),
        migrations.RemoveIndex(model_name='notification', name='notification_comment_ref_idx'),
        # Defaults first, so that the reverse can add the columns back to a table with rows.
        migrations.AlterField(model_name='notification', name='text', field=models.CharField(default='', max_length=300)),
        migrations.AlterField(model_name='notification', name='url', field=models.CharField(default='', max_length=200)),
        migrations.RemoveField(model_name='notification', name='actor'),
        migrations.RemoveField(model_name='notification', name='post_ref'),
        migrations.RemoveField(model_name='notification', name='comment_ref'),
        migrations.RemoveField(model_name='notification', name='text'),
        migrations.RemoveField(model_name='notification', name='url'),
        migrations.RemoveField(model_name='notification', name='created_at'),
    ]
