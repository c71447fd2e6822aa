#!/bin/bash
# bench/run.sh [--smoke|--speed]: ephemcrypt against what users run instead, in one VM (make bench,
# make bench-smoke). No KVM here: qemu (TCG, -cpu max) emulates the CPU, AES included, so absolute
# figures mean nothing; every variant meets the same kernel, disks and emulated CPU in the same
# run, and only ratios within a run count.
#   1. a Debian 12 root with mdadm, cryptsetup, fio and xfsprogs and the Debian cloud kernel's
#      modules (tests/vm/rootfs-debian.sh, DEBIAN_KERNEL=yes), the release binary in it, booted
#      with its own initramfs-tools image through tests/vm/run.sh with throwaway NVMe disks on
#      sparse files: 16 of 4 GiB (BC-01..16: variants and I/O on the first two, disk count on all)
#      and one of each size from 1 GiB to 16 TiB (BS-*; the host's ext4 caps a file at 16 TiB
#      minus 4 KiB, so the largest is that); bench/guest/bench.sh measures and prints BENCH lines;
#   2. bench/initrd-size.sh: dracut images without ephemcrypt, with it, and with dracut's crypt +
#      mdraid modules instead;
#   3. bench/report.py: results.json and results.md; bench/chart.py: the SVG charts.
# Results: bench/results/ (the full run) or $VM_CACHE/bench-smoke/results (--smoke: one
# repetition, 1 GiB disks, a few variants; fails unless every part produced its measurements).
# --speed (make bench-speed): the setup-time ratios of issue 22 alone, in bench/results/speed/:
# ephemcrypt, mdadm + cryptsetup plain + ext4 and mdadm + ext4 on 2, 8 and 16 disks of 1 GiB,
# 2 x 1 TiB and 8 x 7.5 TiB (sparse files), with ephemcrypt's step breakdown
# (bench/speed.py); BENCH_BIN: another binary to measure; BENCH_BEFORE: an earlier binary measured
# beside it in the same VM as the variant `before` (BENCH_RESULTS: where the results go).
# Time on 2 shared cores: the full run took 42 minutes (with timed buffered writes; whole files,
# as now, add about 5), the smoke run about 6. BENCH_OVERRIDES: more lines for the guest's bench.env.
# A host-side guard stops the VM if the disk files hold more than BENCH_MAX_MIB (default 12000)
# of real data; the run refuses to start with less than 15 GiB free.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
. "$repo/tests/vm/lib.sh"

mode=full
case ${1:-} in
--smoke) mode=smoke ;;
--speed) mode=speed ;;
'') ;;
*) die "usage: ${0##*/} [--smoke]" ;;
esac
bin=${BENCH_BIN:-$repo/target/x86_64-unknown-linux-musl/release/ephemcrypt}
[[ -x $bin ]] || die "no $bin: run 'make build' first"
vm_kernel
out=$CACHE/bench-$mode
results=$here/results
[[ $mode == full ]] || results=$out/results
[[ $mode != speed ]] || results=${BENCH_RESULTS:-$here/results/speed}
max_mib=${BENCH_MAX_MIB:-12000}
mkdir -p "$out" "$results"
avail=$(df --output=avail -B1M "$out" | tail -n1)
((avail > 15 * 1024)) || die "only $avail MiB free under $out: the bench needs 15 GiB of headroom"
t0=$SECONDS

# --- what the guest does ----------------------------------------------------------------------
disks=() count_serials=''
if [[ $mode == full ]]; then
	for i in $(seq -w 1 16); do disks+=("BC-$i:4G") count_serials+=" BC-$i"; done
	for s in 1G 16G 256G 1T 4T; do disks+=("BS-$s:$s"); done
	disks+=("BS-16T:$((16 * 1024 ** 4 - 4096))")
	cat >"$out/bench.env" <<-ENV
		PARTS="variants io count size"
		REPS=3
		VARIANTS="ephemcrypt luks plain mdadm eks"
		VARIANT_DISKS="BC-01 BC-02"
		IO_DISKS="BC-01 BC-02"
		IO_REPS=2
		IO_RUNTIME=2
		IO_RAMP=1
		IO_SIZE=$((1024 ** 3))
		BUF_SIZE=$((256 * 1024 ** 2))
		BUF_TIMED=0
		DIRTY_BYTES=0
		READ_SIZE=$((64 * 1024 ** 2))
		IO_CONFIGS="stripe ephemcrypt cs-kernel-4096 cs-read-4096 cs-write-4096 cs-bypass-4096 cs-kernel-512 cs-bypass-512"
		IO_FS_CONFIGS="stripe ephemcrypt cs-kernel-4096 cs-read-4096 cs-write-4096 cs-bypass-4096 cs-kernel-512 cs-bypass-512"
		IO_WORKLOADS="seqwrite:1:1 seqread:1:1 randwrite:1:1 randread:1:1 seqwrite:4:1 randwrite:4:1 seqwrite:1:0 seqwrite:4:0 seqread:1:0"
		IO_FS_DIRECT="seqwrite seqread"
		COUNT_DISKS="${count_serials# }"
		COUNTS="1 2 4 8 16"
		SCALE_VARIANTS="ephemcrypt luks"
		SCALE_REPS=2
		SIZE_DISKS="BS-1G BS-16G BS-256G BS-1T BS-4T BS-16T"
		SIZE_ONCE="BS-256G BS-1T BS-4T BS-16T"
		TIMEOUT_SETUP=600
	ENV
