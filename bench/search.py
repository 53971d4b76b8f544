"""Search at 200,000 users and 1,000,000 posts: feed.search on PostgreSQL (migration 0005).

Data (a PostgreSQL scratch database, rows made with INSERT … SELECT generate_series):
- users: display names "First Last": 300 first names and 2,000 surnames (real ones first, some
  with accents: José García, then made-up ones), name k of N picked as N · r^1.5, so the most
  common surname is about 0.6% of all people (Smith in the US: 0.8%) and the rarest a few dozen;
  usernames first_last_<id>; half of them with a stored follower count, heavily skewed.
- posts: 6 to 25 words each from a vocabulary of 20,000 words (200 common English words, then
  made-up words), word k picked with probability falling steeply with k (k = V · r⁵), so "the" is
  in most posts and a word near the end of the list in a few hundred, as in real text.
The search indexes are dropped before loading and made again after, with the definitions the
migration gave them (their build times are reported); then VACUUM ANALYZE.

Measured in-process, through the functions GET /api/search/ calls (feed.search.people and
feed.search.posts, first pages of 20 and one second page), `--reps` times each case, interleaved:
people (a common surname, a rare one, the start of a first name, two words, an exact username, a
name typed without its accent) and posts (common, middling and rare words, two- and four-letter
prefixes, two words, a phrase). Target: p50 ≤ 30 ms over all the people cases and over all the
post cases. Also reported: the load average, the index sizes, EXPLAIN (ANALYZE, BUFFERS) of one
query of each kind, and two alternatives measured on the same data:
- posts ranked over every match instead of the newest POST_CANDIDATES (500);
- people found with a pg_trgm GIN index and a word-start regex (`~ '\\mgar'`), the other usual way.

    python bench/search.py [--users 200000] [--posts 1000000] [--reps 20]

Writes bench/results/search.json; exits 1 when a p50 misses the target.
"""
import argparse
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.benchlib import (  # noqa: E402
    bench_env, connect, machine, migrate, ms, percentile, recreate_database, scratch_url, write_result,
)

TARGET_P50_MS = 30.0
VOCABULARY = 20_000
SKEW = 5  # word k = V · r^SKEW

FIRST = ["Maria", "John", "José", "Anna", "David", "Sarah", "Michael", "Laura", "James", "Zoë", "Robert", "Emma",
         "Daniel", "Chloé", "Thomas", "Julia", "Peter", "Sofia", "Paul", "Renée", "Mark", "Elena", "Lucas", "Nina",
         "Oliver", "Marta", "Hugo", "Ingrid", "Kofi", "Aiko", "Ravi", "Leila", "Tomás", "Björn", "Yusuf", "Amara"]
LAST = ["Smith", "García", "Johnson", "Müller", "Brown", "Rossi", "Williams", "Martin", "Jones", "López", "Silva",
        "Kim", "Nguyen", "Dubois", "Novak", "Kowalski", "Jensen", "Okafor", "Tanaka", "Haddad", "Ferreira",
        "Andersson", "Costa", "Fischer", "Moreau", "Petrov", "Yilmaz", "Quigley", "Zielinski", "Ashworth"]
COMMON = ("the and to of a in is it you that was for on are with as i his they be at one have this from or had by "
          "not word but what some we can out other were all there when up use your how said an each she which do "
          "their time if will way about many then them write would like so these her long make thing see him two "
          "has look more day could go come did number sound no most people my over know water than call first "
          "who may down side been now find any new work part take get place made live where after back little "
          "only round man year came show every good me give our under name very through just form sentence great "
          "think say help low line differ turn cause much mean before move right boy old too same tell does set "
          "three want air well also play small end put home read hand port large spell add even land here must "
          "big high such follow act why ask men change went light kind off need house picture try us again "
          "animal point mother world near build self earth father coffee pizza music").split()


NAME_SKEW = 1.5  # name k of N = N · r^NAME_SKEW


def made_up(known: list[str], count: int, seed: int, syllables=(2, 4)) -> list[str]:
    """`known`, then made-up words of 2 to 4 syllables up to `count` (fixed seed: the same list every run)."""
    rng = random.Random(seed)
    parts = [c + v for c in "bdfghklmnprstvz" for v in "aeiou"]
    words, seen = list(known), {w.lower() for w in known}
    while len(words) < count:
        word = "".join(rng.choice(parts) for _ in range(rng.randint(*syllables)))
        if word not in seen:
            seen.add(word)
            words.append(word)
    return words


