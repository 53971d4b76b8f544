"""One chart of the notifier v2 benchmarks against their targets, from bench/results/*.json.

    python bench/chart.py            # writes bench/results/notifier_v2.png

Panels: fan-out store time (fanout.json), POST latency quiet vs under a fan-out
(post_under_fanout.json), read paths and mark-all-read (read_paths.json), storage per 1M rows
before/after (read_paths.json). A bar is green when it meets its target, red when it does not; the
target is the black tick on each bar or the dashed line. Panels whose JSON is missing say so.
"""
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

PLAIN = FuncFormatter(lambda v, _: f"{v:g}")

RESULTS = Path(__file__).resolve().parent / "results"
OK, FAIL, NEUTRAL = "#3a9a5b", "#d1495b", "#8d99ae"


def load(name: str):
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def missing(ax, name):
    ax.text(0.5, 0.5, f"no results/{name}.json", ha="center", va="center", transform=ax.transAxes)
    ax.set_axis_off()


def label_bars(ax, bars, fmt, horizontal=False):
    for bar in bars:
        if horizontal:
            ax.annotate(fmt(bar.get_width()), (bar.get_width(), bar.get_y() + bar.get_height() / 2),
                        xytext=(3, 0), textcoords="offset points", va="center", fontsize=7)
        else:
            ax.annotate(fmt(bar.get_height()), (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                        xytext=(0, 2), textcoords="offset points", ha="center", fontsize=7)


def fanout_panel(ax, data):
    if not data:
        return missing(ax, "fanout")
    labels, values, targets, colors, low, high = [], [], [], [], [], []
    for n, entry in data["by_followers"].items():
        n = int(n)
        target = 1.0 if n <= 10000 else 10.0 if n <= 100000 else None
        short = f"{n // 1000}k"
        for key, value in entry.items():
            if key == "immediate" or key.startswith("database_"):
                labels.append(f"{short}\n{key.replace('database_', 'db ').replace('immediate', 'inline')}")
                values.append(value["median_s"])
                low.append(value["median_s"] - value["min_s"])
                high.append(value["max_s"] - value["median_s"])
                targets.append(target)
        if "naive" in entry:
            labels.append(f"{short}\nnaive")
            values.append(entry["naive"]["median_s"])
            low.append(entry["naive"]["median_s"] - entry["naive"]["min_s"])
            high.append(entry["naive"]["max_s"] - entry["naive"]["median_s"])
            targets.append(None)
        if "loop" in entry:
            labels.append(f"{short}\nloop")
            values.append(entry["loop"]["seconds"])
            low.append(0)
            high.append(0)
            targets.append(None)
    for v, t, lab in zip(values, targets, labels):
        colors.append(NEUTRAL if t is None else OK if v <= t else FAIL)
    x = range(len(values))
    bars = ax.bar(x, values, color=colors, yerr=[low, high], capsize=3, ecolor="#444")
    for i, t in enumerate(targets):
        if t is not None:
            ax.hlines(t, i - 0.4, i + 0.4, colors="black", linewidth=2)
    label_bars(ax, bars, lambda v: f"{v:.2f} s" if v < 10 else f"{v:.0f} s")
    ax.set_xticks(list(x), labels, fontsize=7)
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(PLAIN)
    ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
    ax.set_ylim(top=max(values + [t for t in targets if t]) * 2)
    ax.set_ylabel("seconds (log)")
    speedup = data["by_followers"].get("10000", {}).get("speedup_vs_naive")
    extra = f"\n10k: set-based {speedup}x faster than the naive loop (target >= 10x)" if speedup else ""
    ax.set_title(f"Fan-out store time, median and min-max of the runs; target 10k <= 1 s, 100k <= 10 s{extra}",
                 fontsize=9)


def post_panel(ax, data):
    if not data:
        return missing(ax, "post_under_fanout")
    q, lo = data["quiet_ms"], data["loaded_ms"]
    limit = q["p50"] * 1.2
    bars = ax.bar([0, 1, 3, 4], [q["p50"], lo["p50"], q["p95"], lo["p95"]],
                  color=[NEUTRAL, OK if lo["p50"] <= limit else FAIL, NEUTRAL, NEUTRAL])
    ax.hlines(limit, 0.6, 1.4, colors="black", linewidth=2)
    label_bars(ax, bars, lambda v: f"{v:.1f}")
    ax.set_xticks([0, 1, 3, 4], ["p50 quiet", "p50 loaded", "p95 quiet", "p95 loaded"], fontsize=8)
    ax.set_ylabel("ms")
    ax.set_title(f"POST /api/posts/, quiet vs during a {data['followers'] // 1000}k fan-out\n"
                 f"loaded p50 = {data['p50_ratio']}x quiet (target <= 1.2x)", fontsize=9)


def reads_panel(ax, data):
    if not data:
        return missing(ax, "read_paths")
    rows = [(f"GET {k}", v["p50"], 15.0) for k, v in data["reads_ms"].items()]
    for name, m in data["mark_all_read_ms"].items():
        rows.append((f"read-all {m['unread'] // 1000}k, in-process", m["in_process_ms"]["p50"], 20.0))
        rows.append((f"read-all {m['unread'] // 1000}k, HTTP", m["http_ms"]["p50"], 20.0))
    for name, m in data.get("mark_all_read_before_ms", {}).items():
        rows.append((f"read-all {m['unread'] // 1000}k, previous schema", m["median_ms"], None))
    rows.reverse()
    y = range(len(rows))
    colors = [NEUTRAL if t is None else OK if v <= t else FAIL for _, v, t in rows]
    bars = ax.barh(y, [v for _, v, _ in rows], color=colors)
    for i, (_, _, t) in enumerate(rows):
        if t is not None:
            ax.vlines(t, i - 0.4, i + 0.4, colors="black", linewidth=2)
    label_bars(ax, bars, lambda v: f"{v:.1f} ms", horizontal=True)
    ax.set_yticks(list(y), [r[0] for r in rows], fontsize=7)
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(PLAIN)
    ax.set_xlim(right=max(v for _, v, _ in rows) * 3)
    ax.set_xlabel("p50 ms (log)")
    ax.set_title(f"Reads at {data['sizes']['rows']:,} rows (target p50 <= 15 ms), mark-all-read (<= 20 ms)", fontsize=9)


def sizes_panel(ax, data):
    if not data:
        return missing(ax, "read_paths")
    before, after = data["sizes_before"]["per_million_rows"], data["sizes"]["per_million_rows"]
    parts = [("heap", "notification_heap_mb", "#5c7aa6"), ("indexes", "notification_indexes_mb", "#f2a541"),
             ("pendingpush", "pendingpush_mb", "#7fb7be")]
    bottom = [0.0, 0.0]
    for label, key, color in parts:
        vals = [before[key], after[key]]
        ax.bar([0, 1], vals, bottom=bottom, color=color, label=label)
        bottom = [b + v for b, v in zip(bottom, vals)]
    for i, total in enumerate(bottom):
        ax.annotate(f"{total:.0f} MB", (i, total), xytext=(0, 2), textcoords="offset points", ha="center", fontsize=8)
    ax.set_xticks([0, 1], [f"before (0001)\n{before['notification_index_count']} indexes",
                           f"now\n{after['notification_index_count']} indexes"], fontsize=8)
    ax.set_ylim(0, max(bottom) * 1.15)
    ax.set_ylabel("MB per 1M notifications")
    ax.legend(fontsize=7)
    ax.set_title("Storage per 1M notifications", fontsize=9)


def main():
    fanout, post, reads = load("fanout"), load("post_under_fanout"), load("read_paths")
    fig, axes = plt.subplots(2, 2, figsize=(14, 9), gridspec_kw={"width_ratios": [1.4, 1]})
    fanout_panel(axes[0][0], fanout)
    post_panel(axes[0][1], post)
    reads_panel(axes[1][0], reads)
    sizes_panel(axes[1][1], reads)
    machine = (fanout or post or reads or {}).get("machine", {})
    fig.suptitle(f"Herald notifier v2 benchmarks (PostgreSQL {machine.get('postgresql', '?')}, "
                 f"{machine.get('cpus', '?')} CPUs; pushes to a no-op publisher)", fontsize=11)
    fig.tight_layout()
    out = RESULTS / "notifier_v2.png"
    fig.savefig(out, dpi=110)
    print(f"wrote {out.relative_to(RESULTS.parent.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
