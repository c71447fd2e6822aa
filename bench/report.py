#!/usr/bin/env python3
"""bench/report.py: the BENCH lines of a bench run's console log -> results.json + results.md.

  report.py --console LOG --host HOST.json --images IMAGES.json --env BENCH.env \
            --json OUT.json --md OUT.md [--check]

Every figure is a median over the repetitions, with the spread (min..max) beside it. I/O is
reported as a ratio to the unencrypted stripe of the same run (the limit), and ephemcrypt's
mapping against cryptsetup's with the same cipher, flags and sector size. --check (the smoke run)
fails unless every part the run was asked for produced its measurements. Python 3 stdlib only.
"""
import argparse
import json
import re
import statistics
import sys

VARIANT_NAMES = {
    "ephemcrypt": "ephemcrypt (stripe + plain dm-crypt + ext4, lazy init)",
    "luks": "blog recipe: mdadm RAID0 + LUKS twofish-xts-512 + mkfs.ext4 -T largefile4",
    "plain": "mdadm RAID0 + cryptsetup plain (ephemcrypt's cipher and flags) + ext4",
    "mdadm": "mdadm RAID0 + ext4, no encryption (the floor)",
    "eks": "EKS/Karpenter: mdadm RAID0 + mkfs.xfs -K, no encryption",
}
CONFIG_NAMES = {
    "stripe": "unencrypted dm stripe (the limit)",
    "ephemcrypt": "ephemcrypt's mapping (its defaults)",
}
WL_NAMES = {
    "seqwrite": "seq write 1M",
    "seqread": "seq read 1M",
    "randwrite": "rand write 4k",
    "randread": "rand read 4k",
}


def config_name(c):
    if c in CONFIG_NAMES:
        return CONFIG_NAMES[c]
    m = re.match(r"cs-(kernel|read|write|bypass)-(\d+)$", c)
    if not m:
        return c
    flags = {
        "kernel": "both workqueues",
        "read": "no_read_workqueue",
        "write": "no_write_workqueue",
        "bypass": "no_read + no_write_workqueue",
    }[m.group(1)]
    return f"cryptsetup plain, {flags}, sector {m.group(2)}"


def wl_key(r):
    return f'{r["wl"]}:{r["nj"]}:{r["direct"]}'


def wl_label(key):
    wl, nj, direct = key.split(":")
    mode = "direct QD32" if direct == "1" else "buffered"
    return f"{WL_NAMES.get(wl, wl)}, {nj} job{'s' if nj != '1' else ''}, {mode}"


def stats(values):
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"n": len(values), "median": statistics.median(values), "min": min(values), "max": max(values)}


def read_console(path):
    records, logs = [], []
    for raw in open(path, "rb"):
        line = raw.decode("utf-8", "replace").replace("\r", "")
        line = re.sub(r"\x1b[^A-Za-z]*[A-Za-z]", "", line).rstrip("\n")
        i = line.find("BENCH ")
        if i >= 0 and line[i:].startswith("BENCH {"):
            try:
                records.append(json.loads(line[i + 6:]))
            except json.JSONDecodeError:
                logs.append("unparsable: " + line[i:])
        elif "BENCH-LOG " in line:
            logs.append(line[line.find("BENCH-LOG ") + 10:])
    return records, logs


def read_env(path):
    env = {}
    if path:
        for line in open(path):
            m = re.match(r'^(\w+)="?(.*?)"?$', line.strip())
            if m:
                env[m.group(1)] = m.group(2)
    return env