elif [[ $mode == speed ]]; then
	for i in $(seq -w 1 16); do disks+=("BC-$i:1G"); done
	for i in 1 2; do disks+=("BT-$i:1T"); done
	for i in $(seq 1 8); do disks+=("BX-$i:$((15 * 1024 ** 4 / 2))"); done
	bc() { seq -s, -f 'BC-%02g' 1 "$1"; }
	bx=$(seq -s, -f 'BX-%g' 1 8)
	cat >"$out/bench.env" <<-ENV
		PARTS="groups"
		REPS=1
		VARIANTS="ephemcrypt"
		VARIANT_DISKS="BC-01 BC-02"
		GROUP_REPS=${BENCH_REPS:-3}
		GROUP_VARIANTS="ephemcrypt${BENCH_BEFORE:+ before} plain mdadm"
		GROUP_SETS="2x1G:$(bc 2) 8x1G:$(bc 8) 16x1G:$(bc 16) 2x1T:BT-1,BT-2 8x7.5T:$bx"
		TIMEOUT_SETUP=900
	ENV
else
	disks=("BC-01:1G" "BC-02:1G")
	cat >"$out/bench.env" <<-ENV
		PARTS="variants io count"
		REPS=1
		VARIANTS="ephemcrypt luks mdadm"
		VARIANT_DISKS="BC-01 BC-02"
		IO_DISKS="BC-01 BC-02"
		IO_REPS=1
		IO_RUNTIME=2
		IO_RAMP=0
		IO_SIZE=$((128 * 1024 ** 2))
		BUF_SIZE=$((64 * 1024 ** 2))
		BUF_TIMED=0
		DIRTY_BYTES=0
		READ_SIZE=$((32 * 1024 ** 2))
		IO_CONFIGS="stripe ephemcrypt cs-bypass-4096"
		IO_FS_CONFIGS="ephemcrypt"
		IO_WORKLOADS="seqwrite:1:1 randread:1:1 seqwrite:1:0 seqread:1:0"
		IO_FS_DIRECT="seqwrite"
		COUNT_DISKS="BC-01 BC-02"
		COUNTS="1 2"
		SCALE_VARIANTS="ephemcrypt"
		SCALE_REPS=1
		SIZE_DISKS=""
		SIZE_ONCE=""
		TIMEOUT_SETUP=300
	ENV
fi

# BENCH_OVERRIDES: more lines for bench.env (e.g. PARTS="io"), for working on the bench itself
[[ -z ${BENCH_OVERRIDES:-} ]] || printf '%s\n' "$BENCH_OVERRIDES" >>"$out/bench.env"

# --- the VM -----------------------------------------------------------------------------------
log "building the root (Debian 12 with mdadm, cryptsetup, fio, xfsprogs and the kernel's modules)"
before=()
[[ -z ${BENCH_BEFORE:-} ]] || before=("$BENCH_BEFORE:/usr/sbin/ephemcrypt-before")
DEBIAN_KERNEL=yes DEBIAN_EXTRA=mdadm,cryptsetup-bin,fio,xfsprogs "$VM_DIR/rootfs-debian.sh" "$out/root.img" \
	"$here/guest/bench.sh" "$bin:/usr/sbin/ephemcrypt" "$out/bench.env:/etc/bench.env" "${before[@]}"
