"""Read paths and storage at 1,000,000 notification rows, current schema vs the previous one.

Data (PostgreSQL scratch databases, rows inserted with one INSERT … SELECT generate_series, in
time order, so every user's history is interleaved with everyone else's as it is in production):

| user | rows | read | unread |
|---|---|---|---|
| heavy | 200,000 | watermark at seq 150,000, and every 10th row above it read by itself | 45,000 |
| mark100k | 100,000 | none | 100,000 |
| mark20k | 20,000 | none | 20,000 |
| o1 … o6800 | 100 each (680,000) | watermark at 80, every 10th above it by itself | 18 each |

Kinds cycle new_post / comment / like / follow (post_ref on three of four, comment_ref on one of
four, a dedupe key on every row, texts of 50–70 characters); the newest 1,000 rows still owe their
push. Every state row is exact (last_seq, unread_count, read_seq). The previous schema (migration
notifier 0001 on its own scratch database) gets the same rows as that schema stored them: read
rows carry read_at (it had no watermark; mark-all-read wrote every row), delivered rows
delivery='delivered', attempts=1, last_attempt_at; the 1,000 owed pushes delivery='pending'.
VACUUM ANALYZE before anything is measured.

Measured (current schema, Herald under gunicorn with 2 sync workers, token auth, one keep-alive
client, NOTIFIER_PUBLISHER=bench.noop.NoopPublisher: the read-state push after mark-all-read is
a no-op):
- p50/p95 over HTTP of GET /api/notifications/, ?unread=true, ?after_seq=<last_seq - 20> and
  /api/notifications/unread-count/ for `heavy` (and, for scale, a typical user o1), requests
  interleaved round-robin; target p50 <= 10 ms for the lists, <= 3 ms for the count. Also ?unread=true for a user with 100,000
  rows all read (mark100k right after marking all read).
- mark-all-read for 20,000 and 100,000 unread: notifier.services.mark_all_read in-process, and
  POST /api/notifications/read-all/ over HTTP; the state is put back before each call; target
  <= 15 ms. For comparison, the previous schema's mark-all-read (one UPDATE of every unread row,
  as its services.mark_all_read did) on its database.
- table and index sizes (pg_relation_size of the heap and of each index from pg_indexes, and of
  notifier_pendingpush) for both schemas, per 1,000,000 rows.
- EXPLAIN (ANALYZE, BUFFERS) of the list queries as the API builds them (in the JSON).

    python bench/read_paths.py [--requests 300] [--mark-reps 30] [--peer hq | --no-peer]

Writes bench/results/read_paths.json. Unless --no-peer, the same users and rows in
django-notifications-hq (bench/peer_hq.py, in its own venv) are measured too, under "peer_hq".
"""
import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.benchlib import (  # noqa: E402
    NOOP_PUBLISHER, ROOT, Api, bench_env, connect, create_users_sql, free_port, machine, migrate, ms,
    recreate_database, scratch_url, start_gunicorn, stats_ms, stop, write_result,
)

TARGET_READ_P50_MS = 10.0  # a page of the list (any filter, or a catch-up)
TARGET_COUNT_P50_MS = 3.0  # the unread count
TARGET_MARK_MS = 15.0
OTHERS = 6800
PENDING = 1000
# (username, rows, read watermark, every n-th row above it read by itself; 0: none)
GROUPS = [("heavy", 200_000, 150_000, 10), ("mark100k", 100_000, 0, 0), ("mark20k", 20_000, 0, 0)]
OTHER_GROUP = (100, 80, 10)
TOKEN_USERS = ["heavy", "mark100k", "mark20k", "o1"]


