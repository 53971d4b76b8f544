"""django-notifications-hq at 1,000,000 rows: the peer of read_paths.py for reads and size.

Why a peer: Herald's targets for storage and reads are stated against a widely used Django
notifications app, measured here on the same PostgreSQL, the same Django and the same users and
rows as Herald's side, rather than quoted.

Environment: bench/peer_env.sh builds .venv-bench-hq (Herald's pinned Django, a pinned
django-notifications-hq with its `index_together` patched to `Meta.indexes` for Django >= 5.1).
Nothing of it is in Herald's requirements. bench/peer_hq/ is a minimal project for it (auth,
contenttypes, sessions, notifications, and `posts`: the objects its rows point at).

Data, in the scratch database <DATABASE_URL's name>_reads_peer_hq, migrated by its own migrations
(schema as released), filled with one INSERT … SELECT generate_series in time order like
read_paths.fill: the same users (heavy 200,000 rows, mark100k, mark20k, o1…o6800 × 100) and the same
rows read (heavy: all up to 150,000 and every 10th above; o*: up to 80 and every 10th above;
mark*: none), so the same 45,000 / 100,000 / 20,000 / 18 unread. Each row: verb by kind (posted,
commented on, liked, started following), a description of 50–70 characters, actor = a user (generic
FK: auth.user content type + id as varchar), target = a post on three kinds of four and action
object = a comment on one of four (the same ids as Herald's post_ref / comment_ref; 200,000 posts
and 1,000,000 comments exist so the generic FKs resolve), level 'info', public, not deleted, not
emailed, data NULL, timestamp as Herald's created_at. VACUUM ANALYZE.

Measured: in-process (bench/peer_hq/measure.py, in the peer's venv) its ORM calls and live JSON
views; over HTTP (gunicorn, 2 sync workers, session cookie, one keep-alive client, like Herald's
side) its live_unread_notification_count, live_unread_notification_list?max=20,
live_all_notification_list?max=20 and mark-all-as-read; sizes with read_paths.sizes().

    python bench/peer_hq.py [--requests 300] [--mark-reps 5] [--scale 1.0]

adds "peer_hq" to bench/results/read_paths.json (Herald's figures there are kept) and prints the
side-by-side; `python bench/read_paths.py` runs it too unless --no-peer.
"""
import argparse
import http.client
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.benchlib import (  # noqa: E402
    RESULTS, ROOT, connect, free_port, machine, recreate_database, scratch_url, stats_ms, stop, wait_for_port,
    write_result,
)
from bench.read_paths import GROUPS, OTHER_GROUP, OTHERS, sizes  # noqa: E402

PROJECT = ROOT / "bench" / "peer_hq"
ENV_SCRIPT = ROOT / "bench" / "peer_env.sh"
TABLE = "notifications_notification"
POSTS, COMMENTS = 200_000, 1_000_000


class PeerUnavailable(RuntimeError):
    """The peer's venv could not be built (no package index, say): read_paths goes on without it."""


