#!/usr/bin/env python3
"""bench/chart.py RESULTS.json OUTDIR: SVG charts of a bench run (Python 3 stdlib only).

  setup-variants.svg  setup time per variant (median bar, min-max whisker), bytes written beside it
  setup-scale.svg     setup time against disk count and against disk size (log scales)
  io-ratios.svg       I/O of each configuration as a ratio to the unencrypted stripe, per workload
  io-flags.svg        the same against cryptsetup plain with both workqueues, 4 KiB sectors (the flags)
  image-size.svg      dracut image size: stock, +ephemcrypt, +crypt+mdraid (and the old module)
"""
import json
import math
import os
import sys
from xml.sax.saxutils import escape

FONT = 'font-family="DejaVu Sans, Helvetica, Arial, sans-serif"'
COLORS = {"ephemcrypt": "#1b7837", "luks": "#b2182b", "plain": "#ef8a62", "mdadm": "#67a9cf", "eks": "#2166ac"}
SHORT = {
    "ephemcrypt": "ephemcrypt",
    "luks": "blog recipe: mdadm + LUKS twofish + ext4",
    "plain": "mdadm + cryptsetup plain + ext4",
    "mdadm": "mdadm + ext4, unencrypted",
    "eks": "EKS: mdadm + mkfs.xfs -K, unencrypted",
}
NOTE = "qemu TCG: AES is emulated, absolute figures mean nothing; compare within this run only"


class Svg:
    def __init__(self, w, h):
        self.w, self.h, self.items = w, h, []

    def text(self, x, y, s, size=12, anchor="start", weight="normal", fill="#222", rotate=None):
        rot = f' transform="rotate({rotate} {x:.1f} {y:.1f})"' if rotate else ""
        self.items.append(f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" '
                          f'font-weight="{weight}" fill="{fill}" {FONT}{rot}>{escape(str(s))}</text>')

    def rect(self, x, y, w, h, fill, title=None, stroke="none"):
        t = f"<title>{escape(title)}</title>" if title else ""
        self.items.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(w, 0):.1f}" height="{max(h, 0):.1f}" '
                          f'fill="{fill}" stroke="{stroke}">{t}</rect>')

    def line(self, x1, y1, x2, y2, stroke="#999", width=1, dash=None):
        d = f' stroke-dasharray="{dash}"' if dash else ""
        self.items.append(f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="{stroke}" '
                          f'stroke-width="{width}"{d}/>')

    def polyline(self, pts, stroke, width=2):
        p = " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)
        self.items.append(f'<polyline points="{p}" fill="none" stroke="{stroke}" stroke-width="{width}"/>')

    def circle(self, x, y, r, fill, title=None):
        t = f"<title>{escape(title)}</title>" if title else ""
        self.items.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{r}" fill="{fill}">{t}</circle>')

    def save(self, path):
        with open(path, "w") as f:
            f.write(f'<svg xmlns="http://www.w3.org/2000/svg" width="{self.w}" height="{self.h}" '
                    f'viewBox="0 0 {self.w} {self.h}">\n<rect width="100%" height="100%" fill="white"/>\n')
            f.write("\n".join(self.items))
            f.write("\n</svg>\n")


def human_bytes(n):
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def size_label(n):
    return f"{n / (1 << 40):.0f} TiB" if n >= (1 << 40) * 0.99 else f"{n / (1 << 30):.0f} GiB"


def nice_max(v):
    if v <= 0:
        return 1
    e = 10 ** math.floor(math.log10(v))
    for m in (1, 2, 2.5, 5, 10):
        if v <= m * e:
            return m * e
    return 10 * e


