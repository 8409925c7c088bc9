"""Results of one run: raw values per metric, system and round; ratios to PgBouncer (one process);
the comparison with perf/baseline.json; results.json and results.md."""

import datetime

from common import median, summary

REFERENCE = "pgb1"          # every ratio is system / this
GATED = ("rb1", "rbN")      # ratios of these fail the run when they got worse than the baseline


class Metric:
    def __init__(self, key, title, unit, better, group, ratio=True, note=""):
        self.key, self.title, self.unit, self.better, self.group = key, title, unit, better, group
        self.ratio = ratio     # compared to PgBouncer at all
        self.note = note
        self.values = {}       # system -> {round: value}

    def add(self, system, rnd, value):
        self.values.setdefault(system, {})[rnd] = value

    def per_round_ratios(self, system):
        ref = self.values.get(REFERENCE, {})
        mine = self.values.get(system, {})
        out = []
        for r, v in sorted(mine.items()):
            base = ref.get(r)
            if v is None or base is None:
                continue
            if self.group == "latency":
                if base < 1.0:
                    continue   # PgBouncer added under 1 µs (or "less than nothing"): a ratio to noise
                v = max(v, 0.0)  # below the direct connection's latency is noise too: count it as 0
            if base == 0:
                continue
            out.append(v / base)
        return out

    def to_json(self, systems):
        j = {"title": self.title, "unit": self.unit, "better": self.better, "group": self.group}
        if self.note:
            j["note"] = self.note
        j["values"] = {s: [self.values[s].get(r) for r in sorted(self.values[s])] for s in systems if s in self.values}
        j["summary"] = {s: summary(self.values[s].values()) for s in systems if s in self.values}
        if self.ratio:
            j["ratio_to_pgbouncer"] = {}
            for s in systems:
                if s == REFERENCE or s not in self.values:
                    continue
                rr = self.per_round_ratios(s)
                j["ratio_to_pgbouncer"][s] = summary(rr) and dict(summary(rr), rounds=rr)
        return j


class Results:
    def __init__(self, systems, labels):
        self.systems = systems    # keys, in display order
        self.labels = labels      # key -> label
        self.metrics = {}
        self.problems = []        # harness-level failures: a measurement with no number
        self.engine_problems = []  # crashes, hangs of a pooler
        self.skipped = {}         # what could not be measured here, and why
        self.checks = []          # pool-size checks and such
        self.microbench = {}

    def metric(self, key, *a, **kw):
        if key not in self.metrics:
            self.metrics[key] = Metric(key, *a, **kw)
        return self.metrics[key]

    def ratios(self):
        """{metric: {system: median ratio}} for every ratio metric."""
        out = {}
        for k, m in self.metrics.items():
            if not m.ratio:
                continue
            for s in self.systems:
                if s == REFERENCE:
                    continue
                rr = m.per_round_ratios(s)
                if rr:
                    out.setdefault(k, {})[s] = median(rr)
        return out

    def to_json(self, meta):
        return dict(meta, systems={s: self.labels[s] for s in self.systems},
                    metrics={k: m.to_json(self.systems + ["direct"]) for k, m in self.metrics.items()},
                    ratios=self.ratios(), microbench=self.microbench, checks=self.checks, skipped=self.skipped,
                    problems=self.problems, engine_problems=self.engine_problems)


def compare(results, baseline, tolerance, micro_tolerance):
    """Ratios (and micro-benchmark times) that got more than `tolerance` worse than the baseline.

    A ratio regressed when its median over the rounds is more than `tolerance` worse than the
    baseline's AND every round's ratio is worse than the baseline: on a shared machine one slow
    round (another job's build) must not fail the run, and a real regression shows in every
    round. A median that is worse but with rounds on both sides of the baseline is reported as
    a possible regression (it does not fail the run; measure again, with more --rounds).
    Returns (regressions, improvements, notes) as lists of text lines."""
    regressions, improvements, notes = [], [], []
    cur = results.ratios()
    for key, per_sys in baseline.get("ratios", {}).items():
        m = results.metrics.get(key)
        better = baseline.get("better", {}).get(key) or (m.better if m else "higher")
        for s, base in per_sys.items():
            if s not in GATED:
                continue
            now = cur.get(key, {}).get(s)
            if now is None or base is None or base <= 0:
                notes.append(f"{key} {s}: not measured in this run")
                continue
            rounds = m.per_round_ratios(s) if m else [now]
            change = now / base
            if better == "higher":
                worse, good = change < 1 - tolerance, change > 1 + tolerance
                every_round_worse = max(rounds) < base
            else:
                worse, good = change > 1 + tolerance, change < 1 - tolerance
                every_round_worse = min(rounds) > base
            line = (f"{key} {s}: ratio {now:.3f} (rounds {min(rounds):.2f}–{max(rounds):.2f}) vs baseline {base:.3f} "
                    f"({(change - 1) * 100:+.1f}%, {better} is better)")
            if worse and every_round_worse:
                regressions.append(line)
            elif worse:
                notes.append(f"possible regression (rounds on both sides of the baseline): {line}")
            elif good:
                improvements.append(line)
    missing = notes
    for name, b in baseline.get("microbench", {}).items():
        now = results.microbench.get(name)
        if not now:
            missing.append(f"micro-benchmark {name}: not run")
            continue
        change = now["min_ns"] / b["min_ns"]
        line = f"micro-benchmark {name}: {now['min_ns']:.1f} ns vs baseline {b['min_ns']:.1f} ns ({(change - 1) * 100:+.1f}%)"
        if change > 1 + micro_tolerance:
            regressions.append(line)
        elif change < 1 - micro_tolerance:
            improvements.append(line)
    return regressions, improvements, missing


