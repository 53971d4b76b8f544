"""Indexes for finding people by the start of a username or display name (PostgreSQL only).

The search filters on `lower(username) LIKE 'abc%'` and `lower(display_name) LIKE 'abc%'`. A plain
b-tree index serves LIKE prefixes only under the C collation; text_pattern_ops ones do under any
collation. SQLite has no operator classes (and its tables are small): nothing to do there.
"""
from django.db import migrations

INDEXES = {
    "feed_user_username_lower_prefix": "lower(username)",
    "feed_user_display_name_lower_prefix": "lower(display_name)",
}


def create(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    table = schema_editor.quote_name(apps.get_model("feed", "User")._meta.db_table)
    for name, expression in INDEXES.items():
        schema_editor.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {table} (({expression}) text_pattern_ops)")


def drop(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name in INDEXES:
        schema_editor.execute(f"DROP INDEX IF EXISTS {name}")


class Migration(migrations.Migration):

    dependencies = [("feed", "0001_initial")]

    operations = [migrations.RunPython(create, drop, elidable=False)]
