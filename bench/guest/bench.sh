#!/bin/bash
# /usr/local/sbin/vmtest of bench/run.sh: run by vmtest.service in the Debian root (tests/vm/
# rootfs-debian.sh with mdadm, cryptsetup-bin, fio and xfsprogs) after multi-user.target. Reads
# /etc/bench.env (written by bench/run.sh: which parts, repetitions, disks by serial) and prints one
# line per measurement, "BENCH {json}", on the console; bench/report.py turns them into results.
# Every variant starts from freshly blanked disks (blank below) and is torn down after it.
# Parts (PARTS):
#   variants  setup time, start to mounted file system, and bytes written, for ephemcrypt and what
#             users would run instead (mdadm + cryptsetup LUKS, mdadm + cryptsetup plain, mdadm
#             alone, mdadm + mkfs.xfs as EKS does), on VARIANT_DISKS
#   io        fio on the raw mapping and on ext4 over it: the unencrypted dm stripe, ephemcrypt's
#             mapping and cryptsetup plain mappings over that same stripe with each workqueue flag
#             setting and sector size (IO_CONFIGS), on IO_DISKS
#   count     setup time of ephemcrypt and the LUKS recipe over 1..N disks (COUNTS of COUNT_DISKS)
#   size      the same on one disk of each size (SIZE_DISKS)
#   groups    setup time of GROUP_VARIANTS on each group of GROUP_SETS (NAME:SERIAL,SERIAL,...; e.g.
#             2 x 1 GiB, 8 x 4 GiB, 2 x 1 TiB, 8 x 7.5 TiB), GROUP_REPS times (make bench-speed)
# shellcheck disable=SC2086 # the lists of bench.env (serials, names) are split on purpose
# shellcheck source=tests/vm/guest/lib.sh
. /lib/vmtest.sh
set -u
# shellcheck source=/dev/null # written by bench/run.sh
. /etc/bench.env

B=/run/bench NR=/run/bench/newroot MNT=/run/bench/mnt
mkdir -p $B $MNT
out() { echo "BENCH $*"; }
note() { echo "BENCH-LOG $*"; }
us() { echo "${EPOCHREALTIME/./}"; }
# secs FROM_US TO_US -> seconds with 3 decimals
secs() { local d=$(($2 - $1)); printf '%d.%03d' $((d / 1000000)) $((d % 1000000 / 1000)); }
# shellcheck disable=SC1003 # a set of two characters, " and \\, not an escaped quote
clean() { tr -d '"\\' <<<"$*" | tr '\n' ' ' | sed 's/ *$//'; }

command -v python3 >/dev/null || { fail bench "no python3 in the root (fio's dependency)"; vm_done; exit; }

