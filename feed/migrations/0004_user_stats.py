"""Stored follower counts (feed.counters), filled from the follows that exist."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('feed', '0003_post_live_seq'),
    ]

    operations = [
        migrations.CreateModel(
            name='UserStats',
            fields=[
                ('user', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, primary_key=True, related_name='stats', serialize=False, to=settings.AUTH_USER_MODEL)),
                ('follower_count', models.BigIntegerField(default=0)),
            ],
            options={
                'verbose_name_plural': 'user stats',
                'indexes': [models.Index(fields=['-follower_count', 'user'], name='userstats_popular_idx')],
                'constraints': [models.CheckConstraint(condition=models.Q(('follower_count__gte', 0)), name='userstats_followers_not_negative')],
            },
        ),
        # One set-based statement at any size (the table is new: nothing to conflict with).
        migrations.RunSQL(
            "INSERT INTO feed_userstats (user_id, follower_count)"
            " SELECT followee_id, COUNT(*) FROM feed_follow GROUP BY followee_id",
            migrations.RunSQL.noop,
        ),
    ]
