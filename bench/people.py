"""Finding people at 200,000 users and 2,000,000 follows: stored follower counts (feed.counters)
against counting follows per call, as Herald did before counts were stored.

Data (a PostgreSQL scratch database, rows made with INSERT … SELECT generate_series): users
u1 … u200000 with display names "Person <md5>", each following 10 others picked with a heavy skew
(followee = 1 + floor(200,000 · r⁴)), so a few accounts have tens of thousands of followers and most
have none, as on a real site. Counts are then filled by `manage.py recount_followers` (timed), and
VACUUM ANALYZE runs before anything is measured.

Measured in-process (the ORM queries the API and pages run, through Django, `--reps` times each,
interleaved, p50/p95):
- search: a short prefix ("u1", about 11,000 matches ranked), a long one ("u12345"), a display-name
  prefix ("person 0a");
- who to follow: for a new account (follows nobody: "most followed" over everyone) and for one that
  follows 10 people (friends of friends first);
- a profile's follower count, for the most followed account;
each with the stored counts (feed.queries as it is) and with follows counted per call (the previous
annotation, rebuilt here); and the write that keeps counts: follow + unfollow of the most followed
account (feed.services, no-op pushes), p50.

    python bench/people.py [--users 200000] [--reps 30]

Writes bench/results/people.json.
"""
import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.benchlib import (  # noqa: E402
    ROOT, bench_env, connect, create_users_sql, machine, migrate, ms, percentile, recreate_database, scratch_url,
    write_result,
)

FOLLOWS_EACH = 10


def build(url: str, users: int) -> float:
    """Users and follows; returns the seconds `recount_followers` took."""
    import subprocess

    env = bench_env(url)
    migrate(env)
    with connect(url) as conn:
        sql, params = create_users_sql("u", users)
        conn.execute(sql, params)
        conn.execute("UPDATE feed_user SET display_name = 'Person ' || md5(id::text)")
        conn.execute(
            "INSERT INTO feed_follow (follower_id, followee_id, created_at)"
            " SELECT DISTINCT follower, followee, now() FROM ("
            "   SELECT f.id AS follower, 1 + floor(%s * power(random(), 4))::int AS followee"
            "   FROM feed_user f CROSS JOIN generate_series(1, %s) g) picks"
            " WHERE followee <> follower"
            " ON CONFLICT DO NOTHING", [users, FOLLOWS_EACH])
        conn.execute("INSERT INTO feed_user (password, is_superuser, username, first_name, last_name, email,"
                     " is_staff, is_active, date_joined, display_name, bio)"
                     " VALUES ('!', false, 'newcomer', '', '', '', false, true, now(), '', '')")
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "manage.py", "recount_followers"], cwd=ROOT, env=env, check=True,
                   capture_output=True)
    recount = time.perf_counter() - t0
    with connect(url) as conn:
        conn.execute("VACUUM ANALYZE")
    return recount