def vocabulary() -> list[str]:
    return made_up(COMMON, VOCABULARY, 18)


def names(known: list[str], count: int, seed: int) -> list[str]:
    return [w if w in known else w.capitalize() for w in made_up(known, count, seed, (2, 3))]


def ascii_name(name: str) -> str:
    import unicodedata

    return unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()


SEARCH_INDEXES = ("feed_user_search_idx", "feed_post_search_idx")
RARE_SURNAME = names(LAST, 2000, 2)[1900]


def build(url: str, users: int, posts: int, words: list[str]) -> dict:
    """The rows; returns seconds per step."""
    times = {}
    first, last = names(FIRST, 300, 1), names(LAST, 2000, 2)
    migrate(bench_env(url))
    with connect(url) as conn:
        definitions = dict(conn.execute("SELECT indexname, indexdef FROM pg_indexes WHERE indexname = ANY(%s)",
                                        [list(SEARCH_INDEXES)]).fetchall())
        assert set(definitions) == set(SEARCH_INDEXES), definitions
        for name in SEARCH_INDEXES:
            conn.execute(f"DROP INDEX {name}")
        t0 = time.perf_counter()
        conn.execute(
            "INSERT INTO feed_user (password, is_superuser, username, first_name, last_name, email, is_staff,"
            " is_active, date_joined, display_name, bio)"
            " SELECT '!', false, (%(fa)s::text[])[p.f] || '_' || (%(la)s::text[])[p.l] || '_' || g, '', '', '',"
            "        false, true, now(), (%(first)s::text[])[p.f] || ' ' || (%(last)s::text[])[p.l], ''"
            " FROM generate_series(1, %(n)s) g"
            " CROSS JOIN LATERAL (SELECT 1 + floor(%(nf)s * power(random(), %(skew)s) + 0 * g)::int AS f,"
            "                            1 + floor(%(nl)s * power(random(), %(skew)s) + 0 * g)::int AS l) p",
            {"first": first, "last": last, "fa": [ascii_name(n) for n in first], "la": [ascii_name(n) for n in last],
             "nf": len(first), "nl": len(last), "n": users, "skew": NAME_SKEW})
        conn.execute("INSERT INTO feed_userstats (user_id, follower_count)"
                     " SELECT id, floor(100000 * power(random(), 12))::bigint FROM feed_user WHERE random() < 0.5")
        times["users"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        chunk = 100_000
        for start in range(0, posts, chunk):
            conn.execute(
                "INSERT INTO feed_post (author_id, text, created_at, live_seq)"
                " SELECT 1 + floor(random() * %(users)s)::int, t.text,"
                "        now() - make_interval(secs => %(posts)s - g), 0"
                " FROM generate_series(%(start)s, %(end)s) g"
                " CROSS JOIN LATERAL (SELECT string_agg((%(words)s::text[])[1 + floor(%(v)s * power(random(), %(skew)s))::int], ' ')"
                "                     AS text FROM generate_series(1, 6 + (g %% 20)) k) t",
                {"users": users, "posts": posts, "start": start + 1, "end": min(start + chunk, posts),
                 "words": words, "v": len(words), "skew": SKEW})
            print(f"  {min(start + chunk, posts):,} posts", file=sys.stderr, flush=True)
        times["posts (with the generated tsvector column)"] = time.perf_counter() - t0
        for name in SEARCH_INDEXES:
            t0 = time.perf_counter()
            conn.execute(definitions[name])
            times[f"index {name}"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        conn.execute("VACUUM ANALYZE")
        times["vacuum analyze"] = time.perf_counter() - t0
    return {k: round(v, 1) for k, v in times.items()}


def sizes(url: str) -> dict:
    mb = lambda n: round(n / 2**20, 1)  # noqa: E731
    with connect(url) as conn:
        out = {name: mb(conn.execute("SELECT pg_relation_size(%s::regclass)", [name]).fetchone()[0])
               for name in (*SEARCH_INDEXES, "feed_post", "feed_user")}
        out["feed_post.search_vector (column, all rows)"] = mb(
            conn.execute("SELECT sum(pg_column_size(search_vector)) FROM feed_post").fetchone()[0])
    return {f"{k} MB": v for k, v in out.items()}


def cases(words: list[str], url: str) -> tuple[dict, dict]:
    with connect(url) as conn:
        username = conn.execute("SELECT username FROM feed_user ORDER BY id DESC LIMIT 1").fetchone()[0]
    people = {
        "common surname 'smith'": "smith",
        f"rare surname '{RARE_SURNAME.lower()}'": RARE_SURNAME.lower(),
        "start of a first name 'mar'": "mar",
        "two words 'maria gar'": "maria gar",
        "exact username": username,
        "no accent 'zoe'": "zoe",
        "one letter 'j'": "j",
    }
    posts = {
        f"most common word '{words[0]}'": words[0],
        f"common word '{words[20]}'": words[20],
        f"middling word '{words[1000]}'": words[1000],
        f"rare word '{words[15000]}'": words[15000],
        "two-letter prefix 'co'": "co",
        f"four-letter prefix '{words[3000][:4]}'": words[3000][:4],
        f"two words '{words[1]} {words[150]}'": f"{words[1]} {words[150]}",
        f"common word, prefix '{words[0]} {words[2000][:3]}'": f"{words[0]} {words[2000][:3]}",
        f"phrase '\"{words[0]} {words[1]}\"'": f'"{words[0]} {words[1]}"',
    }
    return people, posts


def measure(url: str, reps: int, words: list[str]) -> dict:
    os.environ.update(bench_env(url))
    import django

    django.setup()
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from feed import search
    from feed.models import User

    viewer = User.objects.order_by("id").first()
    people_cases, post_cases = cases(words, url)
    runs = {("people", name): (lambda q=q: search.people(viewer, q)) for name, q in people_cases.items()}
    runs.update({("posts", name): (lambda q=q: search.posts(viewer, q)) for name, q in post_cases.items()})
    common = words[0]
    first = search.posts(viewer, common)
    runs[("posts", f"second page of '{common}'")] = lambda: search.posts(
        viewer, common, after=search.decode_cursor(first.next_cursor))
    first_people = search.people(viewer, "smith")
    runs[("people", "second page of 'smith'")] = lambda: search.people(
        viewer, "smith", after=search.decode_cursor(first_people.next_cursor))

    found = {key: len(fn().items) for key, fn in runs.items()}  # and a warm-up
    load_before = os.getloadavg()
    times = {key: [] for key in runs}
    for _ in range(reps):
        for key, fn in runs.items():
            t0 = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - t0)
    load_after = os.getloadavg()

    def summary(samples):
        return {"p50_ms": ms(percentile(samples, 50)), "p95_ms": ms(percentile(samples, 95))}

    result = {"load_average_before": [round(x, 2) for x in load_before],
              "load_average_after": [round(x, 2) for x in load_after], "kinds": {}, "cases": {}}
    for kind in ("people", "posts"):
        samples = [t for (k, _), ts in times.items() if k == kind for t in ts]
        result["kinds"][kind] = summary(samples)
        result["cases"][kind] = {name: {**summary(ts), "results": found[(k, name)]}
                                 for (k, name), ts in times.items() if k == kind}

    # EXPLAIN of the key query of one search of each kind, as feed.search sends it.
    plans = {}
    for kind, fn in (("people 'smith'", lambda: search.people(viewer, "smith")),
                     ("posts '" + words[1000] + "'", lambda: search.posts(viewer, words[1000])),
                     ("posts '" + common + "'", lambda: search.posts(viewer, common))):
        with CaptureQueriesContext(connection) as ctx:
            fn()
        plans[kind] = []
        with connection.cursor() as cursor:
            for captured in ctx.captured_queries:
                if '"feed_' not in captured["sql"]:  # feed.search's own SQL, not the ORM's loading of the page
                    cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + captured["sql"])
                    plans[kind] += [row[0] for row in cursor.fetchall()] + [""]
    result["plans"] = plans

    # Alternative 1: rank every match of a post search, not the newest POST_CANDIDATES.
    window = search.POST_CANDIDATES
    search.POST_CANDIDATES = 10**9
    every = {}
    for name, q in post_cases.items():
        samples = []
        for _ in range(max(3, reps // 4)):
            t0 = time.perf_counter()
            search.posts(viewer, q)
            samples.append(time.perf_counter() - t0)
        every[name] = summary(samples)
    search.POST_CANDIDATES = window
    result["post_candidates"] = window
    result["alternative: posts ranked over every match"] = every

    # Alternative 2: people by pg_trgm and a word-start regex, ranked the same way.
    result["alternative: people by pg_trgm"] = trigram_people(connection, people_cases, max(3, reps // 4), summary)
    return result


def trigram_people(connection, people_cases: dict, reps: int, summary) -> dict:
    """The same ranking over people found by a trigram index: every word starts a word (`\\m`)."""
    import re

    name = "lower(username::text || ' ' || display_name::text)"
    with connection.cursor() as cursor:
        cursor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        cursor.execute("DROP INDEX IF EXISTS bench_user_trgm_idx")
        t0 = time.perf_counter()
        cursor.execute(f"CREATE INDEX bench_user_trgm_idx ON feed_user USING gin (({name}) gin_trgm_ops)")
        built = time.perf_counter() - t0
        cursor.execute("ANALYZE feed_user")
        cursor.execute("SELECT pg_relation_size('bench_user_trgm_idx')")
        size = cursor.fetchone()[0]
    out = {"index build s": round(built, 1), "index MB": round(size / 2**20, 1)}
    for case, q in people_cases.items():
        words = re.findall(r"[^\W_]+", q.lower())
        sql = ("SELECT id, COALESCE(follower_count, 0) AS f FROM feed_user LEFT JOIN feed_userstats ON user_id = id"
               f" WHERE is_active AND {' AND '.join(f'{name} ~ %s' for _ in words)}"
               " ORDER BY CASE WHEN lower(username) = %s THEN 0 WHEN starts_with(lower(username), %s) THEN 1 ELSE 2 END,"
               " f DESC, id LIMIT 21")
        params = [r"\m" + re.escape(w) for w in words] + [q, q]
        samples = []
        with connection.cursor() as cursor:
            for _ in range(reps):
                t0 = time.perf_counter()
                cursor.execute(sql, params)
                cursor.fetchall()
                samples.append(time.perf_counter() - t0)
        out[case] = summary(samples)
    with connection.cursor() as cursor:
        cursor.execute("DROP INDEX bench_user_trgm_idx")  # the measurements of Herald's own search run without it
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=200_000)
    parser.add_argument("--posts", type=int, default=1_000_000)
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--reuse", action="store_true",
                        help="measure again on the last run's database (same --users and --posts)")
    args = parser.parse_args()
    url = scratch_url("search")
    words = vocabulary()
    build_times = {}
    if args.reuse:  # the data, and so its build times, are the last run's
        import json

        from bench.benchlib import RESULTS

        build_times = json.loads((RESULTS / "search.json").read_text()).get("build_seconds", {})
    else:
        recreate_database(url)
        print(f"building {args.users:,} users and {args.posts:,} posts…", file=sys.stderr, flush=True)
        build_times = build(url, args.users, args.posts, words)
    results = measure(url, args.reps, words)
    result = {"machine": machine(), "users": args.users, "posts": args.posts, "reps": args.reps, "reused_data": args.reuse,
              "target_p50_ms": TARGET_P50_MS, "build_seconds": build_times,
              "sizes": sizes(url), **results}
    path = write_result("search", result)
    for kind, summary in results["kinds"].items():
        print(f"{kind}: p50 {summary['p50_ms']} ms, p95 {summary['p95_ms']} ms", file=sys.stderr)
        for name, case in results["cases"][kind].items():
            print(f"    {name}: {case}", file=sys.stderr)
    print(f"load average {results['load_average_before']} → {results['load_average_after']}; sizes {result['sizes']};"
          f" wrote {path}", file=sys.stderr)
    missed = [kind for kind, summary in results["kinds"].items() if summary["p50_ms"] > TARGET_P50_MS]
    if missed:
        sys.exit(f"p50 over {TARGET_P50_MS} ms: {', '.join(missed)}")


if __name__ == "__main__":
    main()
