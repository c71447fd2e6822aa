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
    print(open(a.md).read())


if __name__ == "__main__":
    main()