# The root's own initramfs (initramfs-tools, made when the kernel was installed in it): nothing of
# ephemcrypt's runs at boot; the guest runs every variant itself.
debugfs -R "dump /boot/initrd.img-$KVER $out/initrd.img" "$out/root.img" >/dev/null 2>&1
[[ -s $out/initrd.img ]] || die "no /boot/initrd.img-$KVER in the root"

rm -rf "$out/disks" && mkdir -p "$out/disks" # fresh sparse files every run
args=()
for d in "${disks[@]}"; do args+=(--disk "$out/disks/${d%%:*}.raw:${d%%:*}:${d#*:}"); done
timeout=5400
[[ $mode != smoke ]] || timeout=900
# The guard: real data in the disk files (du counts allocated blocks, not sizes).
guard() {
	local run=$1 used q
	while kill -0 "$run" 2>/dev/null; do
		used=$(du -s -B1M "$out/disks" | cut -f1)
		if ((used > max_mib)); then
			log "error: the disk files hold $used MiB of data (limit $max_mib): stopping the VM"
			for q in $(pgrep -P "$run" -f qemu-system || true); do kill "$q"; done
			echo "$used" >"$out/guard-tripped"
			return
		fi
		echo "$used" >"$out/disk-mib"
		sleep 5
	done
}
rm -f "$out/guard-tripped" "$out/disk-mib"
log "booting the VM with ${#disks[@]} disks ($mode run; the full run takes about 45 minutes)"
vm_start=$SECONDS load_start=$(cut -d" " -f1-3 /proc/loadavg)
"$VM_DIR/run.sh" --initrd "$out/initrd.img" --log "$out/console.log" --timeout $timeout --first 400 --silence 900 --mem 2048 \
	--virtio "$out/root.img" --append "root=/dev/vda ro systemd.mask=serial-getty@ttyS0.service" "${args[@]}" &
run=$!
guard $run &
guard_pid=$!
rc=0
wait $run || rc=$?
kill $guard_pid 2>/dev/null || true
wait $guard_pid 2>/dev/null || true
vm_secs=$((SECONDS - vm_start)) load_end=$(cut -d" " -f1-3 /proc/loadavg)
peak=$(du -s -B1M "$out/disks" | cut -f1)
rm -rf "$out/disks" "$out/root.img"
[[ ! -e $out/guard-tripped ]] || die "stopped: the disk files grew past $max_mib MiB"
((rc == 0)) || die "the bench VM failed (console log $out/console.log)"

if [[ $mode == speed ]]; then
	mkdir -p "$results"
	python3 "$here/speed.py" --console "$out/console.log" --json "$results/speed.json" --md "$results/speed.md" \
		--conditions "$(date -u +%Y-%m-%dT%H:%M:%SZ); $(nproc) host cores, load at the VM's start $load_start, at its end $load_end; qemu TCG -cpu max, 2 vCPUs, 2 GiB; $KERNEL_PKG; VM $vm_secs s; binary $bin"
	log "done in $((SECONDS - t0)) s: $results/speed.md"
	exit 0
fi

# --- image sizes --------------------------------------------------------------------------------
img_start=$SECONDS
"$here/initrd-size.sh" "$out/images.json" "--$mode"
img_secs=$((SECONDS - img_start))

# --- results ----------------------------------------------------------------------------------
cat >"$out/host.json" <<-JSON
	{"mode": "$mode", "date": "$(date -u +%Y-%m-%dT%H:%M:%SZ)",
	 "host_cpu": "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//; s/["\\]//g')",
	 "host_cores": $(nproc), "host_kernel": "$(uname -r)",
	 "host_loadavg": "at the VM's start $load_start, at its end $load_end (1, 5, 15 min)",
	 "qemu": "$(qemu-system-x86_64 --version | head -n1 | sed 's/["\\]//g')", "accel": "tcg", "cpu": "max",
	 "guest_mem_mib": 2048, "vcpus": 2, "guest_kernel_pkg": "$KERNEL_PKG",
	 "disks": "$(printf '%s ' "${disks[@]}" | sed 's/ $//')",
	 "disk_data_peak_mib": $peak, "vm_secs": $vm_secs, "images_secs": $img_secs}
JSON
check=()
[[ $mode == full ]] || check=(--check)
python3 "$here/report.py" --console "$out/console.log" --host "$out/host.json" --images "$out/images.json" \
	--env "$out/bench.env" --json "$results/results.json" --md "$results/results.md" "${check[@]}"
python3 "$here/chart.py" "$results/results.json" "$results"
log "done in $((SECONDS - t0)) s (VM $vm_secs s, images $img_secs s): $results/results.md"