def baseline_from(results, meta):
    ratios = results.ratios()
    missing = [f"{k} {s}" for k, m in results.metrics.items() if m.ratio
               for s in results.systems if s != REFERENCE and s not in ratios.get(k, {})]
    return {
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "run_started": meta.get("started"),
        "machine": meta["machine"],
        "git": meta.get("git"),
        "config": meta.get("config"),
        "note": "Ratios to PgBouncer 1.18 (one process): medians of per-round ratios. Written by "
                "perf/run --update-baseline or --baseline-from.",
        "better": {k: m.better for k, m in results.metrics.items() if m.ratio},
        "ratios": ratios,
        "missing": missing,
        "problems": results.problems,
        "microbench": {k: {"min_ns": v["min_ns"]} for k, v in results.microbench.items()},
    }


# --- Markdown -----------------------------------------------------------------------------------------

def _fmt(v, unit):
    if v is None:
        return "–"
    a = abs(v)
    if unit in ("tps", "logins/s"):
        return f"{v:,.0f}"
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def _cell(s, unit):
    if not s:
        return "–"
    if s["n"] == 1:
        return _fmt(s["median"], unit)
    return f"{_fmt(s['median'], unit)} <sub>{_fmt(s['min'], unit)}–{_fmt(s['max'], unit)}</sub>"


def _ratio_cell(s, better):
    if not s:
        return "–"
    text = f"**{s['median']:.2f}×**" if s["n"] == 1 else f"**{s['median']:.2f}×** <sub>{s['min']:.2f}–{s['max']:.2f}</sub>"
    return text


def markdown(results, meta, comparison):
    sy = results.systems
    ratio_sys = [s for s in sy if s != "pgb1"]
    lines = []
    m = meta["machine"]
    lines.append(f"perf/run {'--quick ' if meta['mode'] == 'quick' else ''}at {meta['started']} "
                 f"(git {meta['git']['commit'][:10]}{' + local changes' if meta['git']['dirty'] else ''}), "
                 f"{meta['config']['rounds']} round(s), {meta['config']['duration_s']} s per load run.")
    lines.append(f"Machine: {m['nproc']} CPUs ({m['cpu_model']}), kernel {m['kernel']}, "
                 f"load average before {m['loadavg_before']}, after {m['loadavg_after']}; "
                 f"open files {m['nofile_limit']}; PostgreSQL {m['postgres']}, PgBouncer {m['pgbouncer']}.")
    if meta.get("phases"):
        lines.append("Phases: " + ", ".join(f"{p['phase']} {p['seconds']} s (load {p['loadavg_at_start'].split()[0]})"
                                            for p in meta["phases"]) + ".")
    lines.append("")
    lines.append("Each cell: median <sub>min–max</sub> over the rounds. A ratio is the system's value over PgBouncer "
                 "(one process)'s in the same round, median <sub>min–max</sub> over the rounds; "
                 "**>1 is better for TPS and logins/s, <1 is better for everything else.**")
    lines.append("")
    head = ["metric"] + [results.labels[s] for s in sy] + [f"{s} / pgb1" for s in ratio_sys]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "---|" * len(head))
    groups = ["tps", "cpu", "latency", "memory", "logins", "login_cpu"]
    for g in groups:
        for k, mt in results.metrics.items():
            if mt.group != g or not mt.ratio:
                continue
            j = mt.to_json(sy)
            row = [f"{mt.title} ({mt.unit}, {'higher' if mt.better == 'higher' else 'lower'} is better)"]
            row += [_cell(j["summary"].get(s), mt.unit) for s in sy]
            row += [_ratio_cell(j.get("ratio_to_pgbouncer", {}).get(s), mt.better) for s in ratio_sys]
            lines.append("| " + " | ".join(row) + " |")
    raw = [mt for mt in results.metrics.values() if not mt.ratio]
    if raw:
        lines.append("")
        lines.append("Latency as the client sees it (µs; *direct* is rb-loadgen straight to the backend):")
        lines.append("")
        cols = sy + ["direct"]
        lines.append("| metric | " + " | ".join(results.labels.get(s, s) for s in cols) + " |")
        lines.append("|" + "---|" * (len(cols) + 1))
        for mt in raw:
            j = mt.to_json(cols)
            lines.append(f"| {mt.title} | " + " | ".join(_cell(j["summary"].get(s), mt.unit) for s in cols) + " |")
    if results.microbench:
        lines.append("")
        lines.append("Micro-benchmarks (rb_bench, CPU time per iteration; min and median over repetitions):")
        lines.append("")
        lines.append("| benchmark | min | median |")
        lines.append("|---|---|---|")
        for name, v in results.microbench.items():
            lines.append(f"| {name} | {v['min_ns']:,.1f} ns | {v['median_ns']:,.1f} ns |")
    if results.skipped:
        lines.append("")
        for k, why in results.skipped.items():
            lines.append(f"- **{k} not measured:** {why}")
    if results.checks:
        lines.append("")
        lines.append("Checks:")
        for c in results.checks:
            lines.append(f"- {c}")
    for title, items in (("Problems (measurements without a number)", results.problems),
                         ("Pooler problems (crashes, hangs)", results.engine_problems)):
        if items:
            lines.append("")
            lines.append(f"**{title}:**")
            lines += [f"- {p}" for p in items]
    if comparison is not None:
        reg, imp, missing = comparison
        lines.append("")
        lines.append(f"Against perf/baseline.json ({meta.get('baseline_created', '?')}), tolerance "
                     f"{meta['config']['tolerance'] * 100:.0f}%: {len(reg)} regression(s), {len(imp)} improvement(s).")
        lines += [f"- regression: {x}" for x in reg]
        lines += [f"- improvement: {x}" for x in imp]
        lines += [f"- {x}" for x in missing]
    return "\n".join(lines) + "\n"