def summarize(records):
    setups = [r for r in records if r["t"] == "setup"]
    out = {"variants": {}, "count": {}, "size": {}}
    # variants: rep 0 warms the caches and is left out
    for v in dict.fromkeys(r["variant"] for r in setups if r["set"] == "variants"):
        rs = [r for r in setups if r["set"] == "variants" and r["variant"] == v and r["rep"] > 0]
        rs = rs or [r for r in setups if r["set"] == "variants" and r["variant"] == v]
        ok = [r for r in rs if r["ok"]]
        out["variants"][v] = {
            "name": VARIANT_NAMES.get(v, v),
            "disks": rs[0]["disks"],
            "disk_bytes": rs[0]["disk_bytes"],
            "failed": len(rs) - len(ok),
            "secs": stats([r["secs"] for r in ok]),
            "written": stats([r["written"] for r in ok]),
            "steps": step_medians(ok),
        }
    eph = out["variants"].get("ephemcrypt", {}).get("secs")
    for v, s in out["variants"].items():
        if eph and s["secs"]:
            s["times_ephemcrypt"] = round(s["secs"]["median"] / eph["median"], 2)
    for kind, key in (("count", "disks"), ("size", "disk_bytes")):
        for r in setups:
            if r["set"] != kind:
                continue
            out[kind].setdefault(r["variant"], {}).setdefault(str(r[key]), []).append(r)
        for v, by in out[kind].items():
            for k, rs in list(by.items()):
                ok = [r for r in rs if r["ok"]]
                by[k] = {"disks": rs[0]["disks"], "disk_bytes": rs[0]["disk_bytes"], "failed": len(rs) - len(ok),
                         "secs": stats([r["secs"] for r in ok]), "written": stats([r["written"] for r in ok])}
    return out


def step_medians(rs):
    """Median time of each named step (ephemcrypt's status steps, or the recipe's commands)."""
    by = {}
    for r in rs:
        for name, ms in (r.get("detail") or {}).get("steps", []):
            name = re.sub(r"( on)? /dev/\S+|\(member \d+ of \d+\)", "", name).strip()
            name = "headers" if name == "header" else name
            by.setdefault(name, {}).setdefault(r["rep"], 0)
            by[name][r["rep"]] += ms
    return {k: statistics.median(v.values()) for k, v in by.items()}


def summarize_io(records):
    ios = [r for r in records if r["t"] == "io"]
    out = {}
    for r in ios:
        out.setdefault(r["target"], {}).setdefault(wl_key(r), {}).setdefault(r["config"], []).append(r["bw"])
    for tgt, by_wl in out.items():
        for wl, by_cfg in by_wl.items():
            base = statistics.median(by_cfg["stripe"]) if by_cfg.get("stripe") else None
            kern = statistics.median(by_cfg[KERNEL]) if by_cfg.get(KERNEL) else None
            for c, bws in list(by_cfg.items()):
                s = stats(bws)
                s["vs_stripe"] = round(s["median"] / base, 4) if base else None
                # against cryptsetup's table with dm-crypt's own workqueues (the kernel's way)
                s["vs_kernel"] = round(s["median"] / kern, 3) if kern and c != "stripe" else None
                by_cfg[c] = s
            # ephemcrypt against cryptsetup with the same table (flags and sector size)
            eq = by_cfg.get(EQUIVALENT) if EQUIVALENT else None
            if eq and by_cfg.get("ephemcrypt"):
                by_cfg["ephemcrypt"]["vs_cryptsetup"] = round(by_cfg["ephemcrypt"]["median"] / eq["median"], 3)
    return out


KERNEL = "cs-kernel-4096"  # the reference for the flags: both of dm-crypt's workqueues, 4 KiB sectors
EQUIVALENT = None  # the cs-* configuration with ephemcrypt's flags and sector size (from its plan)


def equivalent_config(records):
    plan = next((r for r in records if r["t"] == "plan"), None)
    if not plan:
        return None
    c = plan["crypt"]
    rd, wr = "no_read_workqueue" in c, "no_write_workqueue" in c
    m = re.search(r"sector_size:(\d+)", c)
    flags = "bypass" if rd and wr else "read" if rd else "write" if wr else "kernel"
    return f"cs-{flags}-{m.group(1) if m else 512}"