def setup_variants(res, path):
    v = {k: s for k, s in res["setup"]["variants"].items() if s["secs"]}
    if not v:
        return False
    left, right, bar, gap, top = 330, 190, 22, 12, 60
    w = 980
    h = top + len(v) * (bar + gap) + 60
    g = Svg(w, h)
    d = next(iter(v.values()))
    g.text(20, 24, f"Setup time, start to mounted file system ({d['disks']} disks of {size_label(d['disk_bytes'])})",
           15, weight="bold")
    g.text(20, 44, NOTE, 11, fill="#666")
    xmax = nice_max(max(s["secs"]["max"] for s in v.values()))
    pw = w - left - right
    for i in range(6):
        x = left + pw * i / 5
        g.line(x, top - 5, x, h - 45, "#e5e5e5")
        g.text(x, h - 30, f"{xmax * i / 5:g} s", 11, "middle")
    for i, (k, s) in enumerate(v.items()):
        y = top + i * (bar + gap)
        g.text(left - 8, y + bar * 0.7, SHORT.get(k, k), 11, "end")
        st = s["secs"]
        g.rect(left, y, pw * st["median"] / xmax, bar, COLORS.get(k, "#888"),
               f"{k}: median {st['median']:.2f} s, {st['min']:.2f}..{st['max']:.2f} s, n={st['n']}")
        if st["n"] > 1:
            x1, x2 = left + pw * st["min"] / xmax, left + pw * st["max"] / xmax
            g.line(x1, y + bar / 2, x2, y + bar / 2, "#000")
            g.line(x1, y + 4, x1, y + bar - 4, "#000")
            g.line(x2, y + 4, x2, y + bar - 4, "#000")
        label = f"{st['median']:.2f} s"
        if s.get("times_ephemcrypt") and k != "ephemcrypt":
            label += f"  ({s['times_ephemcrypt']:g}× ephemcrypt)"
        if s["written"]:
            label += f", wrote {human_bytes(s['written']['median'])}"
        g.text(left + pw * st["max"] / xmax + 6, y + bar * 0.7, label, 11)
    g.save(path)
    return True


def log_axis(vmin, vmax):
    lo, hi = math.floor(math.log10(vmin)), math.ceil(math.log10(vmax))
    if hi == lo:
        hi += 1
    return lo, hi


def scale_panel(g, x0, y0, pw, ph, series, xs, xlabel, xfmt, title):
    """series: {variant: [(x, median, min, max)]}, x and y on log scales."""
    g.text(x0, y0 - 12, title, 13, weight="bold")
    ys = [p[3] for pts in series.values() for p in pts] + [p[2] for pts in series.values() for p in pts]
    lo, hi = log_axis(max(min(ys), 1e-3), max(ys))
    xl, xh = math.log(min(xs)), math.log(max(xs))
    xh = xh if xh > xl else xl + 1

    def X(x):
        return x0 + pw * (math.log(x) - xl) / (xh - xl)

    def Y(y):
        return y0 + ph - ph * (math.log10(max(y, 1e-3)) - lo) / (hi - lo)

    g.rect(x0, y0, pw, ph, "none", stroke="#ccc")
    for e in range(lo, hi + 1):
        for m in (1, 2, 5):
            v = m * 10 ** e
            if 10 ** lo <= v <= 10 ** hi:
                g.line(x0, Y(v), x0 + pw, Y(v), "#eee" if m != 1 else "#ddd")
                g.text(x0 - 6, Y(v) + 4, f"{v:g} s", 10, "end")
    for x in xs:
        g.line(X(x), y0 + ph, X(x), y0 + ph + 4, "#999")
        g.text(X(x), y0 + ph + 16, xfmt(x), 10, "middle")
    g.text(x0 + pw / 2, y0 + ph + 34, xlabel, 11, "middle")
    for i, (var, pts) in enumerate(series.items()):
        pts = sorted(pts)
        c = COLORS.get(var, "#888")
        g.polyline([(X(x), Y(m)) for x, m, _, _ in pts], c)
        for x, m, a, b in pts:
            if b > a:
                g.line(X(x), Y(a), X(x), Y(b), c, 1)
            g.circle(X(x), Y(m), 3.5, c, f"{var}: {xfmt(x)}: {m:.2f} s ({a:.2f}..{b:.2f})")
        g.rect(x0 + 10, y0 + 10 + i * 18, 12, 10, c)
        g.text(x0 + 28, y0 + 19 + i * 18, {"luks": "blog recipe (mdadm + LUKS)"}.get(var, var), 11)


