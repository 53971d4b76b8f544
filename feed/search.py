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
  as cheap as a rare one: finding the newest 500 matches is an index walk (or an index scan of
  the newest posts) either way, ranking every one of 100,000 matches is not (bench/search.py).

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
POST_CANDIDATES = 500
RECENT_POSTS = 100_000  # PostgreSQL looks among the newest this many posts first (_post_keys)
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


def _like_prefix(text: str) -> tuple[str, str]:
    """A LIKE pattern for "starts with text" (its % and _ are plain characters), as Django writes
    one: PostgreSQL's default escape is the backslash, and a pattern without an ESCAPE clause is
    what lets it use the text_pattern_ops index on lower(username) (migration 0002)."""
    pattern = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    return pattern, "" if _postgresql() else " ESCAPE '\\'"


def _by_name_sql(handle: str, after: tuple | None, limit: int) -> tuple[str, list]:
    """Tiers 0 and 1: the username equal to the text, then usernames starting with it, most
    followed first (walking userstats_popular_idx from the top), then the others by id. Such a
    username's words are the text's words (usernames are letters, digits and "_"), so the
    username indexes answer these alone."""
    like, escape = _like_prefix(handle)
    prefix = f"lower(u.username) LIKE %s{escape} AND lower(u.username) <> %s"
    start, start_params = ("AND (1, -s.follower_count, u.id) > (%s, %s, %s)", list(after)) if after else ("", [])
    rest, rest_params = ("AND (1, 0, u.id) > (%s, %s, %s)", list(after)) if after else ("", [])
    sql = (
        "SELECT * FROM (SELECT u.id, 0 AS tier, COALESCE(s.follower_count, 0) AS followers FROM feed_user u"
        " LEFT JOIN feed_userstats s ON s.user_id = u.id WHERE u.is_active AND lower(u.username) = %s) exact"
        " UNION ALL"
        " SELECT * FROM (SELECT u.id, 1 AS tier, s.follower_count AS followers"
        " FROM feed_userstats s JOIN feed_user u ON u.id = s.user_id"
        f" WHERE s.follower_count > 0 AND u.is_active AND {prefix} {start}"
        " ORDER BY s.follower_count DESC, s.user_id LIMIT %s) followed"
        " UNION ALL"
        " SELECT * FROM (SELECT u.id, 1 AS tier, 0 AS followers FROM feed_user u"
        f" WHERE u.is_active AND {prefix} {rest} AND NOT EXISTS"
        " (SELECT 1 FROM feed_userstats s WHERE s.user_id = u.id AND s.follower_count > 0)"
        " ORDER BY u.id LIMIT %s) others"
    )
    return sql, [handle, like, handle, *start_params, limit, like, handle, *rest_params, limit]


def _by_words_sql(query: Query, handle: str, after: tuple | None, limit: int) -> tuple[str, list]:
    """Tier 2: everyone else the words find, most followed first, then by id. The set comes from
    the word index and is ranked whole (its cost grows with how many people the words find): a
    walk down the follower counts would stop early for a common surname, but walks past every
    user when the text's matches are all usernames of tier 1, and the planner cannot tell."""
    like, escape = _like_prefix(handle)
    if _postgresql():
        match, match_params = f"{PEOPLE_VECTOR} @@ to_tsquery('herald_search', %s)", [_tsquery(query)]
    else:
        match, match_params = "u.id IN (SELECT rowid FROM feed_user_fts WHERE feed_user_fts MATCH %s)", [_fts5(query)]
    start, start_params = ("WHERE (2, -followers, id) > (%s, %s, %s)", list(after)) if after else ("", [])
    # Each match's count by its primary key: a join would hash every stored count (100,000 rows)
    # to rank a thousand people.
    sql = (f"WITH m AS {'MATERIALIZED ' if _postgresql() else ''}(SELECT u.id FROM feed_user u"
           f" WHERE u.is_active AND NOT lower(u.username) LIKE %s{escape} AND {match})"
           " SELECT id, 2 AS tier, followers FROM (SELECT m.id AS id, COALESCE((SELECT s.follower_count"
           f" FROM feed_userstats s WHERE s.user_id = m.id), 0) AS followers FROM m) ranked {start}"
           " ORDER BY followers DESC, id LIMIT %s")
    return sql, [like, *match_params, *start_params, limit]