def human_bytes(n):
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def size_label(n):
    for unit, f in (("TiB", 1 << 40), ("GiB", 1 << 30)):
        if n >= f * 0.99:
            return f"{n / f:.0f} {unit}"
    return human_bytes(n)


def ratio(r):
    """A ratio with three significant digits (TCG's ratios to the stripe can be 0.01)."""
    return f"{r:.2f}" if r >= 0.1 else f"{r:.3f}" if r >= 0.01 else f"{r:.4f}"


def spread(s, fmt="{:.2f}"):
    if not s:
        return "failed"
    if s["n"] == 1:
        return fmt.format(s["median"])
    return f'{fmt.format(s["median"])} ({fmt.format(s["min"])}–{fmt.format(s["max"])})'


def markdown(res):
    c = res["conditions"]
    L = ["# ephemcrypt benchmark results", ""]
    L += [f"Run: {c.get('mode')} run of `bench/run.sh`, {c.get('date')}; charts: `bench/chart.py`.", ""]
    if res.get("note"):
        L += [res["note"], ""]
    L += ["**Absolute figures mean nothing here.** The VM runs under qemu TCG (no KVM on these machines):",
          "the CPU, AES-NI included, is emulated, so encryption costs far more than on real hardware and",
          "throughput is that of the emulator. Every variant meets the same kernel, disks and emulated",
          "CPU in the same run: only the ratios within this run count. The host was shared with other",
          "jobs (fuzzing, VM tests) on 2 cores, so single figures are noisy: medians, with min–max.", ""]
    L += ["## Conditions", "", "| | |", "|---|---|"]
    for k in ("host_cpu", "host_cores", "host_kernel", "host_loadavg", "qemu", "accel", "cpu", "vcpus", "guest_mem_mib",
              "guest_kernel", "guest_cpu", "aes_driver", "cryptsetup", "mdadm", "e2fsprogs", "xfsprogs", "fio",
              "ephemcrypt", "ephemcrypt_crypt_table", "disks", "repetitions", "io", "vm_secs", "images_secs",
              "disk_data_peak_mib", "shared_host"):
        if k in c:
            L.append(f"| {k} | {str(c[k]).replace('|', '/')} |")
    L.append("")

    v = res["setup"]["variants"]
    if v:
        d = next(iter(v.values()))
        L += ["## Setup time, start to mounted file system", "",
              f"{d['disks']} disks of {size_label(d['disk_bytes'])} each, freshly blanked before every run; "
              "median (min–max) over the repetitions after a warm-up; bytes written to the disks during "
              "setup from `/sys/block/*/stat` (after a sync, with ext4's background inode-table zeroing "
              "stopped: it is not part of setup).", "",
              "| variant | setup s | × ephemcrypt | written | slowest steps (median ms) |", "|---|---:|---:|---:|---|"]
        for name, s in v.items():
            steps = sorted(s["steps"].items(), key=lambda kv: -kv[1])[:3]
            L.append(f"| {s['name']} | {spread(s['secs'])} | {s.get('times_ephemcrypt', '')}× | "
                     f"{human_bytes(s['written']['median']) if s['written'] else ''} | "
                     f"{', '.join(f'{k} {v:.0f}' for k, v in steps)} |")
        L.append("")
    for kind, label in (("count", "disk count"), ("size", "disk size")):
        sc = res["setup"][kind]
        if not sc:
            continue
        keys = sorted({k for by in sc.values() for k in by}, key=int)
        first = next(iter(next(iter(sc.values())).values()))
        what = (f"disks of {size_label(first['disk_bytes'])}" if kind == "count" else "one disk of each size")
        L += [f"## Setup time against {label}", "", f"{what}; seconds, median (min–max).", ""]
        head = [f"{k} disk{'s' if k != '1' else ''}" if kind == "count" else size_label(int(k)) for k in keys]
        L += ["| variant | " + " | ".join(head) + " |", "|---|" + "---:|" * len(keys)]
        for var, by in sc.items():
            L.append(f"| {var} | " + " | ".join(spread(by[k]["secs"]) if k in by else "" for k in keys) + " |")
        L.append("")
        L += ["Bytes written at setup (median):", "", "| variant | " + " | ".join(head) + " |",
              "|---|" + "---:|" * len(keys)]
        for var, by in sc.items():
            L.append(f"| {var} | " + " | ".join(
                human_bytes(by[k]["written"]["median"]) if k in by and by[k]["written"] else "" for k in keys) + " |")
        L.append("")

    io = res["io"]
    if io:
        eq = res.get("equivalent_config")
        L += ["## I/O, as a ratio to the unencrypted stripe", "",
              "fio on the same dm stripe of the same disks: unencrypted, under ephemcrypt's mapping, and under",
              "cryptsetup plain mappings with the same cipher (aes-xts-plain64, 512-bit key) per workqueue",
              "flag setting and sector size. Median bandwidth of the configuration / median of the stripe;",
              f"the last column: ephemcrypt's mapping / cryptsetup's with the same flags ({eq}). Buffered",
              "writes: bytes over the wall-clock time with the final fsync.", ""]
        for tgt in ("raw", "fs"):
            if tgt not in io:
                continue
            cfgs = list(dict.fromkeys(c for by in io[tgt].values() for c in by))
            L += [f"### {'raw device' if tgt == 'raw' else 'ext4 on it'}", "",
                  "| workload | stripe MB/s | " + " | ".join(c for c in cfgs if c != "stripe") + " | ephemcrypt / cryptsetup |",
                  "|---|---:|" + "---:|" * (len(cfgs) - (1 if "stripe" in cfgs else 0)) + "---:|"]
            for wl, by in io[tgt].items():
                st = by.get("stripe")
                row = [wl_label(wl), f"{st['median'] / 1e6:.0f}" if st else ""]
                for cf in cfgs:
                    if cf == "stripe":
                        continue
                    s = by.get(cf)
                    if not s:
                        row.append("")
                    elif s.get("vs_stripe") is None:
                        row.append(f"({s['median'] / 1e6:.1f} MB/s)")
                    else:
                        row.append(ratio(s["vs_stripe"]) + (f" ({ratio(s['min'] / st['median'])}–"
                                                            f"{ratio(s['max'] / st['median'])})" if s["n"] > 1 else ""))
                e = by.get("ephemcrypt", {}).get("vs_cryptsetup")
                row.append(f"{e:.2f}" if e is not None else "")
                L.append("| " + " | ".join(row) + " |")
            L.append("")
        if res["env"].get("BUF_TIMED", "1") != "0" and any(k.endswith(":0") and "write" in k for k in io.get("fs", {})):
            L += ["**The buffered writes above are noise, not evidence**: they ran for a few seconds with a",
                  "16 MiB dirty-page limit, which measures mostly the dirty-page throttle ramping up on each new",
                  "device (the spread between repetitions reaches 10×; the unencrypted stripe comes out slower",
                  "than encrypted mappings). `bench/run.sh` now writes whole files with the kernel's dirty",
                  "limits (`BUF_TIMED=0`, `DIRTY_BYTES=0`); see `bench/results/buffered/` for such a run.", ""]
        if any(s.get("vs_kernel") for t in io.values() for by in t.values() for s in by.values()):
            L += [f"### Against dm-crypt's workqueues (`{KERNEL}` = 1.00)", "",
                  "The same medians as a ratio to cryptsetup plain with both workqueues and 4 KiB sectors: what",
                  "bypassing a workqueue (read, write, both) or 512-byte sectors change on this kernel.", ""]
            for tgt in ("raw", "fs"):
                if tgt not in io:
                    continue
                cfgs = [c for c in dict.fromkeys(c for by in io[tgt].values() for c in by) if c != "stripe"]
                L += [f"{'raw device' if tgt == 'raw' else 'ext4'}:", "",
                      f"| workload | {KERNEL} MB/s | " + " | ".join(cfgs) + " |", "|---|---:|" + "---:|" * len(cfgs)]
                for wl, by in io[tgt].items():
                    k = by.get(KERNEL)
                    row = [wl_label(wl), f"{k['median'] / 1e6:.1f}" if k else ""]
                    for cf in cfgs:
                        s = by.get(cf)
                        row.append(f"{s['vs_kernel']:.2f}" if s and s.get("vs_kernel") is not None else "")
                    L.append("| " + " | ".join(row) + " |")
                L.append("")
        L += ["Configurations: " + "; ".join(f"`{c}` {config_name(c)}" for c in
                                               dict.fromkeys(c for t in io.values() for by in t.values() for c in by)) + ".", ""]
        tables = res.get("tables", {})
        if tables:
            L += ["Tables (key left out):", ""] + [f"- `{c}`: `{t}`" for c, t in tables.items()] + [""]

    im = res.get("images")
    if im:
        L += ["## initramfs cost (dracut)", "",
              "Debian's dracut for the same kernel, no host-only, zstd; `ephemcrypt-dm` is the module as it was",
              f"when it depended on dracut's `dm` module (git {im.get('dm_revision')}).", ""]
        for flavour, imgs in im["flavours"].items():
            stock = imgs["stock"]
            L += [f"### {flavour} init", "", "| image | zstd bytes | + vs stock | cpio bytes | + vs stock | files added |",
                  "|---|---:|---:|---:|---:|---:|"]
            for name, i in imgs.items():
                L.append(f"| {name} | {i['bytes']:,} | {i['bytes'] - stock['bytes']:+,} | {i['cpio_bytes']:,} | "
                         f"{i['cpio_bytes'] - stock['cpio_bytes']:+,} | {i['added_files']} |")
            L.append("")
            for name, i in imgs.items():
                if name != "stock" and i["largest_added"]:
                    L.append(f"Largest files {name} adds: " + ", ".join(
                        f"`{p.strip()}` {human_bytes(s)}" for p, s in i["largest_added"][:6]) + ".")
            L.append("")
        r = res.get("image_ratios")
        if r:
            L += ["Increase over stock: " + "; ".join(f"{k} {v}" for k, v in r.items()) + ".", ""]
    if res.get("logs"):
        L += ["## Notes from the guest", "", "```"] + res["logs"][:80] + ["```", ""]
    return "\n".join(L)