def fill(url: str, schema: str, scale: float = 1.0) -> int:
    """The same 1,000,000 rows into either schema ('v2': current, 'v1': migration 0001).
    (--scale shrinks every group, for trying the script out.)"""
    groups = [(name, int(n * scale), int(read_seq * scale), every) for name, n, read_seq, every in GROUPS]
    others = max(1, int(OTHERS * scale))
    with connect(url) as conn:
        for name, *_ in groups:
            conn.execute(*create_users_sql(name, 1))
            conn.execute("UPDATE feed_user SET username = %s WHERE username = %s", [name, name + "1"])
        conn.execute(*create_users_sql("o", others))
        conn.execute("CREATE TABLE bench_groups (uid bigint PRIMARY KEY, n int, read_seq int, every int)")
        for name, n, read_seq, every in groups:
            conn.execute("INSERT INTO bench_groups SELECT id, %s, %s, %s FROM feed_user WHERE username = %s",
                         [n, read_seq, every, name])
        conn.execute("INSERT INTO bench_groups SELECT id, %s, %s, %s FROM feed_user WHERE username ~ '^o[0-9]+$'",
                     list(OTHER_GROUP))
        o_min = conn.execute("SELECT min(id) FROM feed_user WHERE username ~ '^o[0-9]+$'").fetchone()[0]
        # Read by the watermark (v2) or by its own read_at (v1, and v2 above the watermark).
        by_itself = "(b.every > 0 AND g > b.read_seq AND g % b.every = 0)"
        read = by_itself if schema == "v2" else f"(g <= b.read_seq OR {by_itself})"
        extra_cols = ", delivery, attempts, last_error, last_attempt_at, next_attempt_at" if schema == "v1" else ""
        extra_vals = ", 'delivered', 1, '', t.created_at + interval '1 second', NULL" if schema == "v1" else ""
        t0 = time.perf_counter()
        rows = f"""
            SELECT t.uid, t.actor, t.kind, t.g, t.post_ref, t.comment_ref, t.text, t.url,
                   t.created_at, CASE WHEN t.read THEN t.created_at + interval '1 hour' END AS read_at, t.at
            FROM (
                SELECT b.uid, g, {o_min} + (b.uid + g) % {others} AS actor,
                       (ARRAY['new_post', 'comment', 'like', 'follow'])[1 + g % 4] AS kind,
                       CASE WHEN g % 4 IN (0, 1) THEN 1 + (7 * g) % 200000
                            WHEN g % 4 = 2 THEN 1 + (7 * g + b.uid) % 200000 END AS post_ref,
                       CASE WHEN g % 4 = 1 THEN 1 + (13 * g) % 1000000 END AS comment_ref,
                       (ARRAY['Someone Example posted: “', 'Someone Example commented on your post: “',
                              'Someone Example liked your post: “', 'Someone Example started following you.'])[1 + g % 4]
                       || CASE WHEN g % 4 <> 3 THEN left(md5(g::text), 12 + g % 20) || '”' ELSE '' END AS text,
                       '/posts/' || (1 + (7 * g + b.uid) % 200000) || '/' AS url,
                       now() - interval '30 days' * (1 - g::float8 / b.n) AS created_at,
                       {read} AS read, g::float8 / b.n AS at
                FROM bench_groups b, generate_series(1, b.n) g
            ) t
        """
        if schema == "v1":
            conn.execute(f"""
                INSERT INTO notifier_notification (recipient_id, actor_id, kind, seq, post_ref, comment_ref, dedupe_key,
                                                   text, url, created_at, read_at{extra_cols})
                SELECT r.uid, r.actor, r.kind, r.g, r.post_ref, r.comment_ref, r.kind || ':' || r.g, r.text, r.url,
                       r.created_at, r.read_at{extra_vals.replace("t.created_at", "r.created_at")}
                FROM ({rows}) r ORDER BY r.at, r.uid
            """)
        else:
            # Events: the g-th new post or comment of the timeline is one event, told to every user
            # whose history has a g-th item (6,800 and more for g <= 100, up to 3 beyond: a fan-out
            # to followers, a comment to a post's followers); each like and follow is its own event
            # (one recipient: the post's author, the person followed). Their ids: g for the shared
            # ones, 1,000,000 + a row number for the others.
            conn.execute(f"CREATE TEMP TABLE bench_rows AS SELECT r.*, CASE WHEN r.kind IN ('new_post', 'comment')"
                         f" THEN r.g ELSE 1000000 + row_number() OVER (ORDER BY r.at, r.uid) END AS event_id FROM ({rows}) r")
            conn.execute("""
                INSERT INTO notifier_notificationevent (id, kind, actor_id, post_ref, comment_ref, dedupe_key, text, url,
                                                        created_at)
                SELECT DISTINCT ON (event_id) event_id, kind, actor, post_ref, comment_ref,
                       CASE WHEN kind = 'comment' THEN 'comment:' || comment_ref END, text, url, created_at
                FROM bench_rows ORDER BY event_id, at
            """)
            conn.execute("SELECT setval(pg_get_serial_sequence('notifier_notificationevent', 'id'),"
                         " (SELECT max(id) FROM notifier_notificationevent))")
            conn.execute("""
                INSERT INTO notifier_notification (recipient_id, seq, event_id, kind, actor_count, dedupe_key, read_at)
                SELECT uid, g, event_id, kind, 1, CASE WHEN kind <> 'comment' THEN kind || ':' || g END, read_at
                FROM bench_rows ORDER BY at, uid
            """)
        print(f"  {schema}: notification rows inserted in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
        newest = f"SELECT id FROM notifier_notification ORDER BY id DESC LIMIT {max(1, int(PENDING * scale))}"
        if schema == "v2":
            conn.execute("INSERT INTO notifier_notificationstate (user_id, last_seq, unread_count, read_seq)"
                         " SELECT b.uid, b.n, count(*) FILTER (WHERE n.seq > b.read_seq AND n.read_at IS NULL), b.read_seq"
                         " FROM bench_groups b JOIN notifier_notification n ON n.recipient_id = b.uid"
                         " GROUP BY b.uid, b.n, b.read_seq")
            conn.execute("INSERT INTO notifier_pendingpush (notification_id, recipient_id, attempts, due_at, last_error)"
                         f" SELECT id, recipient_id, 0, now() + interval '1 minute', '' FROM notifier_notification"
                         f" WHERE id IN ({newest})")
        else:
            conn.execute("INSERT INTO notifier_notificationstate (user_id, last_seq, unread_count)"
                         " SELECT b.uid, b.n, count(*) FILTER (WHERE n.read_at IS NULL)"
                         " FROM bench_groups b JOIN notifier_notification n ON n.recipient_id = b.uid"
                         " GROUP BY b.uid, b.n")
            conn.execute("UPDATE notifier_notification SET delivery = 'pending', attempts = 0, last_attempt_at = NULL,"
                         f" next_attempt_at = now() + interval '1 minute' WHERE id IN ({newest})")
        if schema == "v2":
            conn.execute("INSERT INTO authtoken_token (key, user_id, created)"
                         " SELECT substr(md5(id || 'a') || md5(id || 'b'), 1, 40), id, now() FROM feed_user"
                         " WHERE username = ANY(%s)", [TOKEN_USERS])
        conn.execute("VACUUM ANALYZE")
        return conn.execute("SELECT count(*) FROM notifier_notification").fetchone()[0]


def sizes(url: str, table: str = "notifier_notification") -> dict:
    """Heap and every index of the notifications `table` (bench/peer_hq.py passes its peer's) and
    of Herald's side tables where they exist, per 1,000,000 rows of `table`."""
    main = table
    with connect(url) as conn:
        rows = conn.execute(f"SELECT count(*) FROM {main}").fetchone()[0]
        tables = {}
        for table in (main, "notifier_notificationevent", "notifier_pendingpush", "notifier_notificationstate"):
            if not conn.execute("SELECT to_regclass(%s)", [table]).fetchone()[0]:
                continue
            heap, table_size = conn.execute("SELECT pg_relation_size(%s), pg_table_size(%s)", [table, table]).fetchone()
            indexes = dict(conn.execute(
                "SELECT indexname, pg_relation_size(format('%%I', indexname)::regclass) FROM pg_indexes"
                " WHERE tablename = %s ORDER BY indexname", [table]).fetchall())
            options = conn.execute("SELECT reloptions FROM pg_class WHERE relname = %s", [table]).fetchone()[0]
            tables[table] = {"heap_bytes": heap, "table_bytes": table_size, "indexes": indexes,
                             "index_bytes": sum(indexes.values()), "total_bytes": table_size + sum(indexes.values()),
                             "reloptions": options}
        columns = [r[0] for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = %s"
            " ORDER BY ordinal_position", [main]).fetchall()]
    n = tables[main]
    scale = 1_000_000 / rows
    return {
        "rows": rows, "columns": columns, "tables": tables,
        "per_million_rows": {
            "notification_heap_mb": round(n["heap_bytes"] * scale / 2**20, 1),
            "notification_indexes_mb": round(n["index_bytes"] * scale / 2**20, 1),
            "notification_index_count": len(n["indexes"]),
            "event_mb": round(tables.get("notifier_notificationevent", {}).get("total_bytes", 0) * scale / 2**20, 1),
            "pendingpush_mb": round(tables.get("notifier_pendingpush", {}).get("total_bytes", 0) * scale / 2**20, 2),
            "total_mb": round(sum(t["total_bytes"] for name, t in tables.items()
                                  if name != "notifier_notificationstate") * scale / 2**20, 1),
        },
    }


