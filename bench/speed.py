#!/usr/bin/env python3
"""bench/speed.py: the setup-time ratios of `make bench-speed` (bench/run.sh --speed) from the VM's
console: per disk set, each variant's median setup time (the warm-up repetition 0 left out), the
ratio of ephemcrypt to mdadm + cryptsetup plain + ext4, ephemcrypt's own time outside mkfs, bytes
written, and ephemcrypt's step breakdown; then the size and count ratios. Writes JSON and Markdown.
"""
import argparse
import json
import statistics

NAMES = {
    "ephemcrypt": "ephemcrypt",
    "plain": "mdadm + cryptsetup plain + ext4",
    "mdadm": "mdadm + ext4 (no encryption)",
}
# BENCH_BEFORE's binary, when the run had one
BEFORE = "ephemcrypt before"


def read(path):
    recs = []
    with open(path, errors="replace") as f:
        for line in f:
            i = line.find("BENCH {")
            if i < 0:
                continue
            try:
                recs.append(json.loads(line[i + 6:].strip()))
            except json.JSONDecodeError:
                pass
    return recs


def med(xs):
    return statistics.median(xs) if xs else None


def summarize(recs):
    setups = [r for r in recs if r.get("t") == "setup" and r["set"].startswith("group-")]
    sets = list(dict.fromkeys(r["set"][len("group-"):] for r in setups))
    out = {"sets": {}, "failed": [], "mkfs": next((r["argv"] for r in recs if r.get("t") == "mkfs"), None)}
    for s in sets:
        row = {}
        for v in dict.fromkeys(r["variant"] for r in setups if r["set"] == "group-" + s):
            rs = [r for r in setups if r["set"] == "group-" + s and r["variant"] == v]
            out["failed"] += [f"{s} {v} rep {r['rep']}" for r in rs if not r["ok"]]
            counted = [r for r in rs if r["ok"] and r["rep"] > 0] or [r for r in rs if r["ok"]]
            secs = [float(r["secs"]) for r in counted]
            entry = {"secs": med(secs), "min": min(secs, default=None), "max": max(secs, default=None),
                     "n": len(secs), "written_mib": med([r["written"] / 2**20 for r in counted])}
            steps = {}
            for r in counted:
                for name, ms in (r.get("detail") or {}).get("steps", []):
                    steps.setdefault(name, []).append(ms)
            entry["steps"] = {k: med(v) for k, v in steps.items()}
            mkfs = [ms for k, v in steps.items() if k.startswith("mkfs") for ms in v]
            if v in ("ephemcrypt", "before") and mkfs and secs:
                outside = [float(r["secs"]) * 1000 - next(ms for k, ms in r["detail"]["steps"] if k.startswith("mkfs"))
                           for r in counted if any(k.startswith("mkfs") for k, _ in r["detail"]["steps"])]
                entry["outside_mkfs_ms"] = med(outside)
            row[v] = entry
        if row.get("ephemcrypt", {}).get("secs") and row.get("plain", {}).get("secs"):
            row["ratio_to_plain"] = row["ephemcrypt"]["secs"] / row["plain"]["secs"]
        if row.get("ephemcrypt", {}).get("secs") and row.get("before", {}).get("secs"):
            row["ratio_to_before"] = row["ephemcrypt"]["secs"] / row["before"]["secs"]
        out["sets"][s] = row
    ratios = {}
    for v in NAMES:
        get = lambda s: out["sets"].get(s, {}).get(v, {}).get("secs")
        if get("2x1G") and get("2x1T"):
            ratios[f"{v}: 2x1T / 2x1G"] = get("2x1T") / get("2x1G")
        if get("2x1G") and get("16x1G"):
            ratios[f"{v}: 16x1G / 2x1G"] = get("16x1G") / get("2x1G")
    out["ratios"] = ratios
    return out