def image_ratios(im):
    out = {}
    for flavour, imgs in (im or {}).get("flavours", {}).items():
        stock = imgs.get("stock")
        e, cm = imgs.get("ephemcrypt"), imgs.get("crypt-mdraid")
        if stock and e and cm:
            de, dc = e["bytes"] - stock["bytes"], cm["bytes"] - stock["bytes"]
            out[f"{flavour} init"] = (f"ephemcrypt {human_bytes(de)} (+{100 * de / stock['bytes']:.0f} %), "
                                      f"crypt+mdraid {human_bytes(dc)} (+{100 * dc / stock['bytes']:.0f} %): "
                                      f"ephemcrypt adds {de / dc:.2f}× of what crypt+mdraid adds" if dc else "")
            if imgs.get("ephemcrypt-dm"):
                dd = imgs["ephemcrypt-dm"]["bytes"] - stock["bytes"]
                out[f"{flavour} init"] += f"; with the old dm dependency {human_bytes(dd)}"
    return out


def check(res, env):
    errors = []
    parts = env.get("PARTS", "").split()
    if "variants" in parts:
        for v in env.get("VARIANTS", "").split():
            s = res["setup"]["variants"].get(v)
            if not s or not s["secs"] or s["failed"]:
                errors.append(f"setup of {v}: no successful measurement")
    if "io" in parts:
        for c in env.get("IO_CONFIGS", "").split():
            if not any(c in by for t in res["io"].values() for by in t.values()):
                errors.append(f"I/O of {c}: no measurement")
    for kind in ("count", "size"):
        if kind in parts:
            for v in env.get("SCALE_VARIANTS", "").split():
                by = res["setup"][kind].get(v, {})
                if not by or any(not x["secs"] for x in by.values()):
                    errors.append(f"{kind} of {v}: missing or failed")
    if not res.get("images", {}).get("flavours"):
        errors.append("no image sizes")
    if not res["conditions"].get("end"):
        errors.append("the guest did not finish (no end line)")
    return errors


