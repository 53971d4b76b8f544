"""Full-text search of people (any word of a username or display name) and posts (feed.search).

PostgreSQL: a text search configuration, `herald_search`, that is `simple` (no stemming, no stop
words, so a prefix typed so far matches the words people wrote) with accents folded by `unaccent`;
a GIN expression index over a user's username and display name, and a stored generated tsvector
column on posts with its GIN index (ranking reads the stored vector instead of parsing each
candidate's text again). Both are filled for existing rows as they are created.

SQLite: FTS5 tables with external content (the rows stay in feed_user / feed_post; FTS5 keeps only
its index), folded the same way (`remove_diacritics 2`), kept in step by triggers on insert,
update of the searched columns and delete, and rebuilt once here from the rows that exist.
The `unicode61` tokenizer, like PostgreSQL's parser, splits `ana_smith` into `ana` and `smith`.

Nothing in the models knows of these: feed.search queries them with SQL of its own. On SQLite a
later migration that remakes feed_user or feed_post (Django copies a table to alter it) drops
their triggers; tests/test_search.py checks that the triggers still keep the index in step.
"""
from django.db import migrations

POSTGRESQL_FORWARD = [
    "CREATE EXTENSION IF NOT EXISTS unaccent",
    "CREATE TEXT SEARCH CONFIGURATION herald_search (COPY = pg_catalog.simple)",
    "ALTER TEXT SEARCH CONFIGURATION herald_search ALTER MAPPING FOR hword, hword_part, word WITH unaccent, simple",
    "CREATE INDEX feed_user_search_idx ON feed_user USING gin "
    "(to_tsvector('herald_search'::regconfig, (username::text || ' ' || display_name::text)))",
    "ALTER TABLE feed_post ADD COLUMN search_vector tsvector "
    "GENERATED ALWAYS AS (to_tsvector('herald_search'::regconfig, text::text)) STORED",
    "CREATE INDEX feed_post_search_idx ON feed_post USING gin (search_vector)",
]
POSTGRESQL_BACKWARD = [
    "DROP INDEX IF EXISTS feed_post_search_idx",
    "ALTER TABLE feed_post DROP COLUMN IF EXISTS search_vector",
    "DROP INDEX IF EXISTS feed_user_search_idx",
    "DROP TEXT SEARCH CONFIGURATION IF EXISTS herald_search",
    "DROP EXTENSION IF EXISTS unaccent",
]

TOKENIZER = "unicode61 remove_diacritics 2"
SQLITE_FORWARD = [
    f"CREATE VIRTUAL TABLE feed_user_fts USING fts5(username, display_name, content='feed_user', content_rowid='id',"
    f" tokenize='{TOKENIZER}')",
    "CREATE TRIGGER feed_user_fts_insert AFTER INSERT ON feed_user BEGIN"
    " INSERT INTO feed_user_fts (rowid, username, display_name) VALUES (new.id, new.username, new.display_name);"
    " END",
    "CREATE TRIGGER feed_user_fts_update AFTER UPDATE OF username, display_name ON feed_user BEGIN"
    " INSERT INTO feed_user_fts (feed_user_fts, rowid, username, display_name)"
    " VALUES ('delete', old.id, old.username, old.display_name);"
    " INSERT INTO feed_user_fts (rowid, username, display_name) VALUES (new.id, new.username, new.display_name);"
    " END",
    "CREATE TRIGGER feed_user_fts_delete AFTER DELETE ON feed_user BEGIN"
    " INSERT INTO feed_user_fts (feed_user_fts, rowid, username, display_name)"
    " VALUES ('delete', old.id, old.username, old.display_name);"
    " END",
    "INSERT INTO feed_user_fts (feed_user_fts) VALUES ('rebuild')",
    f"CREATE VIRTUAL TABLE feed_post_fts USING fts5(text, content='feed_post', content_rowid='id',"
    f" tokenize='{TOKENIZER}')",
    "CREATE TRIGGER feed_post_fts_insert AFTER INSERT ON feed_post BEGIN"
    " INSERT INTO feed_post_fts (rowid, text) VALUES (new.id, new.text);"
    " END",
    "CREATE TRIGGER feed_post_fts_update AFTER UPDATE OF text ON feed_post BEGIN"
    " INSERT INTO feed_post_fts (feed_post_fts, rowid, text) VALUES ('delete', old.id, old.text);"
    " INSERT INTO feed_post_fts (rowid, text) VALUES (new.id, new.text);"
    " END",
    "CREATE TRIGGER feed_post_fts_delete AFTER DELETE ON feed_post BEGIN"
    " INSERT INTO feed_post_fts (feed_post_fts, rowid, text) VALUES ('delete', old.id, old.text);"
    " END",
    "INSERT INTO feed_post_fts (feed_post_fts) VALUES ('rebuild')",
]
SQLITE_BACKWARD = [
    "DROP TRIGGER IF EXISTS feed_post_fts_delete",
    "DROP TRIGGER IF EXISTS feed_post_fts_update",
    "DROP TRIGGER IF EXISTS feed_post_fts_insert",
    "DROP TABLE IF EXISTS feed_post_fts",
    "DROP TRIGGER IF EXISTS feed_user_fts_delete",
    "DROP TRIGGER IF EXISTS feed_user_fts_update",
    "DROP TRIGGER IF EXISTS feed_user_fts_insert",
    "DROP TABLE IF EXISTS feed_user_fts",
]

STATEMENTS = {"postgresql": (POSTGRESQL_FORWARD, POSTGRESQL_BACKWARD), "sqlite": (SQLITE_FORWARD, SQLITE_BACKWARD)}


def _run(schema_editor, which: int) -> None:
    for statement in STATEMENTS.get(schema_editor.connection.vendor, ((), ()))[which]:
        schema_editor.execute(statement, params=None)


def forward(apps, schema_editor):
    _run(schema_editor, 0)


def backward(apps, schema_editor):
    _run(schema_editor, 1)


class Migration(migrations.Migration):

    dependencies = [("feed", "0006_threads")]

    operations = [migrations.RunPython(forward, backward, elidable=False)]
