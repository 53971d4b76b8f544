"""Finding people and posts by their words, on PostgreSQL and SQLite alike (migration 0005).

One reading of the search text for both databases (`parse`): words are runs of letters and
digits (so `ana_smith` is `ana` and `smith`, as both databases' tokenizers split it), "quoted
words" must appear together in that order, `-word` must not appear, and the last word matches the
start of a word (search as you type). Every word must match. Case and accents do not count.

- **People**: every word matches the start of some word of the username or display name
  ("smi" finds Ana Smith). Ranked: the exact username, then usernames that start with the text,
  then everyone else; within each, the most followed first (feed_userstats), then the oldest
  account: ascending (tier, -followers, id).
- **Posts**: ranked by relevance, then the newest first, among the newest `POST_CANDIDATES`
  matches. Relevance is a number of the post and the query alone (PostgreSQL `ts_rank`; SQLite
  FTS5's bm25, which also weighs how rare a word is in all posts) as an integer: ascending
  (0, -score, -id), a strict order, so pages never repeat a post. The window keeps a common word
  as cheap as a rare one: finding the newest 1,000 matches is an index walk either way, ranking
  every one of 100,000 matches is not (bench/search.py).

Deleted posts are deleted rows, gone from the index with them. All posts are public in Herald
(the feed filters nothing by author), so search shows what the posts list shows.
"""
import re
from dataclasses import dataclass

from django.db import connection

from .models import Post, User
from .queries import people_for, posts_for

MAX_LENGTH = 100  # characters of search text, once stripped
PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
POST_CANDIDATES = 1000
# Relevance is kept as an integer (a cursor compares it exactly): ts_rank is a float4 (7 digits);
# bm25 falls to about 1e-6 for a word in over half of all posts, and still has to order those.
RANK_SCALE = {"postgresql": 10**6, "sqlite": 10**12}

WORD = re.compile(r"[^\W_]+")
# A quoted phrase, or one word with an optional "-" before it at the start or after a space (as in
# "pizza -napoli"; the one in "e-mail" only separates); anything else separates.
PIECE = re.compile(r'"([^"]*)"?|(?:(?<!\S)(-))?([^\W_]+)')


@dataclass(frozen=True)
class Query:
    """The search text read once: required words and phrases, excluded words, a typed prefix."""

    phrases: tuple = ()  # tuples of words; a plain word is a phrase of one
    excluded: tuple = ()
    prefixes: tuple = ()  # words that match the start of a word

    @property
    def empty(self) -> bool:
        return not self.phrases and not self.prefixes


def words(text: str) -> list[str]:
    return [w.lower() for w in WORD.findall(text)]


def parse(text: str) -> Query:
    phrases, excluded, prefixes = [], [], []
    text = text.strip()
    for match in PIECE.finditer(text):
        quoted, minus, word = match.groups()
        if quoted is not None:
            if found := tuple(words(quoted)):
                phrases.append(found)
        elif minus:
            excluded.append(word.lower())
        elif match.end() == len(text):  # the last word, still being typed
            prefixes.append(word.lower())
        else:
            phrases.append((word.lower(),))
    return Query(tuple(phrases), tuple(excluded), tuple(prefixes))


# --- How each database is asked --------------------------------------------------------------

def _tsquery(query: Query) -> str:
    """PostgreSQL to_tsquery text. Words are letters and digits only, so quoting them is enough."""
    terms = [" <-> ".join(f"'{w}'" for w in phrase) for phrase in query.phrases]
    terms += [f"!'{w}'" for w in query.excluded]
    terms += [f"'{w}':*" for w in query.prefixes]
    return " & ".join(f"({t})" for t in terms)


def _fts5(query: Query) -> str:
    """SQLite FTS5 MATCH text: "a b" is a phrase, "p"* a prefix; NOT binds tighter than AND."""
    terms = ['"' + " ".join(phrase) + '"' for phrase in query.phrases]
    terms += [f'"{w}"*' for w in query.prefixes]
    text = " AND ".join(terms)
    for word in query.excluded:
        text += f' NOT "{word}"'
    return text


def _postgresql() -> bool:
    return connection.vendor == "postgresql"


# The expression of feed_user_search_idx, word for word, so that PostgreSQL uses the index.
PEOPLE_VECTOR = "to_tsvector('herald_search'::regconfig, (u.username::text || ' ' || u.display_name::text))"