def measure(url: str, reps: int) -> dict:
    os.environ.update(bench_env(url))
    import django

    django.setup()
    from django.db.models import Count, Exists, OuterRef, Value

    from feed import counters, queries, services
    from feed.models import Follow, User

    def counted_people(viewer, qs):
        """feed.queries._people_for as it was before counts were stored."""
        qs = qs.only("id", "username", "display_name").annotate(
            follower_count=queries.count_of(Follow, followee=OuterRef("pk")))
        if viewer is not None:
            return qs.annotate(followed_by_me=Exists(Follow.objects.filter(follower=viewer, followee=OuterRef("pk"))))
        return qs.annotate(followed_by_me=Value(False))

    def counted_search(viewer, q):
        from django.db.models import Case, Q, When
        from django.db.models.functions import Lower

        prefix = q.lower()
        qs = (User.objects.filter(is_active=True)
              .alias(username_lower=Lower("username"), display_name_lower=Lower("display_name"))
              .filter(Q(username_lower__startswith=prefix) | Q(display_name_lower__startswith=prefix))
              .alias(exact=Case(When(username_lower=prefix, then=Value(0)), default=Value(1))))
        return list(counted_people(viewer, qs).order_by("exact", "-follower_count", "username")[:20])

    def counted_suggested(user, limit=10):
        followees = Follow.objects.filter(follower=user).values("followee_id")
        candidates = User.objects.filter(is_active=True).exclude(pk=user.pk).exclude(pk__in=followees)
        people = list(counted_people(None, candidates.filter(follower_set__follower__in=followees))
                      .annotate(mutual=Count("follower_set")).order_by("-mutual", "-follower_count", "username")[:limit])
        if len(people) < limit:
            popular = counted_people(None, candidates.exclude(pk__in=[u.pk for u in people]))
            people += list(popular.order_by("-follower_count", "username")[: limit - len(people)])
        return people

    star = User.objects.get(username="u1")
    newcomer = User.objects.get(username="newcomer")
    regular = User.objects.annotate(n=Count("following_set")).filter(n__gte=FOLLOWS_EACH - 2).order_by("-pk").first()
    cases = {
        "search 'u1' (short prefix)": (lambda: list(queries.search_users(regular, "u1")),
                                       lambda: counted_search(regular, "u1")),
        "search 'u12345'": (lambda: list(queries.search_users(regular, "u12345")),
                            lambda: counted_search(regular, "u12345")),
        "search 'person 0a' (display name)": (lambda: list(queries.search_users(regular, "person 0a")),
                                              lambda: counted_search(regular, "person 0a")),
        "who to follow, new account": (lambda: queries.suggested_users(newcomer),
                                       lambda: counted_suggested(newcomer)),
        "who to follow, follows 10": (lambda: queries.suggested_users(regular),
                                      lambda: counted_suggested(regular)),
        "follower count of the most followed": (lambda: counters.follower_count(star),
                                                lambda: Follow.objects.filter(followee=star).count()),
    }
    # Both ways give the same people in the same order (counts equal): the comparison is fair.
    for name, (stored, counted) in cases.items():
        a, b = stored(), counted()
        if isinstance(a, list):  # people with followers: the same, in the same order (the rest differs:
            # search now lists username matches before display-name matches among the unfollowed)
            a = [(u.username, u.follower_count) for u in a if u.follower_count]
            b = [(u.username, u.follower_count) for u in b if u.follower_count]
        if a != b:
            sys.exit(f"{name}: stored and counted disagree:\n  {a}\n  {b}")
    times = {name: {"stored": [], "counted": []} for name in cases}
    for _ in range(reps):
        for name, (stored, counted) in cases.items():
            for label, fn in (("stored", stored), ("counted", counted)):
                t0 = time.perf_counter()
                fn()
                times[name][label].append(time.perf_counter() - t0)
    results = {}
    for name, by in times.items():
        results[name] = {label: {"p50_ms": ms(percentile(v, 50)), "p95_ms": ms(percentile(v, 95))}
                         for label, v in by.items()}
        results[name]["speedup_p50"] = round(results[name]["counted"]["p50_ms"] / max(results[name]["stored"]["p50_ms"], 0.001), 1)
    writes = []
    for _ in range(reps):
        t0 = time.perf_counter()
        services.follow(newcomer, star.username)
        services.unfollow(newcomer, star.username)
        writes.append(time.perf_counter() - t0)

    assert not counters.wrong_counts([star.pk, newcomer.pk]), "counts off after the writes"
    results["follow + unfollow of the most followed (stored counts kept)"] = {"p50_ms": ms(percentile(writes, 50))}
    results["followers of the most followed"] = Follow.objects.filter(followee=star).count()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=200_000)
    parser.add_argument("--reps", type=int, default=30)
    args = parser.parse_args()
    url = scratch_url("people")
    recreate_database(url)
    print(f"building {args.users:,} users and about {args.users * FOLLOWS_EACH:,} follows…", file=sys.stderr, flush=True)
    recount = build(url, args.users)
    results = measure(url, args.reps)
    for name, value in results.items():
        print(f"  {name}: {value}", file=sys.stderr)
    path = write_result("people", {
        "machine": machine(), "users": args.users, "follows_each": FOLLOWS_EACH, "reps": args.reps,
        "recount_followers_seconds": round(recount, 2), "results": results,
    })
    print(f"recount_followers: {recount:.2f} s; wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