def http_reads(port: int, tokens: dict, requests: int, last_seq: dict, unread: dict) -> dict:
    heavy, typical = Api(port, tokens["heavy"]), Api(port, tokens["o1"])
    paths = {
        "list": "/api/notifications/",
        "unread": "/api/notifications/?unread=true",
        "after_seq": "/api/notifications/?after_seq={after}",
        "unread_count": "/api/notifications/unread-count/",
    }
    cases = []
    for who, api in (("heavy", heavy), ("typical", typical)):
        for name, path in paths.items():
            cases.append((f"{who}:{name}", api, path.format(after=last_seq[who] - 20), who, name))

    def check(name, who, status, body):
        assert status == 200, (name, status, body)
        if name == "unread_count":
            assert body["unread_count"] == unread[who], (name, body)
        elif name == "after_seq":
            assert [r["seq"] for r in body["results"]] == list(range(last_seq[who] - 19, last_seq[who] + 1)), name
        else:
            assert len(body["results"]) == min(20, last_seq[who] if name == "list" else unread[who]), name
            if name == "unread":
                assert not any(r["read"] for r in body["results"]), name

    samples = {label: [] for label, *_ in cases}
    for i in range(20 + requests):  # 20 warm-up rounds
        for label, api, path, who, name in cases:
            elapsed, status, body = api.timed("GET", path)
            check(name, who, status, body)
            if i >= 20:
                samples[label].append(elapsed)
    return {label: stats_ms(values) for label, values in samples.items()}