def _people_sql(query: Query, handle: str, after: tuple | None, limit: int) -> tuple[str, list]:
    if _postgresql():
        source = "feed_user u"
        match, match_params = f"{PEOPLE_VECTOR} @@ to_tsquery('herald_search', %s)", [_tsquery(query)]
    else:
        source = "feed_user_fts f JOIN feed_user u ON u.id = f.rowid"
        match, match_params = "feed_user_fts MATCH %s", [_fts5(query)]
    sql = f"""
        SELECT id, tier, -followers, id FROM (
            SELECT u.id AS id,
                   CASE WHEN lower(u.username) = %s THEN 0
                        WHEN substr(lower(u.username), 1, %s) = %s THEN 1 ELSE 2 END AS tier,
                   COALESCE(s.follower_count, 0) AS followers
            FROM {source} LEFT JOIN feed_userstats s ON s.user_id = u.id
            WHERE u.is_active AND {match}
        ) ranked
        {"WHERE (tier, -followers, id) > (%s, %s, %s)" if after else ""}
        ORDER BY tier, followers DESC, id
        LIMIT %s"""
    return sql, [handle, len(handle), handle, *match_params, *(after or ()), limit]


def _posts_sql(query: Query, after: tuple | None, limit: int) -> tuple[str, list]:
    if _postgresql():
        hits = """
            SELECT p.id, CAST(ts_rank(p.search_vector, q.query) * %s AS bigint) AS score
            FROM (SELECT p.id, p.search_vector FROM feed_post p
                  WHERE p.search_vector @@ to_tsquery('herald_search', %s)
                  ORDER BY p.id DESC LIMIT %s) p,
                 (SELECT to_tsquery('herald_search', %s) AS query) q"""
        params = [RANK_SCALE["postgresql"], _tsquery(query), POST_CANDIDATES, _tsquery(query)]
    else:
        hits = """
            SELECT rowid AS id, CAST(-bm25(feed_post_fts) * %s AS INTEGER) AS score
            FROM feed_post_fts WHERE feed_post_fts MATCH %s ORDER BY rowid DESC LIMIT %s"""
        params = [RANK_SCALE["sqlite"], _fts5(query), POST_CANDIDATES]
    sql = f"""
        SELECT id, 0, -score, -id FROM ({hits}) hits
        {"WHERE (0, -score, -id) > (%s, %s, %s)" if after else ""}
        ORDER BY score DESC, id DESC
        LIMIT %s"""
    return sql, [*params, *(after or ()), limit]


def _keys(sql: str, params: list) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [tuple(row) for row in cursor.fetchall()]


# --- Pages ------------------------------------------------------------------------------------

@dataclass
class Page:
    """Up to `size` results in order, and the cursor of the next page (None on the last one)."""

    items: list
    next_cursor: str | None


# A cursor is the key of the last result of a page: three integers, "tier.-followers.id" for
# people, "0.-score.-id" for posts. Any three integers are a position (a forged one starts the
# page somewhere, never an error), and nothing else is a cursor.
CURSOR_PATTERN = r"^-?[0-9]{1,18}\.-?[0-9]{1,18}\.-?[0-9]{1,18}$"
_CURSOR = re.compile(CURSOR_PATTERN)
INVALID_CURSOR = "Invalid cursor: use the `next` link of a page."


def decode_cursor(cursor: str | None) -> tuple | None:
    """The key a page starts after, or None for the first page; ValueError for a malformed one."""
    if cursor is None:
        return None
    if not _CURSOR.match(cursor):
        raise ValueError(INVALID_CURSOR)
    return tuple(int(part) for part in cursor.split("."))


def _page(keys: list[tuple], size: int, load) -> Page:
    """keys: (id, *key) rows, size + 1 of them when there is a next page."""
    more = len(keys) > size
    keys = keys[:size]
    by_id = {obj.pk: obj for obj in load([row[0] for row in keys])} if keys else {}
    items = [by_id[row[0]] for row in keys if row[0] in by_id]  # one deleted meanwhile is left out
    return Page(items, ".".join(str(part) for part in keys[-1][1:]) if more else None)


def people(viewer, text: str, after: tuple | None = None, size: int = PAGE_SIZE) -> Page:
    """Active users every word of `text` finds (see the module's docstring), best first."""
    found = words(text)
    if not found:
        return Page([], None)
    handle = text.strip().lower().removeprefix("@")  # "@ana", as handles are written on the site
    sql, params = _people_sql(Query(prefixes=tuple(found)), handle, after, size + 1)
    return _page(_keys(sql, params), size,
                 lambda ids: people_for(viewer, User.objects.filter(pk__in=ids)))


def posts(viewer, text: str, after: tuple | None = None, size: int = PAGE_SIZE) -> Page:
    """Posts matching `text` (see the module's docstring), most relevant first, then newest."""
    query = parse(text)
    if query.empty:
        return Page([], None)
    sql, params = _posts_sql(query, after, size + 1)
    return _page(_keys(sql, params), size,
                 lambda ids: posts_for(viewer, Post.objects.filter(pk__in=ids)))