def build_env() -> str:
    """The peer venv's python (built by bench/peer_env.sh if missing)."""
    out = subprocess.run(["bash", str(ENV_SCRIPT)], cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        raise PeerUnavailable(f"bench/peer_env.sh failed:\n{out.stderr[-2000:]}")
    return out.stdout.strip().splitlines()[-1]


def peer_env(python: str, url: str, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DJANGO_SETTINGS_MODULE", "VIRTUAL_ENV")}
    env.update({"DATABASE_URL": url, "DJANGO_SETTINGS_MODULE": "settings", "PYTHONWARNINGS": "ignore"})
    env["PATH"] = str(Path(python).parent) + os.pathsep + env.get("PATH", "")
    env.update(extra)
    return env


def expected_counts(scale: float) -> dict:
    """Rows and unread per measured user, from the same groups as Herald's data."""
    def unread(n, read_seq, every):
        return sum(1 for g in range(read_seq + 1, n + 1) if not (every and g % every == 0))

    groups = {name: (int(n * scale), int(r * scale), every) for name, n, r, every in GROUPS}
    n, r, every = OTHER_GROUP
    groups["typical"] = (n, r, every)
    return {who: {"rows": g[0], "unread": unread(*g)} for who, g in groups.items()}


def fill(url: str, scale: float = 1.0) -> int:
    groups = [(name, int(n * scale), int(read_seq * scale), every) for name, n, read_seq, every in GROUPS]
    others = max(1, int(OTHERS * scale))
    user_sql = ("INSERT INTO auth_user (password, is_superuser, username, first_name, last_name, email, is_staff,"
                " is_active, date_joined) SELECT '!', false, %s, '', '', '', false, true, now()")
    with connect(url) as conn:
        for name, *_ in groups:
            conn.execute(user_sql, [name])
        conn.execute(user_sql.replace("%s", "'o' || g") + " FROM generate_series(1, %s) g", [others])
        conn.execute("CREATE TABLE bench_groups (uid int PRIMARY KEY, n int, read_seq int, every int)")
        for name, n, read_seq, every in groups:
            conn.execute("INSERT INTO bench_groups SELECT id, %s, %s, %s FROM auth_user WHERE username = %s",
                         [n, read_seq, every, name])
        conn.execute("INSERT INTO bench_groups SELECT id, %s, %s, %s FROM auth_user WHERE username ~ '^o[0-9]+$'",
                     list(OTHER_GROUP))
        o_min = conn.execute("SELECT min(id) FROM auth_user WHERE username ~ '^o[0-9]+$'").fetchone()[0]
        ct = dict(((app, model), pk) for pk, app, model in conn.execute(
            "SELECT id, app_label, model FROM django_content_type").fetchall())
        ct_user, ct_post, ct_comment = ct[("auth", "user")], ct[("posts", "post")], ct[("posts", "comment")]
        conn.execute("INSERT INTO posts_post (id, text) SELECT g, 'Post ' || left(md5(g::text), 20)"
                     f" FROM generate_series(1, {POSTS}) g")
        conn.execute("INSERT INTO posts_comment (id, text) SELECT g, 'Comment ' || left(md5(g::text), 20)"
                     f" FROM generate_series(1, {COMMENTS}) g")
        t0 = time.perf_counter()
        conn.execute(f"""
            INSERT INTO {TABLE} (level, unread, actor_content_type_id, actor_object_id, verb, description,
                                 target_content_type_id, target_object_id, action_object_content_type_id,
                                 action_object_object_id, timestamp, public, deleted, emailed, data, recipient_id)
            SELECT 'info', NOT t.read, {ct_user}, t.actor::text, t.verb,
                   left('Someone Example ' || t.verb || ': “' || md5(t.g::text) || md5(t.g::text || 'x'),
                        49 + t.g % 21) || '”',
                   CASE WHEN t.post_ref IS NOT NULL THEN {ct_post} END, t.post_ref::text,
                   CASE WHEN t.comment_ref IS NOT NULL THEN {ct_comment} END, t.comment_ref::text,
                   t.created_at, true, false, false, NULL, t.uid
            FROM (
                SELECT b.uid, g, {o_min} + (b.uid + g) % {others} AS actor,
                       (ARRAY['posted', 'commented on', 'liked', 'started following'])[1 + g % 4] AS verb,
                       CASE WHEN g % 4 <> 3 THEN 1 + (7 * g + b.uid) % {POSTS} END AS post_ref,
                       CASE WHEN g % 4 = 1 THEN 1 + (13 * g + b.uid) % {COMMENTS} END AS comment_ref,
                       now() - interval '30 days' * (1 - g::float8 / b.n) AS created_at,
                       (g <= b.read_seq OR (b.every > 0 AND g > b.read_seq AND g % b.every = 0)) AS read,
                       g::float8 / b.n AS at
                FROM bench_groups b, generate_series(1, b.n) g
            ) t
            ORDER BY t.at, t.uid
        """)
        print(f"  peer_hq: notification rows inserted in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
        conn.execute("DROP TABLE bench_groups")
        conn.execute("VACUUM ANALYZE")
        return conn.execute(f"SELECT count(*) FROM {TABLE}").fetchone()[0]


class SessionApi:
    """An HTTP/1.1 keep-alive client with a session cookie (the peer's views are login_required)."""

    def __init__(self, port: int, session_key: str):
        self.port, self.cookie = port, f"sessionid={session_key}"
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def _request(self, path: str):
        self.conn.request("GET", path, headers={"Cookie": self.cookie, "Accept": "application/json"})
        return self.conn.getresponse()

    def timed(self, path: str) -> tuple[float, int, bytes, str]:
        t0 = time.perf_counter()
        try:
            response = self._request(path)
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            self.conn.close()
            response = self._request(path)
        body = response.read()
        return time.perf_counter() - t0, response.status, body, response.getheader("Location") or ""


def start_gunicorn(python: str, env: dict, port: int, workers: int = 2) -> subprocess.Popen:
    proc = subprocess.Popen([python, "-m", "gunicorn", "wsgi", "-b", f"127.0.0.1:{port}", "-w", str(workers),
                             "--log-level", "warning"], cwd=PROJECT, env=env)
    wait_for_port(port)
    return proc


def http_reads(port: int, sessions: dict, expected: dict, requests: int) -> dict:
    base = "/inbox/notifications/api/"
    cases = []
    for who in ("heavy", "typical"):
        api, rows, unread = SessionApi(port, sessions[who]), expected[who]["rows"], expected[who]["unread"]
        cases += [
            (f"{who}:live_unread_count", api, base + "unread_count/", lambda b, n=unread: b == {"unread_count": n}),
            (f"{who}:live_unread_list", api, base + "unread_list/?max=20",
             lambda b, n=unread: b["unread_count"] == n and len(b["unread_list"]) == min(20, n)),
            (f"{who}:live_all_list", api, base + "all_list/?max=20",
             lambda b, n=rows: b["all_count"] == n and len(b["all_list"]) == min(20, n)),
        ]
    samples = {label: [] for label, *_ in cases}
    for i in range(20 + requests):
        for label, api, path, ok in cases:
            elapsed, status, body, _ = api.timed(path)
            assert status == 200 and ok(json.loads(body)), (label, status, body[:200])
            if i >= 20:
                samples[label].append(elapsed)
    return {label: stats_ms(values) for label, values in samples.items()}


def http_mark_all_read(url: str, port: int, sessions: dict, expected: dict, reps: int) -> dict:
    """GET mark-all-as-read/ (its view: mark_all_as_read(), then a redirect to the unread page)."""
    out = {}
    with connect(url) as conn:
        for who in ("mark20k", "mark100k"):
            uid = conn.execute("SELECT id FROM auth_user WHERE username = %s", [who]).fetchone()[0]
            api, times = SessionApi(port, sessions[who]), []
            for _ in range(reps):
                conn.execute(f"UPDATE {TABLE} SET unread = true WHERE recipient_id = %s", [uid])
                conn.execute(f"VACUUM ANALYZE {TABLE}")
                elapsed, status, _, location = api.timed("/inbox/notifications/mark-all-as-read/")
                assert status == 302 and location.endswith("/inbox/notifications/unread/"), (status, location)
                left = conn.execute(f"SELECT count(*) FROM {TABLE} WHERE recipient_id = %s AND unread", [uid]).fetchone()[0]
                assert left == 0, (who, left)
                times.append(elapsed)
            conn.execute(f"UPDATE {TABLE} SET unread = true WHERE recipient_id = %s", [uid])
            out[who] = {"unread": expected[who]["unread"], "http_ms": stats_ms(times)}
        conn.execute(f"VACUUM ANALYZE {TABLE}")
    return out


def run(requests: int = 300, mark_reps: int = 5, scale: float = 1.0, url: str | None = None) -> dict:
    """Build, fill and measure the peer in `url` (default: the scratch database beside DATABASE_URL's)."""
    python = build_env()
    versions = subprocess.run([python, "-c", "import django, importlib.metadata as m;"
                               " print(django.get_version(), m.version('django-notifications-hq'))"],
                              capture_output=True, text=True, check=True).stdout.split()
    url = url or scratch_url("reads_peer_hq")
    recreate_database(url)
    env = peer_env(python, url)
    subprocess.run([python, "manage.py", "migrate", "-v0", "--no-input"], cwd=PROJECT, env=env, check=True)
    print("filling django-notifications-hq's schema…", file=sys.stderr, flush=True)
    rows = fill(url, scale)
    expected = expected_counts(scale)
    result = {"package": f"django-notifications-hq=={versions[1]}", "django": versions[0],
              "patch": "Meta.index_together -> Meta.indexes (recipient, unread), installed copy only",
              "database": "postgresql", "rows": rows, "users": expected, "load_before": loadavg()}
    result["sizes"] = sizes(url, table=TABLE)

    print("peer_hq: in-process reads and mark-all-read…", file=sys.stderr, flush=True)
    out = subprocess.run([python, "measure.py", "--requests", str(requests), "--mark-reps", str(mark_reps),
                          "--expected", json.dumps(expected)], cwd=PROJECT, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"bench/peer_hq/measure.py failed:\n{out.stderr[-3000:]}")
    measured = json.loads(out.stdout)
    sessions = measured.pop("sessions")
    result.update(measured)

    print("peer_hq: over HTTP (gunicorn, 2 workers)…", file=sys.stderr, flush=True)
    port = free_port()
    proc = start_gunicorn(python, env, port)
    try:
        result["reads_http_ms"] = http_reads(port, sessions, expected, requests)
        for who, m in http_mark_all_read(url, port, sessions, expected, mark_reps).items():
            result["mark_all_read"][who]["http_ms"] = m["http_ms"]
    finally:
        stop([proc])
    result["load_after"] = loadavg()
    return result


def loadavg() -> str:
    return Path("/proc/loadavg").read_text().strip()


def summary(herald: dict, peer: dict) -> list[str]:
    """Herald vs the peer, side by side: list p50, unread count p50, mark-all-read, storage per 1M."""
    def ratio(a, b):
        return f"{a / b:.2f}x" if a is not None and b else "—"

    def fmt(v, unit):
        return "—" if v is None else f"{v:,.2f} {unit}" if unit == "ms" else f"{v:,.1f} {unit}"

    def p50(runs, label):
        return (runs.get(label) or {}).get("p50")

    hr, pr, pi = herald.get("reads_ms", {}), peer.get("reads_http_ms", {}), peer["reads_in_process_ms"]
    rows = [
        ("list p50, heavy (HTTP)", p50(hr, "heavy:list"), p50(pr, "heavy:live_all_list"), "ms"),
        ("list p50, typical (HTTP)", p50(hr, "typical:list"), p50(pr, "typical:live_all_list"), "ms"),
        ("unread list p50, heavy (HTTP)", p50(hr, "heavy:unread"), p50(pr, "heavy:live_unread_list"), "ms"),
        ("unread count p50, heavy (HTTP)", p50(hr, "heavy:unread_count"),
         p50(pr, "heavy:live_unread_count"), "ms"),
        ("unread count p50, typical (HTTP)", p50(hr, "typical:unread_count"),
         p50(pr, "typical:live_unread_count"), "ms"),
        ("list p50, heavy (peer in-process ORM)", None, p50(pi, "heavy:list"), "ms"),
        ("unread count p50, heavy (peer in-process ORM)", None, p50(pi, "heavy:unread_count"), "ms"),
    ]
    for who in ("mark20k", "mark100k"):
        h, p = herald.get("mark_all_read_ms", {}).get(who, {}), peer["mark_all_read"][who]
        n = p["unread"]
        rows.append((f"mark-all-read {n:,} p50 (in-process)", (h.get("in_process_ms") or {}).get("p50"),
                     p["in_process_ms"]["p50"], "ms"))
        rows.append((f"mark-all-read {n:,} p50 (HTTP)", (h.get("http_ms") or {}).get("p50"),
                     (p.get("http_ms") or {}).get("p50"), "ms"))
    hs = (herald.get("sizes") or {}).get("per_million_rows", {})
    ps = peer["sizes"]["per_million_rows"]
    rows.append(("storage per 1M rows (heap + indexes)", hs.get("total_mb"), ps["total_mb"], "MB"))
    rows.append(("  of which indexes", hs.get("notification_indexes_mb"), ps["notification_indexes_mb"], "MB"))
    lines = [f"  {'':46} {'Herald':>12} {'notif.-hq':>12} {'Herald/peer':>12}"]
    for label, h, p, unit in rows:
        lines.append(f"  {label:46} {fmt(h, unit):>12} {fmt(p, unit):>12} {ratio(h, p):>12}")
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=300, help="measured calls per read path")
    parser.add_argument("--mark-reps", type=int, default=5, help="measured mark-all-read calls per user and way")
    parser.add_argument("--scale", type=float, default=1.0, help="shrink the data (trying the script out)")
    args = parser.parse_args()
    started_on = machine()
    peer = run(args.requests, args.mark_reps, args.scale)
    peer["scale"], peer["machine"] = args.scale, started_on
    path = RESULTS / "read_paths.json"
    herald = json.loads(path.read_text()) if path.exists() else {}
    herald["peer_hq"] = peer
    write_result("read_paths", herald)
    print(f"django-notifications-hq at {peer['rows']:,} rows (load {peer['load_before']} → {peer['load_after']}):")
    print("\n".join(summary(herald, peer)))
    print(f"wrote {path.relative_to(ROOT)} (key peer_hq)")


if __name__ == "__main__":
    main()