def markdown(res, conditions):
    f2 = lambda x: "–" if x is None else f"{x:.2f}"
    lines = ["# Setup speed (make bench-speed)", "", f"Conditions: {conditions}.", "",
             "Medians over the repetitions after a warm-up (min–max); setup is start to mounted file system;",
             "every variant runs on the same freshly blanked disks, with its modules loaded beforehand. "
             "Under TCG only ratios within one run count.", ""]
    if res["mkfs"]:
        lines += [f"Every ext4 variant runs ephemcrypt's mkfs: `{res['mkfs']}`.", ""]
    lines += ["| disks | " + " | ".join(NAMES[v] for v in NAMES) + " | ephemcrypt ÷ plain | ephemcrypt outside mkfs |",
              "|---|" + "---:|" * (len(NAMES) + 2)]
    for s, row in res["sets"].items():
        cells = []
        for v in NAMES:
            e = row.get(v)
            cells.append("–" if not e or e["secs"] is None else
                         f"{f2(e['secs'])} s ({f2(e['min'])}–{f2(e['max'])}), {e['written_mib']:.1f} MiB")
        ratio = row.get("ratio_to_plain")
        outside = row.get("ephemcrypt", {}).get("outside_mkfs_ms")
        lines.append(f"| {s} | " + " | ".join(cells) + f" | {'–' if ratio is None else f'{ratio:.2f}×'} | "
                     + ("–" if outside is None else f"{outside:.0f} ms") + " |")
    if any("before" in row for row in res["sets"].values()):
        lines += ["", f"## {BEFORE} (BENCH_BEFORE, in the same VM)", "",
                  "| disks | before | ephemcrypt ÷ before | before outside mkfs |", "|---|---:|---:|---:|"]
        for s, row in res["sets"].items():
            e, ratio = row.get("before"), row.get("ratio_to_before")
            if e and e["secs"] is not None:
                outside = e.get("outside_mkfs_ms")
                lines.append(f"| {s} | {f2(e['secs'])} s ({f2(e['min'])}–{f2(e['max'])}) | "
                             + ("–" if ratio is None else f"{ratio:.2f}×") + " | "
                             + ("–" if outside is None else f"{outside:.0f} ms") + " |")
    for v in ("ephemcrypt", "before"):
        if not any(v in row for row in res["sets"].values()):
            continue
        lines += ["", f"## {'ephemcrypt' if v == 'ephemcrypt' else BEFORE}'s steps (median ms)", ""]
        for s, row in res["sets"].items():
            steps = row.get(v, {}).get("steps", {})
            if steps:
                lines.append(f"- **{s}**: " + ", ".join(f"{k} {ms:.0f}" for k, ms in steps.items()))
    lines += ["", "## Ratios", ""]
    lines += [f"- {k}: {v:.2f}×" for k, v in res["ratios"].items()]
    if res["failed"]:
        lines += ["", "Failed runs: " + ", ".join(res["failed"])]
    return "\n".join(lines) + "\n"


STEP_GROUPS = [  # (label, colour, step name prefixes) for the breakdown chart
    ("read sysfs", "#a6cee3", ("read sysfs",)),
    ("probe (modules beside it)", "#1f78b4", ("probe",)),
    ("kernel: version, names", "#b2df8a", ("kernel:", "load ")),
    ("headers", "#33a02c", ("headers",)),
    ("mappings", "#fb9a99", ("mapping", "crypt mapping")),
    ("mkfs", "#e31a1c", ("mkfs",)),
    ("mount and binds", "#fdbf6f", ("mount", "bind", "mkdir")),
]


def grid(g, left, pw, top, bottom, xmax, per_second=1):
    """Six vertical grid lines from 0 to xmax (in units of which per_second make a second), labelled
    in seconds below `bottom`."""
    for i in range(6):
        x = left + pw * i / 5
        g.line(x, top - 5, x, bottom, "#e5e5e5")
        g.text(x, bottom + 15, f"{xmax * i / 5 / per_second:g} s", 11, "middle")