def setup_scale(res, path):
    panels = []
    for kind, key, label, fmt in (("count", "disks", "disks (4 GiB each)" , lambda x: f"{x:g}"),
                                  ("size", "disk_bytes", "disk size (one disk, sparse)", size_label)):
        sc = res["setup"].get(kind) or {}
        series = {}
        xs = set()
        for var, by in sc.items():
            for k, s in by.items():
                if s["secs"]:
                    x = s[key]
                    xs.add(x)
                    series.setdefault(var, []).append((x, s["secs"]["median"], s["secs"]["min"], s["secs"]["max"]))
        if series:
            if kind == "count":
                first = next(iter(next(iter(sc.values())).values()))
                label = f"disks ({size_label(first['disk_bytes'])} each)"
            panels.append((series, sorted(xs), label, fmt, f"Setup time against {'disk count' if kind == 'count' else 'disk size'}"))
    if not panels:
        return False
    pw, ph = 400, 300
    g = Svg(80 + len(panels) * (pw + 110), ph + 140)
    g.text(20, 24, "Setup time as the volume grows (log scales; median, min–max)", 15, weight="bold")
    g.text(20, 44, NOTE, 11, fill="#666")
    for i, p in enumerate(panels):
        scale_panel(g, 80 + i * (pw + 110), 80, pw, ph, *p)
    g.save(path)
    return True


def io_ratios(res, path, key="vs_stripe", title=None, base_label="stripe"):
    io = res.get("io") or {}
    rows = []
    for tgt in ("raw", "fs"):
        for wl, by in (io.get(tgt) or {}).items():
            rows.append((tgt, wl, by))
    if not rows:
        return False
    cfgs = [c for c in dict.fromkeys(c for _, _, by in rows for c in by) if c != "stripe"]
    if key != "vs_stripe":
        if not any(s.get(key) for _, _, by in rows for s in by.values()):
            return False
    cw, rh, left, top = 92, 24, 300, 110
    w = max(left + cw * len(cfgs) + 20, 800)
    h = top + rh * len(rows) + 70
    g = Svg(w, h)
    g.text(20, 24, title or "I/O as a ratio to the unencrypted stripe (1.00 = as fast as no encryption)", 15,
           weight="bold")
    g.text(20, 44, NOTE + "; ratios compare tables on the same kernel", 11, fill="#666")
    for j, c in enumerate(cfgs):
        x = left + j * cw + cw / 2
        for k, part in enumerate(c.replace("cs-", "cryptsetup ").split(" ") if c.startswith("cs-")
                                  else [c]):
            g.text(x, top - 34 + k * 13, part.replace("-", " ") if k else part, 10, "middle", "bold")
    labels = {"seqwrite": "seq write 1M", "seqread": "seq read 1M", "randwrite": "rand write 4k",
              "randread": "rand read 4k"}
    for i, (tgt, wl, by) in enumerate(rows):
        y = top + i * rh
        name, nj, direct = wl.split(":")
        g.text(left - 8, y + rh * 0.68, f"{'ext4' if tgt == 'fs' else 'raw'}: {labels.get(name, name)}, "
               f"{nj} job{'s' if nj != '1' else ''}, {'direct QD32' if direct == '1' else 'buffered'}", 11, "end")
        for j, c in enumerate(cfgs):
            s = by.get(c)
            x = left + j * cw
            if not s:
                g.rect(x + 1, y + 1, cw - 2, rh - 2, "#f4f4f4")
                continue
            if s.get(key) is None:  # no baseline measured here: the rate itself
                g.rect(x + 1, y + 1, cw - 2, rh - 2, "#f4f4f4")
                g.text(x + cw / 2, y + rh * 0.68, f"{s['median'] / 1e6:.1f} MB/s", 10, "middle", fill="#666")
                continue
            r = s[key]
            if key == "vs_stripe":  # white at 1.0 and above, deepening red towards 0
                t = max(0.0, min(1.0, r))
                col = f"rgb(255,{int(255 * (0.35 + 0.65 * t))},{int(255 * (0.35 + 0.65 * t))})"
            elif r < 1:  # red below the baseline, green above, full at 0.5 and 2
                t = max(0.0, min(1.0, (1 - r) * 2))
                col = f"rgb(255,{int(255 * (1 - 0.6 * t))},{int(255 * (1 - 0.6 * t))})"
            else:
                t = max(0.0, min(1.0, r - 1))
                col = f"rgb({int(255 * (1 - 0.6 * t))},255,{int(255 * (1 - 0.6 * t))})"
            g.rect(x + 1, y + 1, cw - 2, rh - 2, col,
                   f"{c} {wl} ({tgt}): {s['median'] / 1e6:.1f} MB/s, {r:.3f} of {base_label}")
            g.text(x + cw / 2, y + rh * 0.68, f"{r:.2f}" if r >= 0.1 else f"{r:.3f}", 11, "middle")
    g.text(20, h - 34, "Columns: ephemcrypt's mapping with its defaults; cryptsetup plain aes-xts-plain64 (512-bit key) with",
           10, fill="#444")
    g.text(20, h - 20, "dm-crypt's workqueues (kernel), no_read_workqueue (read), no_write_workqueue (write) or both "
           "(bypass), and sector size 512 or 4096.", 10, fill="#444")
    g.save(path)
    return True