def main():
    global EQUIVALENT
    ap = argparse.ArgumentParser()
    ap.add_argument("--console", required=True)
    ap.add_argument("--host", required=True)
    ap.add_argument("--images")
    ap.add_argument("--env")
    ap.add_argument("--json", required=True)
    ap.add_argument("--md", required=True)
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--note", help="a paragraph under the title: what this run was for")
    a = ap.parse_args()
    records, logs = read_console(a.console)
    env = read_env(a.env)
    EQUIVALENT = equivalent_config(records)
    cond = json.load(open(a.host))
    info = next((r for r in records if r["t"] == "info"), {})
    cond.update({("guest_kernel" if k == "kernel" else k): v for k, v in info.items() if k != "t"})
    plan = next((r for r in records if r["t"] == "plan"), {})
    if plan:
        cond["ephemcrypt_crypt_table"] = plan["crypt"]
    cond["repetitions"] = (f"setup {env.get('REPS')} (+1 warm-up), scale {env.get('SCALE_REPS')} "
                           f"(largest sizes once: {env.get('SIZE_ONCE') or '-'}), I/O {env.get('IO_REPS')}")
    if env.get("IO_SIZE"):
        rt = int(env.get("IO_RUNTIME") or 0)
        buf = int(env.get("BUF_SIZE") or env["IO_SIZE"]) >> 20
        dirty = int(env.get("DIRTY_BYTES") or 16 << 20) if env.get("DIRTY_BYTES") != "0" else 0
        how = (f"{rt + 1} s over files of {buf} MiB" if env.get("BUF_TIMED", "1") != "0"
               else f"{buf} MiB split between the jobs, once")
        cond["io"] = (f"direct: {rt} s after {env.get('IO_RAMP')} s warm-up over {int(env['IO_SIZE']) >> 20} MiB "
                      f"per job group; buffered writes on ext4: {how}, then fsync; rate = bytes / wall time; "
                      f"vm.dirty_bytes {f'{dirty >> 20} MiB' if dirty else 'the kernel default (a share of memory)'}; "
                      f"buffered read: a {int(env.get('READ_SIZE') or 0) >> 20} MiB file once, cold cache; "
                      f"on {env.get('IO_DISKS')}")
    end = next((r for r in records if r["t"] == "end"), None)
    cond["end"] = bool(end)
    if end:
        cond["guest_secs"] = end["secs"]
    cond["parts_secs"] = {r["part"]: r["secs"] for r in records if r["t"] == "part"}
    images = json.load(open(a.images)) if a.images else None
    res = {
        "conditions": cond,
        "env": env,
        "equivalent_config": EQUIVALENT,
        "setup": summarize(records),
        "io": summarize_io(records),
        "tables": {r["config"]: r["table"] for r in records if r["t"] == "table"},
        "images": images,
        "image_ratios": image_ratios(images),
        "logs": logs,
        "records": records,
        "note": a.note,
    }
    json.dump(res, open(a.json, "w"), indent=1)
    open(a.md, "w").write(markdown(res))
    if a.check:
        errors = check(res, env)
        for e in errors:
            print(f"report.py: check failed: {e}", file=sys.stderr)
        if errors:
            sys.exit(1)
        print("report.py: every part produced its measurements", file=sys.stderr)


if __name__ == "__main__":
    main()
