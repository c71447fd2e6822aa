#!/bin/bash
# bench/boot-time.sh [BOOTS] (make bench-boot): what a node operator pays per boot. Time to
# multi-user.target (systemd-analyze: kernel + initrd + userspace) through dracut's systemd initrd
# into a Debian 12 systemd root, with two blank 1 GiB NVMe disks (serial EPH-A, EPH-B), for three
# images built by tests/vm/dracut-initrd.sh from the same kernel and host packages:
#   none        no ephemeral encryption (--systemd-none): the floor;
#   ephemcrypt  with ephemcrypt (--systemd; rd.ephemcrypt.devices=serial:EPH-*, expect=2, no swap);
#   shell       dracut's crypt and mdraid modules and the shell hook of bench/shell-hook
#               (--systemd-shell): mdadm RAID0 + cryptsetup plain + mkfs.ext4 + mount + binds.
# Each booted BOOTS times (default 3), interleaved; each boot checks where /var/log is mounted
# from and lists failed units. Results: bench/results/boot-time.{json,md}. Under TCG only the
# differences within one run count.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
. "$repo/tests/vm/lib.sh"
# --report: only the tables again, from the last run's lines.
report=''
[[ ${1:-} != --report ]] || { report=1 && shift; }
boots=${1:-3}
bin=$repo/target/x86_64-unknown-linux-musl/release/ephemcrypt
[[ -x $bin ]] || die "no $bin: run 'make build' first"
vm_kernel
out=$CACHE/boot-time
mkdir -p "$out"
[[ -n $report ]] || rm -f "$out"/*.log "$out"/*.raw
for v in none ephemcrypt shell; do
	[[ -z $report ]] || break
	case $v in none) via=--systemd-none ;; ephemcrypt) via=--systemd ;; shell) via=--systemd-shell ;; esac
	"$VM_DIR/dracut-initrd.sh" "$out/$v.img" "$via"
done
[[ -n $report ]] || : >"$out/lines"
for n in $(seq 1 "$boots"); do
	[[ -z $report ]] || break
	for v in none ephemcrypt shell; do
		"$VM_DIR/rootfs-debian.sh" "$out/root.img" "$here/guest/boot-time.sh" "$bin:/usr/sbin/ephemcrypt"
		# the shell hook's mount point, made in the image (its root is read-only in the initrd)
		debugfs -w -R "mkdir /mnt/ephemhook" "$out/root.img" >/dev/null 2>&1
		rm -f "$out"/*.raw && truncate -s 1G "$out/a.raw" "$out/b.raw"
		args=(--append "root=/dev/vda ro systemd.mask=serial-getty@ttyS0.service")
		[[ $v != ephemcrypt ]] || args+=(--append "rd.ephemcrypt.devices=serial:EPH-* rd.ephemcrypt.expect=2 rd.ephemcrypt.swap=0")
		# Once more after a boot that never reached userspace: on a loaded host TCG's kernel can
		# panic before the initrd ("IO-APIC + timer doesn't work"); that is not the image's doing.
		for try in 1 2; do
			"$VM_DIR/run.sh" --initrd "$out/$v.img" --log "$out/$v-$n.log" --timeout 900 --virtio "$out/root.img" \
				--disk "$out/a.raw:EPH-A" --disk "$out/b.raw:EPH-B" "${args[@]}" >/dev/null && break
			if ! grep -aq 'Kernel panic' "$out/$v-$n.log" || ((try == 2)); then
				die "boot $n of $v failed (console $out/$v-$n.log)"
			fi
			log "boot $n of $v: the kernel panicked before userspace; once more"
		done
		line=$(tr -d '\r' <"$out/$v-$n.log" | grep -ao 'BOOTTIME {.*}' | sed 's/^BOOTTIME //' | tail -n1)
		[[ -n $line ]] || die "boot $n of $v printed no BOOTTIME line (console $out/$v-$n.log)"
		echo "{\"variant\":\"$v\",\"boot\":$n,\"r\":$line}" >>"$out/lines"
		log "$v boot $n: $line"
	done
done
python3 - "$out/lines" "$here/results/boot-time.json" "$here/results/boot-time.md" \
	"$(date -u +%Y-%m-%dT%H:%M:%SZ); $(nproc) host cores, load $(cut -d' ' -f1-3 /proc/loadavg); qemu TCG -cpu max; $KERNEL_PKG; $boots boots each" <<'PY'
import json, re, statistics, sys
lines, out_json, out_md, cond = sys.argv[1:5]
def secs(s):
    t = 0.0
    for n, u in re.findall(r"([\d.]+)(min|ms|s)", s):
        t += float(n) * {"min": 60, "s": 1, "ms": 0.001}[u]
    return t
rows = {}
for l in open(lines):
    r = json.loads(l)
    a = r["r"]["analyze"]
    parts = {k: secs(v) for v, k in re.findall(r"([\d.]+(?:min|ms|s)(?: [\d.]+(?:ms|s))?) \((\w+)\)", a)}
    parts["total"] = secs(a.split("=")[-1])
    parts["var_log"] = r["r"]["var_log"]
    parts["failed"] = r["r"]["failed"]
    parts["setup_ms"] = r["r"]["setup_ms"]
    rows.setdefault(r["variant"], []).append(parts)
med = lambda v, k: statistics.median(p[k] for p in rows[v] if k in p)
res = {"conditions": cond, "boots": rows, "median": {v: {k: med(v, k) for k in ("kernel", "initrd", "userspace", "total")} for v in rows}}
json.dump(res, open(out_json, "w"), indent=1)
md = ["# Boot time: dracut systemd initrd into a Debian 12 root (make bench-boot)", "", f"Conditions: {cond}.", "",
      "Medians of systemd-analyze, seconds. Under TCG only the differences within this run count.", "",
      "| image | kernel | initrd | userspace | total | vs none | /var/log from | failed units |", "|---|---:|---:|---:|---:|---:|---|---|"]
base = res["median"].get("none", {}).get("total")
for v in ("none", "ephemcrypt", "shell"):
    if v not in rows: continue
    m = res["median"][v]
    diff = "" if base is None else "%+.2f" % (m["total"] - base)
    last = rows[v][-1]
    md.append("| %s | %.2f | %.2f | %.2f | %.2f | %s | %s | %s |" % (v, m["kernel"], m["initrd"], m["userspace"],
              m["total"], diff, last["var_log"], last["failed"] or "none"))
open(out_md, "w").write("\n".join(md) + "\n")
print("\n".join(md))
PY