def _people_keys(query: Query, handle: str, after: tuple | None, limit: int) -> list[tuple]:
    """(id, *key) of up to `limit` people after the key `after`: by name, then (when the page is
    not full yet) by words, each one query."""
    found = []
    for part in (_by_name_sql, _by_words_sql):
        if part is _by_name_sql and after and after[0] > 1:
            continue  # the page starts after every username match
        if part is _by_words_sql:
            if len(found) >= limit:
                break
            sql, params = _by_words_sql(query, handle, after, limit - len(found))
        else:
            sql, params = _by_name_sql(handle, after, limit)
        keys = sorted((tier, -followers, pk) for pk, tier, followers in _keys(sql, params))
        found += [(key[2], *key) for key in keys if after is None or key > after][: limit - len(found)]
    return found


def _posts_sql(query: Query, after: tuple | None, limit: int, newer_than: int | None = None) -> tuple[str, list]:
    """A row (-1, number of candidates, 0, 0), then up to `limit` (id, *key) of the candidates after
    `after`: the newest POST_CANDIDATES matches (with an id over `newer_than`, if given), best first."""
    if _postgresql():
        recent, recent_params = (" AND p.id > %s", [newer_than]) if newer_than is not None else ("", [])
        hits = f"""
            SELECT p.id, CAST(ts_rank(p.search_vector, q.query) * %s AS bigint) AS score
            FROM (SELECT p.id, p.search_vector FROM feed_post p
                  WHERE p.search_vector @@ to_tsquery('herald_search', %s){recent}
                  ORDER BY p.id DESC LIMIT %s) p,
                 (SELECT to_tsquery('herald_search', %s) AS query) q"""
        params = [RANK_SCALE["postgresql"], _tsquery(query), *recent_params, POST_CANDIDATES, _tsquery(query)]
    else:
        hits = """
            SELECT rowid AS id, CAST(-bm25(feed_post_fts) * %s AS INTEGER) AS score
            FROM feed_post_fts WHERE feed_post_fts MATCH %s ORDER BY rowid DESC LIMIT %s"""
        params = [RANK_SCALE["sqlite"], _fts5(query), POST_CANDIDATES]
    sql = f"""
        WITH hits AS ({hits})
        SELECT -1, COUNT(*), 0, 0 FROM hits
        UNION ALL
        SELECT * FROM (SELECT id, 0, -score, -id FROM hits
                       {"WHERE (0, -score, -id) > (%s, %s, %s)" if after else ""}
                       ORDER BY score DESC, id DESC LIMIT %s) page"""
    return sql, [*params, *(after or ()), limit]


def _post_keys(query: Query, after: tuple | None, limit: int) -> list[tuple]:
    """(id, *key) of up to `limit` posts after `after`. On PostgreSQL the newest RECENT_POSTS are
    asked first: the index then meets a range of ids (a BitmapAnd with the primary key), so a
    word in 1% of a million posts costs its matches among the newest 100,000, not all 10,000 of
    them. When those hold a whole window of candidates, they are the newest POST_CANDIDATES
    matches of all, so the answer is the same; otherwise every post is asked."""
    newer_than = None
    if _postgresql():
        last = _keys("SELECT MAX(id) FROM feed_post", [])[0][0] or 0
        newer_than = last - RECENT_POSTS if last > RECENT_POSTS else None
    while True:
        rows = _keys(*_posts_sql(query, after, limit, newer_than))
        candidates = next(row[1] for row in rows if row[0] == -1)
        if newer_than is None or candidates >= POST_CANDIDATES:
            return [row for row in rows if row[0] != -1]
        newer_than = None


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
    keys = _people_keys(Query(prefixes=tuple(found)), handle, after, size + 1)
    return _page(keys, size,
                 lambda ids: people_for(viewer, User.objects.filter(pk__in=ids)))


def posts(viewer, text: str, after: tuple | None = None, size: int = PAGE_SIZE) -> Page:
    """Posts matching `text` (see the module's docstring), most relevant first, then newest."""
    query = parse(text)
    if query.empty:
        return Page([], None)
    return _page(_post_keys(query, after, size + 1), size,
                 lambda ids: posts_for(viewer, Post.objects.filter(pk__in=ids)))
