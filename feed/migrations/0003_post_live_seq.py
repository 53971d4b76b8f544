# Adding a column with a constant default rewrites nothing (PostgreSQL 11+).

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('feed', '0002_user_search_indexes'),
    ]

    operations = [
        migrations.AddField(
            model_name='post',
            name='live_seq',
            field=models.BigIntegerField(db_default=0, default=0, editable=False),
        ),
    ]