def charts(res, outdir):
    """speed-sets.svg: each variant's median setup time per disk set (min-max whiskers);
    speed-steps.svg: ephemcrypt's median step times per disk set, stacked. Returns the paths."""
    import os
    import sys
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from chart import Svg, nice_max, NOTE, COLORS
    colors = dict(COLORS, before="#999999")
    sets = [(name, row) for name, row in res["sets"].items()]
    variants = [v for v in ("ephemcrypt", "before", "plain", "mdadm") if any(v in row for _, row in sets)]
    names = dict(NAMES, before=BEFORE)
    out = []
    # -- speed-sets.svg
    left, right, bar, top = 110, 230, 14, 70
    block = len(variants) * bar + 16
    w, h = 980, top + len(sets) * block + 70
    g = Svg(w, h)
    g.text(20, 24, "Setup time by disk set, start to mounted file system (median, min-max)", 15, weight="bold")
    g.text(20, 44, NOTE, 11, fill="#666")
    xmax = nice_max(max((row[v]["max"] or 0) for _, row in sets for v in variants if v in row))
    pw = w - left - right
    grid(g, left, pw, top, h - 55, xmax)
    for j, (name, row) in enumerate(sets):
        y0 = top + j * block
        g.text(left - 8, y0 + block / 2, name, 12, "end", weight="bold")
        for k, v in enumerate(variants):
            e = row.get(v)
            if not e or e["secs"] is None:
                continue
            y = y0 + k * bar
            g.rect(left, y, pw * e["secs"] / xmax, bar - 2, colors.get(v, "#888"), f"{names[v]}: {e['secs']:.2f} s")
            if e["min"] is not None and e["max"] is not None and e["n"] > 1:
                x1, x2 = left + pw * e["min"] / xmax, left + pw * e["max"] / xmax
                g.line(x1, y + bar / 2 - 1, x2, y + bar / 2 - 1, "#000")
            label = f"{e['secs']:.2f} s"
            if v == "ephemcrypt" and row.get("ratio_to_plain"):
                label += f" ({row['ratio_to_plain']:.2f}× plain)"
            g.text(left + pw * (e["max"] or e["secs"]) / xmax + 6, y + bar - 4, label, 10)
    for k, v in enumerate(variants):
        x = 20 + k * 235
        g.rect(x, h - 22, 12, 12, colors.get(v, "#888"))
        g.text(x + 16, h - 12, names[v], 10)
    path = os.path.join(outdir, "speed-sets.svg")
    g.save(path)
    out.append(path)
    # -- speed-steps.svg
    rows = [(name, row["ephemcrypt"].get("steps", {})) for name, row in sets if row.get("ephemcrypt", {}).get("steps")]
    if rows:
        def grouped(steps):
            parts = []
            for label, colour, prefixes in STEP_GROUPS:
                ms = sum(v for k, v in steps.items() if k.startswith(prefixes) and not
                         (label == "kernel: version, names" and k.startswith("load ")))
                parts.append((label, colour, ms))
            return parts
        left, right, bar, top = 110, 120, 22, 70
        w, h = 980, top + len(rows) * (bar + 10) + 80
        g = Svg(w, h)
        g.text(20, 24, "ephemcrypt's setup by step (median ms per step; module loads run beside the probe)", 15,
               weight="bold")
        g.text(20, 44, NOTE, 11, fill="#666")
        totals = [sum(ms for _, _, ms in grouped(st)) for _, st in rows]
        xmax = nice_max(max(totals))
        pw = w - left - right
        grid(g, left, pw, top, h - 65, xmax, per_second=1000)
        for j, (name, st) in enumerate(rows):
            y = top + j * (bar + 10)
            g.text(left - 8, y + bar * 0.7, name, 12, "end", weight="bold")
            x = left
            for label, colour, ms in grouped(st):
                g.rect(x, y, pw * ms / xmax, bar, colour, f"{label}: {ms:.0f} ms")
                x += pw * ms / xmax
            g.text(x + 6, y + bar * 0.7, f"{totals[j] / 1000:.2f} s", 10)
        for k, (label, colour, _) in enumerate(STEP_GROUPS):
            x = 20 + (k % 4) * 235
            yy = h - 32 + (k // 4) * 16
            g.rect(x, yy - 10, 12, 12, colour)
            g.text(x + 16, yy, label, 10)
        path = os.path.join(outdir, "speed-steps.svg")
        g.save(path)
        out.append(path)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--console", required=True)
    ap.add_argument("--json", required=True)
    ap.add_argument("--md", required=True)
    ap.add_argument("--conditions", default="")
    a = ap.parse_args()
    res = summarize(read(a.console))
    if not res["sets"]:
        raise SystemExit(f"bench/speed.py: no measurement in {a.console}")
    res["conditions"] = a.conditions
    with open(a.json, "w") as f:
        json.dump(res, f, indent=1)
    with open(a.md, "w") as f:
        f.write(markdown(res, a.conditions))
    import os
    charts(res, os.path.dirname(os.path.abspath(a.md)))
    print(open(a.md).read())


if __name__ == "__main__":
    main()
