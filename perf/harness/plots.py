"""PNG plots of a run (matplotlib from Debian, Agg backend: no display needed)."""

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLORS = {"pgb1": "#7f7f7f", "pgb2": "#bcbcbc", "rb1": "#1f77b4", "rbN": "#ff7f0e", "direct": "#2ca02c"}


def _grouped(ax, metrics, systems, labels):
    n = len(systems)
    width = 0.8 / max(n, 1)
    for i, s in enumerate(systems):
        xs, ys, lo, hi = [], [], [], []
        for x, m in enumerate(metrics):
            st = m.to_json(systems)["summary"].get(s)
            if not st:
                continue
            xs.append(x - 0.4 + width * (i + 0.5))
            ys.append(st["median"])
            lo.append(st["median"] - st["min"])
            hi.append(st["max"] - st["median"])
        if xs:
            ax.bar(xs, ys, width, yerr=[lo, hi], capsize=2, label=labels.get(s, s), color=COLORS.get(s))
    ax.set_xticks(range(len(metrics)))
    ax.set_xticklabels([m.title for m in metrics], rotation=20, ha="right", fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)


def _save(fig, path):
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return os.path.basename(path)


def draw(results, outdir):
    made = []
    sy = results.systems
    groups = [
        ("tps", "tps.png", "transactions per second (higher is better)"),
        ("cpu", "cpu.png", "pooler CPU µs per transaction (lower is better)"),
        ("latency", "latency.png", "latency added to a direct connection, µs (lower is better)"),
        ("memory", "memory.png", "RSS bytes per idle client (lower is better)"),
        ("logins", "logins.png", "logins per second (higher is better)"),
    ]
    for group, name, title in groups:
        ms = [m for m in results.metrics.values() if m.group == group and m.ratio]
        if not ms:
            continue
        fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(ms) + 2), 4.2))
        _grouped(ax, ms, sy, results.labels)
        ax.set_title(title, fontsize=10)
        made.append(_save(fig, os.path.join(outdir, name)))

    # Every ratio of the ringbouncer setups, on one log axis, oriented so that right is better.
    rows = []
    for m in results.metrics.values():
        if not m.ratio:
            continue
        rj = m.to_json(sy).get("ratio_to_pgbouncer", {})
        for s in ("rb1", "rbN"):
            st = rj.get(s)
            if st and st["median"] > 0:
                flip = m.better == "lower"
                v = 1 / st["median"] if flip else st["median"]
                rows.append((f"{m.title} [{s}]", v, s))
    if rows:
        fig, ax = plt.subplots(figsize=(8, 0.28 * len(rows) + 1.5))
        ys = range(len(rows))
        ax.barh(list(ys), [r[1] for r in rows], color=[COLORS[r[2]] for r in rows], left=0)
        ax.axvline(1.0, color="black", lw=1)
        ax.set_xscale("log")
        ax.set_yticks(list(ys))
        ax.set_yticklabels([r[0] for r in rows], fontsize=7)
        ax.invert_yaxis()
        ax.set_title("ringbouncer vs PgBouncer (1 process): right of 1 is better", fontsize=10)
        ax.set_xlabel("ratio (1/ratio where lower is better), log scale", fontsize=8)
        ax.grid(axis="x", alpha=0.3, which="both")
        made.append(_save(fig, os.path.join(outdir, "ratios.png")))
    return made
