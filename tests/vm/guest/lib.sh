# shellcheck shell=sh
# Guest side of the VM tests, installed as /lib/vmtest.sh: . /lib/vmtest.sh
# Result protocol read by run.sh: "VMTEST PASS name", "VMTEST FAIL name: why", "VMTEST DONE".
export PATH=/usr/sbin:/usr/bin:/sbin:/bin

# vm_init: mount the API file systems and load the drivers of the devices present, as udev
# would (busybox modprobe resolves modaliases through modules.alias). Repeat while new
# devices appear: a PCI driver (virtio_pci) adds devices (virtio) that want more drivers.
vm_init() {
	mount -t proc proc /proc
	mount -t sysfs sysfs /sys
	mount -t devtmpfs devtmpfs /dev
	mount -t tmpfs -o mode=755 tmpfs /run
	_seen=
	while _now=$(sort -u /sys/bus/*/devices/*/modalias) && [ "$_now" != "$_seen" ]; do
		_seen=$_now
		echo "$_now" | xargs modprobe -qa 2>/dev/null || true
	done
}

# vm_wait_dev PATH...: wait up to 10 s for each block device node (NVMe probes asynchronously).
vm_wait_dev() {
	for _d; do
		_i=0
		while [ ! -b "$_d" ] && [ $_i -lt 100 ]; do sleep 0.1; _i=$((_i + 1)); done
		[ -b "$_d" ] || fail "wait-dev" "$_d did not appear"
	done
}

pass() { echo "VMTEST PASS $1"; }
fail() { echo "VMTEST FAIL $1: $2"; }

# check NAME CMD...: PASS when CMD succeeds, else FAIL with the last line of its output
# (all of its output is shown, indented, when it fails).
check() {
	_name=$1
	shift
	if _out=$("$@" 2>&1); then
		pass "$_name"
	else
		echo "$_out" | sed 's/^/    /'
		fail "$_name" "$* -> $(echo "$_out" | tail -n1)"
	fi
}

# vm_done: report the end of the test (with guest uptime) and power off: cleanly when systemd
# is PID 1 (a real root), at once otherwise (a test init).
vm_done() {
	echo "VMTEST DONE uptime=$(cut -d' ' -f1 /proc/uptime)"
	sync
	if [ "$(cat /proc/1/comm)" = systemd ]; then
		systemctl --no-block --job-mode=replace-irreversibly start poweroff.target # not via logind
	else
		poweroff -f
	fi
}

# no_link_conflict: no udev of this boot, in the initramfs or the real root, found another file
# where it wanted a /dev/mapper link ("Failed to create/update device symlink ..., ignoring: File
# exists"): in the journal where systemd runs, else in the kernel log (udev logs there only when
# told to: dracut's shell init starts it as a daemon with its output on /dev/null, so there
# mapper_links below is the check that counts). Lists the lines it found.
no_link_conflict() {
	if [ "$(cat /proc/1/comm)" = systemd ]; then _l=$(journalctl -b -q -o cat); else _l=$(dmesg); fi
	! printf '%s\n' "$_l" | grep 'Failed to create/update device symlink'
}

# mapper_links NAME...: each /dev/mapper/NAME is a link (udev's, or the same one ephemcrypt makes
# before udev or without it), not a node: a node there is what udev cannot replace ("Failed to
# create/update device symlink ... File exists").
mapper_links() {
	for _n; do
		[ -L "/dev/mapper/$_n" ] || { ls -l "/dev/mapper/$_n"; return 1; }
	done
}

# swap_on NAME: the first active swap is mapping NAME (/proc/swaps names the node the link
# /dev/mapper/NAME leads to, /dev/dm-N, where the mapping has a link there)
swap_on() {
	_s=$(awk 'NR == 2 { print $1 }' /proc/swaps)
	[ -n "$_s" ] && [ "$(readlink -f "$_s")" = "$(readlink -f "/dev/mapper/$1")" ]
}

# --- for a Debian real root (systemd, util-linux) ---
# report TITLE CMD...: a section of the report
report() {
	_title=$1
	shift
	printf 'REPORT\nREPORT == %s\n' "$_title"
	"$@" 2>&1 | sed 's/^/REPORT   /'
}
# dm_dev NAME: major:minor of a mapping
dm_dev() { dmsetup info -c --noheadings -o major,minor "$1" | tr -d ' '; }
# on_volume PATH: PATH lies on the encrypted volume's file system: its data slice, or the crypt
# mapping itself when the volume has no swap (and so no slices)
on_volume() {
	_fs=$(dm_dev ephemcrypt-data 2>/dev/null) || _fs=
	[ -n "$_fs" ] || _fs=$(dm_dev ephemcrypt)
	test "$(findmnt -n -r -o MAJ:MIN -T "$1")" = "$_fs"
}
mount_active() { systemctl is-active -q "$(systemd-escape -p --suffix=mount "$1")"; }
# one_swap_on NAME: the only active swap is mapping NAME
one_swap_on() {
	_s=$(swapon --noheadings --show=NAME)
	[ "$(echo "$_s" | wc -l)" = 1 ] &&
		[ "$(stat -L -c %t:%T "$_s")" = "$(dm_dev "$1" | awk -F: '{ printf "%x:%x", $1, $2 }')" ]
}
# first_of A B: which of two patterns the journal of this boot shows first
first_of() { journalctl -b -q -o cat | grep -m1 -o -e "$1" -e "$2"; }
# from_kmsg PATTERN: a line ephemcrypt wrote to /dev/kmsg matches
from_kmsg() { journalctl -b -q -o cat _TRANSPORT=kernel SYSLOG_IDENTIFIER=ephemcrypt | grep -q "$1"; }
# udev_ready NAME: udev has not marked mapping NAME SYSTEMD_READY=0
udev_ready() { ! udevadm info -q property "/dev/block/$(dm_dev "$1")" | grep '^SYSTEMD_READY=0'; }