def io_flags(res, path):
    return io_ratios(res, path, "vs_kernel", "I/O against cryptsetup plain with dm-crypt's workqueues, 4 KiB sectors "
                     "(= 1.00)", "cs-kernel-4096")


def image_size(res, path):
    im = (res.get("images") or {}).get("flavours") or {}
    if not im:
        return False
    rows = [(f, n, i) for f, imgs in im.items() for n, i in imgs.items()]
    left, bar, gap, top = 230, 20, 8, 60
    w = 900
    h = top + len(rows) * (bar + gap) + len(im) * 10 + 40
    g = Svg(w, h)
    g.text(20, 24, "dracut initramfs size (zstd), Debian 12's dracut, same kernel and options", 15, weight="bold")
    g.text(20, 44, "stock: nothing added; ephemcrypt: its module; crypt-mdraid: dracut's crypt + mdraid modules; "
           "ephemcrypt-dm: the module with its old dm dependency", 11, fill="#666")
    xmax = nice_max(max(i["bytes"] for _, _, i in rows))
    pw = w - left - 170
    colors = {"stock": "#999", "ephemcrypt": "#1b7837", "crypt-mdraid": "#b2182b", "ephemcrypt-dm": "#a6dba0"}
    y = top
    last = None
    for f, n, i in rows:
        if last and f != last:
            y += 10
        last = f
        stock = im[f]["stock"]["bytes"]
        g.text(left - 8, y + bar * 0.72, f"{f} init: {n}", 11, "end")
        g.rect(left, y, pw * i["bytes"] / xmax, bar, colors.get(n, "#888"))
        extra = "" if n == "stock" else f" (+{(i['bytes'] - stock) / 1e6:.2f} MB)"
        g.text(left + pw * i["bytes"] / xmax + 6, y + bar * 0.72, f"{i['bytes'] / 1e6:.2f} MB{extra}", 11)
        y += bar + gap
    g.save(path)
    return True


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: chart.py RESULTS.json OUTDIR")
    res = json.load(open(sys.argv[1]))
    out = sys.argv[2]
    os.makedirs(out, exist_ok=True)
    made = []
    for name, fn in (("setup-variants.svg", setup_variants), ("setup-scale.svg", setup_scale),
                     ("io-ratios.svg", io_ratios), ("io-flags.svg", io_flags), ("image-size.svg", image_size)):
        if fn(res, os.path.join(out, name)):
            made.append(name)
    print(f"chart.py: {', '.join(made) or 'nothing'} in {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