# dev SERIAL: the NVMe disk with that serial
declare -A DEV
for s in /sys/block/nvme*n1; do DEV[$(tr -d ' \n' <"$s/device/serial")]=/dev/${s##*/}; done
devs() { local s; for s; do echo "${DEV[$s]:?no disk with serial $s}"; done; }

# written DEV...: bytes written so far to these disks (sectors written, /sys/block/*/stat field 7)
written() {
	local d n=0
	for d; do n=$((n + $(awk '{ print $7 }' "/sys/block/${d#/dev/}/stat") * 512)); done
	echo $n
}

# blank DEV...: as fresh instance store looks to every tool here: no signature (wipefs), and zeros
# wherever ephemcrypt's probe reads (src/signature.rs regions(): the first and last MiB, the
# LUKS2 secondary-header slots up to 4 MiB, 64 blocks of 4 KiB spread over the disk). Written in
# one process; discards would not do, qemu's raw files ignore them here.
blank() {
	local d
	for d; do wipefs -a -q "$d" 2>/dev/null || true; done
	python3 - "$@" <<-'PY'
		import os, sys
		MIB, BLOCK, SPREAD = 1 << 20, 4096, 64
		for dev in sys.argv[1:]:
		    fd = os.open(dev, os.O_WRONLY)
		    size = os.lseek(fd, 0, os.SEEK_END)
		    regions = [(0, min(size, 5 * MIB)), (max(0, size - MIB), min(size, MIB))]
		    if size > 2 * MIB:
		        span = size - 2 * MIB
		        for k in range(1, SPREAD + 1):
		            off = (MIB + span * k // (SPREAD + 1)) & ~(BLOCK - 1)
		            regions.append((off, BLOCK))
		    for off, n in regions:
		        os.pwrite(fd, bytes(n), off)
		    os.fsync(fd)
		    os.close(fd)
	PY
	udevadm settle
}

# settle_remove NAME: remove a device-mapper mapping, retrying while udev still has it open
settle_remove() {
	udevadm settle
	dmsetup remove --retry "$1" 2>/dev/null || { sleep 1; dmsetup remove --retry "$1"; }
}

# --- the variants: VAR_setup DISK... (timed, ends with the file system mounted) and VAR_down -----
# ephemcrypt: `setup --newroot` on a tmpfs new root with the default bind targets; disks by serial.
# EPH_EXTRA: more configuration lines (fs = none, bind = for the raw I/O runs).
EPH_EXTRA=''
eph_conf() { # eph_conf DISK...: the configuration selecting these disks by serial
	local d sel=''
	for d; do sel+=${sel:+,}serial:$(tr -d ' \n' <"/sys/block/${d#/dev/}/device/serial"); done
	printf 'devices = %s\nexpect = %d\nmin-size = 512M\nwait = 10\n%s\n' "$sel" $# "$EPH_EXTRA" >$B/ephemcrypt.conf
}
ephemcrypt_pre() { # untimed: the new root, as the initramfs has it
	mkdir -p $NR && mount -t tmpfs -o mode=755 bench-newroot $NR && mkdir -p $NR/var/log $NR/tmp $NR/var/tmp
	eph_conf "$@"
	rm -rf /run/ephemcrypt
}
ephemcrypt_setup() {
	ephemcrypt setup ${EPH_VERBOSE:+-v} --newroot $NR --config $B/ephemcrypt.conf 2>$B/ephemcrypt.log &&
		grep -q '"result": *"ok"' /run/ephemcrypt/status.json
}
ephemcrypt_down() {
	local m
	for m in $(findmnt -rn -o TARGET -R $NR | sort -r); do
		[[ $m == "$NR" ]] || umount "$m"
	done
	umount $NR
	for m in ephemcrypt-data ephemcrypt-swap ephemcrypt ephemcrypt-stripe; do
		if dmsetup info "$m" >/dev/null 2>&1; then settle_remove "$m"; fi
	done
}
# before: the same with BENCH_BEFORE's binary (/usr/sbin/ephemcrypt-before), an earlier build to
# compare with in the same VM (bench/run.sh --speed)
before_pre() { ephemcrypt_pre "$@"; }
before_setup() {
	ephemcrypt-before setup ${EPH_VERBOSE:+-v} --newroot $NR --config $B/ephemcrypt.conf 2>$B/ephemcrypt.log &&
		grep -q '"result": *"ok"' /run/ephemcrypt/status.json
}
before_down() { ephemcrypt_down "$@"; }
# ephemcrypt's step timings and crypt table (key redacted) from its status, for the record
ephemcrypt_detail() {
	python3 - <<-'PY'
		import json
		s = json.load(open("/run/ephemcrypt/status.json"))
		steps = [[t["step"][:60], t["ms"]] for t in s.get("steps", [])]
		print(json.dumps({"steps": steps, "flags": s.get("flags"), "sector_size": s.get("sector_size")}))
	PY
}

# mdadm RAID0 as the recipes make it (one disk needs --force); MD_OPTS: --chunk, --name
MD=/dev/md/bench
md_create() {
	local force=()
	(($# > 1)) || force=(--force)
	mdadm --create $MD --run --quiet --level=0 --raid-devices=$# "${force[@]}" ${MD_OPTS:-} "$@" </dev/null 2>$B/mdadm.log
}
md_down() { udevadm settle; mdadm --stop $MD >/dev/null 2>&1 || { sleep 1; mdadm --stop $MD >/dev/null; }; }

# step NAME CMD...: run CMD, adding its time in ms to the variant's step list ($B/steps)
step() {
	local s rc=0
	s=$(us)
	"${@:2}" || rc=$?
	echo "$1 $((($(us) - s) / 1000))" >>$B/steps
	return $rc
}

# luks: the widely copied recipe for instance store: RAID0, LUKS with twofish-xts-plain64 and a
# 512-bit key, luksOpen, mkfs.ext4 -T largefile4 (today's cryptsetup: LUKS2, argon2id).
luks_pre() { head -c 64 /dev/urandom >$B/key; }
luks_setup() {
	step mdadm md_create "$@" &&
		step luksFormat cryptsetup luksFormat -q --cipher twofish-xts-plain64 --key-size 512 --key-file $B/key $MD &&
		step luksOpen cryptsetup luksOpen --key-file $B/key $MD bench &&
		step mkfs mkfs.ext4 -q -F -T largefile4 /dev/mapper/bench && step mount mount /dev/mapper/bench $MNT
}
luks_down() { umount $MNT; udevadm settle; cryptsetup close bench; md_down; }

# plain: mdadm (ephemcrypt's chunk) + cryptsetup plain with ephemcrypt's cipher, key size, sector
# size and flags (CS_OPTS, from ephemcrypt's plan), ext4 with ephemcrypt's mkfs arguments
# (MKFS_EXT4, from its plan too, below: the variants differ in everything but the file system).
MKFS_EXT4=(mkfs.ext4 -q -F -L bench -E 'nodiscard,lazy_itable_init=1,lazy_journal_init=1')
plain_setup() {
	MD_OPTS=--chunk=256 step mdadm md_create "$@" &&
		step open cryptsetup open --type plain --cipher aes-xts-plain64 --key-size 512 --key-file /dev/urandom \
			"${CS_OPTS[@]}" $MD bench &&
		step mkfs "${MKFS_EXT4[@]}" /dev/mapper/bench && step mount mount -o nosuid,nodev /dev/mapper/bench $MNT
}
plain_down() { luks_down; }

# mdadm: the unencrypted floor, the same stripe and mkfs
mdadm_setup() {
	MD_OPTS=--chunk=256 step mdadm md_create "$@" && step mkfs "${MKFS_EXT4[@]}" $MD && step mount mount -o nosuid,nodev $MD $MNT
}
mdadm_down() { umount $MNT; md_down; }

# eks: Amazon's EKS AMI (setup-local-disks raid0, which Karpenter's instanceStorePolicy: RAID0
# runs): mdadm RAID0 named kubernetes, mkfs.xfs -l su=8b, here with -K (no discard pass).
eks_setup() {
	MD_OPTS=--name=kubernetes step mdadm md_create "$@" && step mkfs mkfs.xfs -q -f -K -l su=8b $MD &&
		step mount mount -o defaults,noatime $MD $MNT
}
eks_down() { mdadm_down; }

# run SET VARIANT REP DISK...: blank the disks, time VARIANT's setup, record time and bytes
# written, tear down. ext4's background inode-table zeroing is stopped before the teardown
# (remount noinit_itable): it is not part of setup, and on a 16 TiB volume it would write for hours.
TIMEOUT_SETUP=${TIMEOUT_SETUP:-900}
run() {
	local set=$1 v=$2 rep=$3 t0 t1 w0 w1 ok=true detail='' size mnt=$MNT
	shift 3
	blank "$@"
	size=$(blockdev --getsize64 "$1")
	! declare -F "${v}_pre" >/dev/null || "${v}_pre" "$@"
	rm -f $B/steps
	w0=$(written "$@")
	# In a shell of its own, for the bound; the times are taken inside it.
	rm -f $B/time
	t0=$(us)
	if ! timeout "$TIMEOUT_SETUP" bash -c "$(declare -f); $(declare -p B NR MNT MD MKFS_EXT4 CS_OPTS EPH_VERBOSE 2>/dev/null)
		s=\$(us); ${v}_setup $*; rc=\$?; echo \$s \$(us) >$B/time; exit \$rc"; then
		ok=false
	fi
	t1=$(us)
	[[ ! -s $B/time ]] || read -r t0 t1 <$B/time
	[[ $v != ephemcrypt && $v != before ]] || mnt=$NR/mnt/ephemcrypt
	if mountpoint -q "$mnt" && [[ $(findmnt -n -o FSTYPE "$mnt") == ext4 ]]; then mount -o remount,noinit_itable "$mnt"; fi
	sync
	w1=$(written "$@")
	# EPH_VERBOSE=1: ephemcrypt's timed debug lines (sysfs, each probe) for the record
	[[ -z ${EPH_VERBOSE:-} || ! -f $B/ephemcrypt.log ]] || grep -E ' in [0-9]+ ms' $B/ephemcrypt.log | sed "s/^/BENCH-LOG $set $v $rep: /" || true
	if [[ ($v == ephemcrypt || $v == before) && -f /run/ephemcrypt/status.json ]]; then
		detail=,\"detail\":$(ephemcrypt_detail)
	elif [[ -s $B/steps ]]; then
		detail=',"detail":{"steps":['$(awk '{ printf "%s[\"%s\", %d]", (NR > 1 ? ", " : ""), $1, $2 }' $B/steps)']}'
	fi
	if [[ $ok == false ]]; then
		note "$set $v rep $rep on $# disk(s) failed after $(secs "$t0" "$t1") s:"
		cat $B/*.log 2>/dev/null | tail -n 20 | sed 's/^/BENCH-LOG   /'
		[[ $((t1 - t0)) -lt $((TIMEOUT_SETUP * 1000000)) ]] || note "cut: the $TIMEOUT_SETUP s bound"
	fi
	out "{\"t\":\"setup\",\"set\":\"$set\",\"variant\":\"$v\",\"rep\":$rep,\"disks\":$#,\"disk_bytes\":$size,\"secs\":$(secs "$t0" "$t1"),\"written\":$((w1 - w0)),\"ok\":$ok$detail}"
	"${v}_down" "$@" >/dev/null 2>&1 || { note "teardown of $v: retrying"; sleep 2; "${v}_down" "$@" >/dev/null 2>&1; }
	# anything left (a failed setup): take it all down
	umount -R $NR 2>/dev/null
	umount $MNT 2>/dev/null
	cryptsetup close bench 2>/dev/null
	mdadm --stop $MD >/dev/null 2>&1
	for m in ephemcrypt-data ephemcrypt-swap ephemcrypt ephemcrypt-stripe; do dmsetup remove "$m" 2>/dev/null; done
	rm -f $B/*.log
	udevadm settle
	return 0
}

# --- I/O ------------------------------------------------------------------------------------
# The stripe ephemcrypt makes (256 KiB chunks, data from the second MiB of each disk), made with
# dmsetup so that every encrypted configuration sits on the very same table.
stripe_up() { # stripe_up DISK...
	local d per len n=$# tab=''
	per=$(($(blockdev --getsz "$1") - 2048))
	per=$((per / 512 * 512))
	len=$((per * n))
	for d; do tab+=" $d 2048"; done
	if ((n == 1)); then
		echo "0 $per linear $1 2048" | dmsetup create bench-stripe
	else
		echo "0 $len striped $n 512$tab" | dmsetup create bench-stripe
	fi
	udevadm settle
}
# io_up CONFIG DISK...: the device for CONFIG, in $IODEV
io_up() {
	local c=$1 flags=()
	shift
	case $c in
	stripe) stripe_up "$@" && IODEV=/dev/mapper/bench-stripe ;;
	ephemcrypt)
		blank "$@"
		EPH_EXTRA=$'fs = none\nbind =' ephemcrypt_pre "$@"
		if ! ephemcrypt_setup; then
			sed 's/^/BENCH-LOG   /' $B/ephemcrypt.log
			ephemcrypt plan --config $B/ephemcrypt.conf 2>&1 | sed 's/^/BENCH-LOG   plan: /'
			dmsetup ls | sed 's/^/BENCH-LOG   dmsetup: /'
			return 1
		fi
		IODEV=/dev/mapper/ephemcrypt ;;
	cs-*) # cs-{kernel,read,write,bypass}-{512,4096}: cryptsetup plain over the stripe
		case $c in
		cs-read-*) flags=(--perf-no_read_workqueue) ;;
		cs-write-*) flags=(--perf-no_write_workqueue) ;;
		cs-bypass-*) flags=(--perf-no_read_workqueue --perf-no_write_workqueue) ;;
		esac
		stripe_up "$@" &&
			cryptsetup open --type plain --cipher aes-xts-plain64 --key-size 512 --key-file /dev/urandom \
				--sector-size "${c##*-}" "${flags[@]}" /dev/mapper/bench-stripe bench &&
			IODEV=/dev/mapper/bench ;;
	*) note "unknown I/O configuration $c" && return 1 ;;
	esac
	udevadm settle
}
io_down() {
	udevadm settle
	umount $MNT 2>/dev/null
	umount -R $NR 2>/dev/null
	for m in bench ephemcrypt ephemcrypt-stripe bench-stripe; do
		if dmsetup info "$m" >/dev/null 2>&1; then settle_remove "$m"; fi
	done
}
# table NAME: a mapping's table with the key left out
table() { dmsetup table "$1" | sed -E 's/(crypt [^ ]+ )[^ ]+/\1KEY/'; }

# fio_run CONFIG TARGET WORKLOAD NUMJOBS DIRECT REP FIO-ARGS...: one fio job group, one line.
# Direct I/O: time-based, IO_RUNTIME seconds after IO_RAMP seconds of warm-up, each job looping over
# its share of the region. Buffered writes: with BUF_TIMED=0 (bench/run.sh) each job writes its
# share of BUF_SIZE once, then fsync (end_fsync); otherwise IO_RUNTIME + 1 seconds, then fsync. The
# rate is the bytes over the wall-clock time of the whole fio run, fsync and fio's start included:
# what reached the disks through writeback, not what the page cache took. (Timed runs of a few
# seconds with a small dirty limit measured mostly the dirty-page throttle ramping up on each new
# device: their spread reached 10x.) Buffered reads: the whole file once from a cold page cache.
fio_run() {
	local c=$1 tgt=$2 wl=$3 nj=$4 direct=$5 rep=$6 res t0 t1 timing
	shift 6
	[[ $direct == 1 ]] || { sync && echo 3 >/proc/sys/vm/drop_caches; }
	if [[ $direct == 0 && $wl == *write && ${BUF_TIMED:-1} == 0 ]]; then
		timing=(--end_fsync=1) # each job writes its file once
	elif [[ $direct == 0 && $wl == *write ]]; then
		timing=(--time_based --runtime=$((IO_RUNTIME + 1)) --end_fsync=1)
	elif [[ $direct == 0 ]]; then
		timing=() # a buffered read: the whole file once, from a cold page cache
	else
		timing=(--time_based --runtime="$IO_RUNTIME" --ramp_time="$IO_RAMP")
	fi
	t0=$(us)
	if ! fio --output-format=json --group_reporting --numjobs="$nj" "${timing[@]}" "$@" >$B/fio.json 2>$B/fio.err; then
		note "fio $c $tgt $wl x$nj direct=$direct failed: $(tail -n 3 $B/fio.err | tr '\n' ' ')"
		return 0
	fi
	t1=$(us)
	res=$(WALL_US=$((t1 - t0)) WALL=$([[ $direct == 0 && $wl == *write ]] && echo 1) python3 -c '
import json, os, sys
j = json.load(open(sys.argv[1]))["jobs"][0]
d = j["read"] if j["read"]["io_bytes"] else j["write"]
r = {"bw": d["bw_bytes"], "iops": round(d["iops"], 1), "lat_us": round(d["clat_ns"]["mean"] / 1000, 1),
     "io_bytes": d["io_bytes"], "wall_s": round(int(os.environ["WALL_US"]) / 1e6, 3)}
if os.environ.get("WALL"):
    r["fio_bw"] = r["bw"]
    r["bw"] = round(d["io_bytes"] / (int(os.environ["WALL_US"]) / 1e6))
print(json.dumps(r)[1:-1])
' $B/fio.json) || { note "fio $c $tgt $wl: unreadable output"; return 0; }
	out "{\"t\":\"io\",\"config\":\"$c\",\"target\":\"$tgt\",\"wl\":\"$wl\",\"nj\":$nj,\"direct\":$direct,\"rep\":$rep,$res}"
}
# workloads TARGET CONFIG REP: the fio jobs of IO_WORKLOADS (WORKLOAD:JOBS:DIRECT) on $IODEV (raw)
# or on ext4 at $MNT (fs). On the raw device each job group covers IO_SIZE bytes, split between its
# jobs, over blocks written before (io_part). On ext4 writes cover IO_SIZE (direct) or BUF_SIZE
# (buffered); reads read a file of READ_SIZE written with direct I/O beforehand (real data: a file
# fio only preallocated would read as zeros without touching the disk, and fio's own layout goes
# through the page cache). Direct I/O: libaio at QD 32; buffered: psync, one request at a time per
# job, as an application writes.
workloads() {
	local tgt=$1 c=$2 rep=$3 w wl nj direct rw bs engine per size where
	for w in $IO_WORKLOADS; do
		IFS=: read -r wl nj direct <<<"$w"
		# Buffered I/O only through ext4: the page cache of a raw block device writes back in
		# 4 KiB buffer heads, one bio each, which under TCG measures per-bio overhead, not dm-crypt.
		# The fs: every buffered job, and the direct single jobs of IO_FS_DIRECT.
		if [[ $tgt == raw ]]; then
			[[ $direct == 1 ]] || continue
		elif [[ $direct == 1 ]]; then
			[[ $nj == 1 && " ${IO_FS_DIRECT:-seqwrite seqread randwrite randread} " == *" $wl "* ]] || continue
		fi
		case $wl in
		seqwrite) rw=write bs=1M ;;
		seqread) rw=read bs=1M ;;
		randwrite) rw=randwrite bs=4k ;;
		randread) rw=randread bs=4k ;;
		esac
		engine=(--ioengine=libaio --iodepth=32)
		[[ $direct == 1 ]] || engine=(--ioengine=psync)
		size=$IO_SIZE
		if [[ $tgt == raw ]]; then
			per=$((size / nj))
			where=(--filename="$IODEV" --offset_increment="$per")
		elif [[ $wl == *read ]]; then
			per=${READ_SIZE:-$((64 << 20))}
			((nj == 1)) || { note "reads on ext4: one job only"; continue; }
			[[ -s $MNT/read.0 ]] ||
				dd if=/dev/zero of="$MNT/read.0" bs=1M count=$((per >> 20)) oflag=direct status=none
			where=(--directory="$MNT" --filename=read.0)
		else
			[[ $direct == 1 ]] || size=$BUF_SIZE
			per=$((size / nj))
			where=(--directory="$MNT" --filename_format="$wl.$nj.$direct.\$jobnum")
		fi
		fio_run "$c" "$tgt" "$wl" "$nj" "$direct" "$rep" --name="$wl" --rw=$rw --bs=$bs --size=$per \
			--direct="$direct" "${engine[@]}" "${where[@]}"
	done
}
io_part() {
	local rep c disks dirty v
	# DIRTY_BYTES: a dirty-page limit for the buffered writes (restored afterwards); 0 (bench/run.sh):
	# the kernel's own limits, a share of memory.
	dirty=$(cat /proc/sys/vm/dirty_{bytes,background_bytes,ratio,background_ratio})
	if ((${DIRTY_BYTES:-$((16 << 20))})); then
		echo "${DIRTY_BYTES:-$((16 << 20))}" >/proc/sys/vm/dirty_bytes
		echo $((${DIRTY_BYTES:-$((16 << 20))} / 4)) >/proc/sys/vm/dirty_background_bytes
	fi
	mapfile -t disks < <(devs $IO_DISKS)
	# Every block the jobs touch is written once beforehand (host-side, qemu reads real data).
	for d in "${disks[@]}"; do
		dd if=/dev/zero of="$d" bs=1M count=$((IO_SIZE / 1048576 / ${#disks[@]} + 2)) seek=1 oflag=direct status=none
	done
	for rep in $(seq 1 "$IO_REPS"); do
		for c in $IO_CONFIGS; do
			io_down
			if ! io_up "$c" "${disks[@]}"; then note "$c: no device"; io_down; continue; fi
			((rep > 1)) || out "{\"t\":\"table\",\"config\":\"$c\",\"table\":\"$(table "${IODEV#/dev/mapper/}" | head -n1)\"}"
			workloads raw "$c" "$rep"
			if [[ " $IO_FS_CONFIGS " == *" $c "* ]]; then
				if [[ $c == ephemcrypt ]]; then
					io_down && blank "${disks[@]}" && EPH_EXTRA='bind =' ephemcrypt_pre "${disks[@]}" && ephemcrypt_setup &&
						mount --bind $NR/mnt/ephemcrypt $MNT
				else
					"${MKFS_EXT4[@]}" "$IODEV" && mount -o nosuid,nodev "$IODEV" $MNT
				fi
				mount -o remount,noinit_itable $MNT
				workloads fs "$c" "$rep"
			fi
			io_down
		done
	done
	# writing one of a pair (bytes, ratio) zeroes the other: the ones in use, back
	mapfile -t v <<<"$dirty"
	if ((v[0])); then echo "${v[0]}" >/proc/sys/vm/dirty_bytes; else echo "${v[2]}" >/proc/sys/vm/dirty_ratio; fi
	if ((v[1])); then echo "${v[1]}" >/proc/sys/vm/dirty_background_bytes; else echo "${v[3]}" >/proc/sys/vm/dirty_background_ratio; fi
}

# --- main -----------------------------------------------------------------------------------
rm -f /etc/udev/rules.d/64-md-raid-assembly.rules
# mdadm's incremental assembly would put a stopped array together again from its members
ln -s /dev/null /etc/udev/rules.d/64-md-raid-assembly.rules
udevadm control --reload
modprobe -a dm_mod dm_crypt raid0 md_mod xts aesni_intel twofish_x86_64_3way twofish_avx_x86_64 ext4 xfs 2>/dev/null
out "{\"t\":\"info\",\"kernel\":\"$(uname -r)\",\"guest_cpu\":\"$(clean "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)")\",\"vcpus\":$(nproc),\"mem_kib\":$(awk '/MemTotal/ { print $2 }' /proc/meminfo),\"fio\":\"$(fio --version)\",\"mdadm\":\"$(clean "$(mdadm --version 2>&1 | cut -d' ' -f3)")\",\"cryptsetup\":\"$(cryptsetup --version | cut -d' ' -f2)\",\"e2fsprogs\":\"$(clean "$(mke2fs -V 2>&1 | head -n1 | cut -d' ' -f2)")\",\"xfsprogs\":\"$(mkfs.xfs -V | awk '{ print $3 }')\",\"ephemcrypt\":\"$(clean "$(ephemcrypt --version 2>&1 | head -n1)")\",\"aes_driver\":\"$(awk '/^name *: xts\(aes\)/ { n = 1 } n && /^driver/ { print $3; exit }' /proc/crypto)\"}"

# A sign of life for run.sh (its --first bound), before the first part's long silence
pass bench-started

# cryptsetup's equivalent of ephemcrypt's crypt table: its flags and sector size, from its plan
mapfile -t vdisks < <(devs $VARIANT_DISKS)
eph_conf "${vdisks[@]}"
plan=$(ephemcrypt plan --config $B/ephemcrypt.conf 2>/dev/null | grep -m1 ' crypt ')
CS_OPTS=()
[[ $plan != *no_read_workqueue* ]] || CS_OPTS+=(--perf-no_read_workqueue)
[[ $plan != *no_write_workqueue* ]] || CS_OPTS+=(--perf-no_write_workqueue)
if [[ $plan =~ sector_size:([0-9]+) ]]; then CS_OPTS+=(--sector-size "${BASH_REMATCH[1]}"); else CS_OPTS+=(--sector-size 512); fi
out "{\"t\":\"plan\",\"crypt\":\"$(clean "$(sed -E 's/^ *//' <<<"$plan")")\",\"cryptsetup_options\":\"${CS_OPTS[*]}\"}"
# ephemcrypt's mkfs arguments, from its plan, for every ext4 variant (the device dropped)
mkfs_line=$(ephemcrypt plan --config $B/ephemcrypt.conf 2>/dev/null | grep -m1 -oE 'mkfs\.ext4 .*')
if [[ -n $mkfs_line ]]; then read -ra MKFS_EXT4 <<<"${mkfs_line% *}"; fi
out "{\"t\":\"mkfs\",\"argv\":\"$(clean "${MKFS_EXT4[*]}")\"}"

start=$(us)
for part in $PARTS; do
	pstart=$(us)
	note "part $part"
	case $part in
	variants)
		for rep in $(seq 0 "$REPS"); do # rep 0 warms caches and is not counted
			for v in $VARIANTS; do run variants "$v" "$rep" "${vdisks[@]}"; done
		done ;;
	count)
		mapfile -t cdisks < <(devs $COUNT_DISKS)
		for rep in $(seq 1 "$SCALE_REPS"); do
			for n in $COUNTS; do
				for v in $SCALE_VARIANTS; do run count "$v" "$rep" "${cdisks[@]:0:n}"; done
			done
		done ;;
	size)
		for rep in $(seq 1 "$SCALE_REPS"); do
			for s in $SIZE_DISKS; do
				# the largest sizes once: their runs take minutes
				[[ $rep == 1 || " $SIZE_ONCE " != *" $s "* ]] || continue
				for v in $SCALE_VARIANTS; do run size "$v" "$rep" "$(devs "$s")"; done
			done
		done ;;
	groups)
		for rep in $(seq 0 "${GROUP_REPS:-3}"); do # rep 0 warms caches and is not counted
			for g in $GROUP_SETS; do
				IFS=, read -ra serials <<<"${g#*:}"
				mapfile -t gdisks < <(devs "${serials[@]}")
				if ((${#gdisks[@]} != ${#serials[@]})); then note "group ${g%%:*}: no disk for some of ${g#*:}"; continue; fi
				for v in $GROUP_VARIANTS; do run "group-${g%%:*}" "$v" "$rep" "${gdisks[@]}"; done
			done
		done ;;
	io) io_part ;;
	esac
	out "{\"t\":\"part\",\"part\":\"$part\",\"secs\":$(secs "$pstart" "$(us)")}"
done
out "{\"t\":\"end\",\"secs\":$(secs "$start" "$(us)")}"
vm_done