def restore_unread(uid: int, n: int) -> None:
    from notifier.models import NotificationState

    NotificationState.objects.filter(pk=uid).update(read_seq=0, unread_count=n)


def mark_all_read_runs(port: int, tokens: dict, reps: int, groups: list) -> dict:
    from feed.models import User
    from notifier import services
    from notifier.models import NotificationState

    out = {}
    for name, n, *_ in groups[1:]:
        user = User.objects.get(username=name)
        inproc, http = [], []
        for _ in range(3):  # warm-up
            restore_unread(user.pk, n)
            services.mark_all_read(user)
        for _ in range(reps):
            restore_unread(user.pk, n)
            t0 = time.perf_counter()
            marked = services.mark_all_read(user)
            inproc.append(time.perf_counter() - t0)
            assert marked == n, (name, marked)
        api = Api(port, tokens[name])
        for i in range(3 + reps):
            restore_unread(user.pk, n)
            elapsed, status, body = api.timed("POST", "/api/notifications/read-all/")
            assert status == 200 and body == {"marked": n, "unread_count": 0}, (status, body)
            if i >= 3:
                http.append(elapsed)
        state = NotificationState.objects.get(pk=user.pk)
        assert state.read_seq == state.last_seq == n and state.unread_count == 0
        out[name] = {"unread": n, "in_process_ms": stats_ms(inproc), "http_ms": stats_ms(http)}
    return out


def unread_after_mark_all(port: int, tokens: dict, requests: int) -> dict:
    """?unread=true for a user whose 100,000 notifications are all read (mark100k, just marked)."""
    api = Api(port, tokens["mark100k"])
    values = []
    for i in range(5 + requests):
        elapsed, status, body = api.timed("GET", "/api/notifications/?unread=true")
        assert status == 200 and body["results"] == [], body
        if i >= 5:
            values.append(elapsed)
    return stats_ms(values)


