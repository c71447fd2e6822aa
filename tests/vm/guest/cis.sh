#!/bin/sh
# /usr/local/sbin/vmtest of cis.sh: run by vmtest.service in the Debian root after
# multi-user.target. The root's fstab separates /var (vdb), /var/log (vdc) and /var/log/audit
# (vdd) and mounts a tmpfs on /tmp, with CIS's options. Every bind target must be on the volume,
# visible (not hidden by a later mount), with the options the fstab gives the mount it replaces
# or lies on; /var/log/audit is the fstab's own persistent file system (the documented default);
# the status says ok. Then a marker goes to /var/log (printed as "MARKER ..." for the host, which
# looks for it on every disk image), and a tmpfs mounted over /var/tmp must turn the status to
# degraded, naming /var/tmp and what hides it.
# shellcheck disable=SC2016 # sh -c '...' expands in the guest
# shellcheck source=lib.sh
. /lib/vmtest.sh

state=$(systemctl is-system-running --wait)
targets='/var/log /tmp /var/tmp'
report "mountinfo of the bind targets and what they lie on" sh -c \
	'grep -E "^[0-9]+ [0-9]+ [0-9:]+ [^ ]+ (/|/var|/var/log|/var/log/audit|/tmp|/var/tmp|/mnt/ephemcrypt) " /proc/self/mountinfo'
report "Mounts (findmnt: the last mount at each path, visible or not)" sh -c \
	'for m in /var /var/log /var/log/audit /tmp /var/tmp /mnt/ephemcrypt; do findmnt -n -o TARGET,SOURCE,MAJ:MIN,FSTYPE,OPTIONS --mountpoint $m | tail -n1; done'
report "What each path shows (device:inode; the volume's directory for a target on the volume)" sh -c \
	'for m in /var/log /tmp /var/tmp; do echo "$m $(stat -c %d:%i $m) volume: $(stat -c %d:%i /mnt/ephemcrypt$m)"; done'
report "Mount units" systemctl list-units --all --no-pager --plain --no-legend var.mount var-log.mount \
	var-log-audit.mount tmp.mount var-tmp.mount mnt-ephemcrypt.mount
report "ephemcrypt status" ephemcrypt status
report "Units setup wrote" sh -c 'ls /run/systemd/system; head -n 30 /run/systemd/system/*.mount'

check boot-finished-running test "$state" = running
check no-failed-units test -z "$(systemctl --failed --plain --no-legend)"
check var-from-fstab test "$(findmnt -n -o SOURCE /var)" = /dev/vdb
check audit-from-fstab test "$(findmnt -n -o SOURCE /var/log/audit)" = /dev/vdd
data=ephemcrypt-data
# has_opts PATH OPT...: the visible mount at PATH has each of the options
has_opts() {
	_o=$(findmnt -n -o OPTIONS --mountpoint "$1" | tail -n1)
	shift
	for _x; do printf ',%s,' "$_o" | grep -q ",$_x," || { echo "no $_x in $_o" && return 1; }; done
}
# shows_volume PATH: PATH is the volume's directory of that path, as the kernel resolves it now
# (findmnt and on_volume read mountinfo, where a bind hidden by a later mount above it still
# looks mounted: the bug of issue 20 passed them)
shows_volume() { test "$(stat -c %d:%i "$1")" = "$(stat -c %d:%i "/mnt/ephemcrypt$1")"; }
for m in $targets; do
	check "shows-volume-$m" shows_volume "$m"
	check "on-volume-$m" on_volume "$m"
	# The last (visible) mount at the path is the volume's directory.
	check "source-$m" test "$(findmnt -n -o SOURCE --mountpoint "$m" | tail -n1)" = "/dev/mapper/$data[$m]"
	check "unit-active-$m" mount_active "$m"
done
check options-/var/log has_opts /var/log nodev nosuid noexec
check options-/tmp has_opts /tmp nodev nosuid noexec
check options-/var/tmp has_opts /var/tmp nodev nosuid
check status-ok sh -c 'ephemcrypt status | grep -q "^result: ok"'
check check-ok ephemcrypt check
check check-unit-ok systemctl start ephemcrypt-check.service

# A marker for the host to look for on the disks: in the journal (flushed to /var/log/journal)
# and in a file.
marker=EPHMARK-$(cat /proc/sys/kernel/random/uuid)
logger -t cis-marker "$marker"
sleep 1
journalctl --flush
echo "$marker" >/var/log/marker.log
sync
check marker-in-journal sh -c "journalctl -q -o cat -t cis-marker | grep -q $marker"
check marker-on-volume grep -q "$marker" /mnt/ephemcrypt/var/log/marker.log
echo "MARKER $marker"
echo "an audit line, not the marker" >/var/log/audit/audit-marker.log
check audit-persistent test "$(findmnt -n -o SOURCE -T /var/log/audit/audit-marker.log)" = /dev/vdd

# A late mount hides a bind target: the status checks what is visible, and says so.
mount -t tmpfs -o nosuid,nodev tmpfs /var/tmp
hidden=$(ephemcrypt status 2>&1)
report "ephemcrypt status with a tmpfs over /var/tmp" echo "$hidden"
check hidden-degraded sh -c 'echo "$1" | grep -q "^result: degraded (/var/tmp is not on the volume: .*tmpfs"' _ "$hidden"
check hidden-metrics sh -c 'ephemcrypt status --format prometheus | grep -q "^ephemcrypt_setup_result{result=\"degraded\"} 1"'
check hidden-check-fails sh -c '! ephemcrypt check'
check hidden-check-unit-fails sh -c '! systemctl restart ephemcrypt-check.service'
check hidden-check-unit-says-why sh -c \
	'journalctl -q -o cat -u ephemcrypt-check.service | grep -q "bind targets not on the encrypted volume: /var/tmp is not on the volume"'
umount /var/tmp
systemctl reset-failed ephemcrypt-check.service
check status-ok-again sh -c 'ephemcrypt status | grep -q "^result: ok"'
vm_done