def old_mark_all_read(url: str, reps: int, groups: list) -> dict:
    """The previous schema's mark-all-read: lock the state, UPDATE every unread row, zero the count."""
    out = {}
    with connect(url) as conn:
        for name, n, *_ in groups[1:]:
            uid = conn.execute("SELECT id FROM feed_user WHERE username = %s", [name]).fetchone()[0]
            times = []
            for _ in range(reps):
                t0 = time.perf_counter()
                with conn.transaction():
                    conn.execute("SELECT unread_count FROM notifier_notificationstate WHERE user_id = %s FOR UPDATE", [uid])
                    changed = conn.execute("UPDATE notifier_notification SET read_at = now()"
                                           " WHERE recipient_id = %s AND read_at IS NULL", [uid]).rowcount
                    conn.execute("UPDATE notifier_notificationstate SET unread_count = 0 WHERE user_id = %s", [uid])
                times.append(time.perf_counter() - t0)
                assert changed == n, (name, changed)
                conn.execute("UPDATE notifier_notification SET read_at = NULL WHERE recipient_id = %s", [uid])
                conn.execute("UPDATE notifier_notificationstate SET unread_count = %s WHERE user_id = %s", [n, uid])
                conn.execute("VACUUM ANALYZE notifier_notification")
            out[name] = {"unread": n, "runs_ms": [ms(t) for t in times], "median_ms": ms(sorted(times)[len(times) // 2])}
    return out


def explain_plans(last_seq: dict) -> dict:
    from feed.models import User
    from notifier.models import Notification

    plans = {}
    for who in ("heavy", "mark100k"):
        uid = User.objects.get(username=who).pk
        qs = Notification.objects.for_user(uid).select_related("event__actor")
        queries = {"unread": qs.unread().order_by("-seq")[:21]}
        if who == "heavy":
            queries = {"list": qs.order_by("-seq")[:21], **queries,
                       "after_seq": qs.filter(seq__gt=last_seq[who] - 20).order_by("seq")[:101]}
        for name, query in queries.items():
            plans[f"{who}:{name}"] = query.explain(analyze=True, buffers=True)
    # The other indexes' named queries (notifier.models: each index serves one): the mentions tab
    # (notification_mentions_idx), what is about a post (event_post_ref_idx, then the recipients'
    # rows by the event index: withdraw, opening a post), a group's item (notification_group_unique).
    from notifier import inbox
    from notifier.models import NotificationEvent

    heavy = User.objects.get(username="heavy").pk
    post = NotificationEvent.objects.filter(kind="new_post").order_by("pk").values_list("post_ref", flat=True).first()
    group = Notification.objects.filter(recipient_id=heavy, dedupe_key__isnull=False).order_by("-seq").first()
    others = {
        "heavy:mentions": inbox.filtered(Notification.objects.for_user(heavy), inbox.MENTIONS).order_by("-seq")[:21],
        "about_post": Notification.objects.filter(event__in=NotificationEvent.objects.filter(post_ref=post).values("pk")),
        "group_item": Notification.objects.filter(recipient_id=heavy, dedupe_key=group.dedupe_key if group else ""),
    }
    for name, query in others.items():
        plans[name] = query.explain(analyze=True, buffers=True)
    return plans


def run(requests: int, mark_reps: int, scale: float) -> dict:
    groups = [(name, int(n * scale), int(read_seq * scale), every) for name, n, read_seq, every in GROUPS]
    started_on = machine()  # the commit at the start: others may commit while this runs
    url, url_v1 = scratch_url("reads"), scratch_url("reads_v1")
    result = {"publisher": f"{NOOP_PUBLISHER} (no-op)", "database": "postgresql"}

    # Before: the previous schema (notifier 0001), same rows; its sizes and its mark-all-read.
    recreate_database(url_v1)
    env_v1 = bench_env(url_v1, TASK_BACKEND="immediate")
    migrate(env_v1, "notifier", "0001")
    print("filling the previous schema (notifier 0001)…", file=sys.stderr, flush=True)
    fill(url_v1, "v1", scale)
    result["sizes_before"] = sizes(url_v1)
    result["mark_all_read_before_ms"] = old_mark_all_read(url_v1, 3, groups)

    # After: the current schema.
    recreate_database(url)
    env = bench_env(url, TASK_BACKEND="immediate")
    migrate(env)
    print("filling the current schema…", file=sys.stderr, flush=True)
    fill(url, "v2", scale)
    result["sizes"] = sizes(url)

    os.environ.update({k: env[k] for k in ("DATABASE_URL", "TASK_BACKEND", "NOTIFIER_PUBLISHER", "SECRET_KEY",
                                           "DJANGO_SETTINGS_MODULE", "LOG_LEVEL")})
    import django

    django.setup()
    from django.db import connection
    from rest_framework.authtoken.models import Token

    from notifier.models import NotificationState

    tokens = {t.user.username: t.key for t in Token.objects.select_related("user")}
    states = {s.user.username: s for s in NotificationState.objects.select_related("user")
              .filter(user__username__in=["heavy", "o1"])}
    last_seq = {"heavy": states["heavy"].last_seq, "typical": states["o1"].last_seq}
    unread = {"heavy": states["heavy"].unread_count, "typical": states["o1"].unread_count}
    result["users"] = {"heavy": {"rows": last_seq["heavy"], "unread": unread["heavy"],
                                 "read_seq": states["heavy"].read_seq},
                       "typical": {"rows": last_seq["typical"], "unread": unread["typical"],
                                   "read_seq": states["o1"].read_seq}}
    result["plans"] = explain_plans({"heavy": last_seq["heavy"]})
    connection.close()

    port = free_port()
    proc = start_gunicorn(env, port, workers=2)
    try:
        result["reads_ms"] = http_reads(port, tokens, requests, last_seq, unread)
        result["mark_all_read_ms"] = mark_all_read_runs(port, tokens, mark_reps, groups)
        result["reads_ms"]["all_read_100k:unread"] = unread_after_mark_all(port, tokens, requests // 3)
        result["plans"].update({k: v for k, v in explain_plans({"heavy": last_seq["heavy"]}).items()
                                if k.startswith("mark100k")})
        connection.close()
    finally:
        stop([proc])

    checks = []
    for label, s in result["reads_ms"].items():
        target = TARGET_COUNT_P50_MS if label.endswith(":unread_count") else TARGET_READ_P50_MS
        checks.append({"what": f"GET {label} p50", "measured_ms": s["p50"], "target_ms": target,
                       "ok": s["p50"] <= target})
    for name, m in result["mark_all_read_ms"].items():
        for how in ("in_process_ms", "http_ms"):
            checks.append({"what": f"mark-all-read {m['unread']} unread, {how[:-3].replace('_', '-')} p50",
                           "measured_ms": m[how]["p50"], "target_ms": TARGET_MARK_MS, "ok": m[how]["p50"] <= TARGET_MARK_MS})
    result["checks"] = checks
    result["machine"] = started_on
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=300, help="measured GETs per endpoint")
    parser.add_argument("--mark-reps", type=int, default=30, help="measured mark-all-read calls per user and way")
    parser.add_argument("--scale", type=float, default=1.0, help="shrink the data (trying the script out)")
    parser.add_argument("--peer", choices=["hq"], default=None,
                        help="also measure the peer (bench/peer_hq.py); default: hq if its venv can be built")
    parser.add_argument("--no-peer", dest="peer", action="store_const", const="", help="skip the peer")
    parser.add_argument("--peer-mark-reps", type=int, default=5, help="the peer's mark-all-read calls per user and way")
    args = parser.parse_args()
    peer_url = scratch_url("reads_peer_hq")  # before run() points DATABASE_URL at Herald's scratch database
    result = run(args.requests, args.mark_reps, args.scale)
    result["scale"] = args.scale
    if args.peer != "":
        from bench import peer_hq

        try:
            result["peer_hq"] = peer_hq.run(args.requests, args.peer_mark_reps, args.scale, url=peer_url)
            result["peer_hq"]["scale"] = args.scale
        except peer_hq.PeerUnavailable as e:
            if args.peer:  # asked for by name: its failure is the run's
                raise
            print(f"peer skipped: {e}", file=sys.stderr)
    path = write_result("read_paths", result)

    print(f"read paths at {result['sizes']['rows']:,} rows (gunicorn 2 workers, PostgreSQL):")
    for label, s in result["reads_ms"].items():
        print(f"  GET {label:24} p50 {s['p50']:6.2f} ms  p95 {s['p95']:6.2f} ms")
    for name, m in result["mark_all_read_ms"].items():
        before = result["mark_all_read_before_ms"][name]["median_ms"]
        print(f"  mark-all-read {m['unread']:>7,} unread: in-process p50 {m['in_process_ms']['p50']} ms, "
              f"HTTP p50 {m['http_ms']['p50']} ms (previous schema: {before} ms)")
    b, a = result["sizes_before"]["per_million_rows"], result["sizes"]["per_million_rows"]
    print("  per 1M rows        before (0001)   now")
    for key in ("notification_heap_mb", "notification_indexes_mb", "notification_index_count", "event_mb",
                "pendingpush_mb", "total_mb"):
        print(f"  {key:26} {b.get(key, 0):>8} {a[key]:>8}")
    if "peer_hq" in result:
        from bench import peer_hq

        print(f"vs {result['peer_hq']['package']} at {result['peer_hq']['rows']:,} rows (same users and rows):")
        print("\n".join(peer_hq.summary(result, result["peer_hq"])))
    failed = [c for c in result["checks"] if not c["ok"]]
    for c in failed:
        print(f"  [FAIL] {c['what']}: {c['measured_ms']} ms (target {c['target_ms']} ms)")
    if not failed:
        print(f"  [ok] all {len(result['checks'])} checks within their targets")
    print(f"wrote {path.relative_to(ROOT)}")
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
