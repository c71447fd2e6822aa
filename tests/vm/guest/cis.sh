#!/bin/sh
# /usr/local/sbin/vmtest of cis.sh: run by vmtest.service in the Debian root after
# multi-user.target. The root's fstab separates /var (vdb), /var/log (vdc) and /var/log/audit
# (vdd) and mounts a tmpfs on /tmp, with CIS's options. Every bind target must be on the volume,
# visible (not hidden by a later mount), with the options the fstab gives the mount it replaces
# or lies on; /var/log/audit is the fstab's own persistent file system (the documented default);
# the status says ok. Then a marker goes to /var/log (printed as "MARKER ..." for the host, which
# looks for it on every disk image), and a tmpfs mounted over /var/tmp must turn the status to
# degraded, naming /var/tmp and what hides it. SELinux is enforcing (cis.sh): the labels are the
# policy's (`restorecon -Rn` changes nothing on the volume's mount point or any bind target),
# journald's persistent journal and rsyslog's syslog (a confined daemon, syslogd_t) land on the
# volume, and no AVC denial of this boot involves the volume, its mappings or ephemcrypt.
# shellcheck disable=SC2016 # sh -c '...' expands in the guest
# shellcheck source=lib.sh
. /lib/vmtest.sh

state=$(systemctl is-system-running --wait)
targets='/var/log /tmp /var/tmp /home' # /home: bound in the initramfs (no fstab mount above it)
report "mountinfo of the bind targets and what they lie on" sh -c \
	'grep -E "^[0-9]+ [0-9]+ [0-9:]+ [^ ]+ (/|/var|/var/log|/var/log/audit|/tmp|/var/tmp|/home|/mnt/ephemcrypt) " /proc/self/mountinfo'
report "Mounts (findmnt: the last mount at each path, visible or not)" sh -c \
	'for m in /var /var/log /var/log/audit /tmp /var/tmp /home /mnt/ephemcrypt; do findmnt -n -o TARGET,SOURCE,MAJ:MIN,FSTYPE,OPTIONS --mountpoint $m | tail -n1; done'
report "What each path shows (device:inode; the volume's directory for a target on the volume)" sh -c \
	'for m in /var/log /tmp /var/tmp /home; do echo "$m $(stat -c %d:%i $m) volume: $(stat -c %d:%i /mnt/ephemcrypt$m)"; done'
report "Mount units" systemctl list-units --all --no-pager --plain --no-legend var.mount var-log.mount \
	var-log-audit.mount tmp.mount var-tmp.mount home.mount mnt-ephemcrypt.mount
report "ephemcrypt status" ephemcrypt status
labelled='/ /mnt /mnt/ephemcrypt /var /var/log /var/log/journal /var/log/audit /tmp /var/tmp /home'
report "SELinux" sh -c 'echo "enforce: $(cat /sys/fs/selinux/enforce)"; sestatus'
report "Labels (ls -Zd)" sh -c "ls -Zd $labelled /mnt/ephemcrypt/* /mnt/ephemcrypt/var/*"
# shellcheck disable=SC2086 # $targets: a list of paths without spaces, split on purpose
report "restorecon -Rnv on the volume's mount point and the bind targets" restorecon -Rnv /mnt/ephemcrypt $targets
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
	check "source-$m" test "$(findmnt -n -o SOURCE --mountpoint "$m" | tail -n1)" = "/dev/mapper/${data}[$m]"
	check "unit-active-$m" mount_active "$m"
done
check options-/var/log has_opts /var/log nodev nosuid noexec
check options-/tmp has_opts /tmp nodev nosuid noexec
check options-/var/tmp has_opts /var/tmp nodev nosuid
check status-ok sh -c 'ephemcrypt status | grep -q "^result: ok"'
check selinux-enforcing test "$(cat /sys/fs/selinux/enforce)" = 1
# shellcheck disable=SC2086 # the list of targets
check restorecon-nothing-to-change test -z "$(restorecon -Rnv /mnt/ephemcrypt $targets 2>&1)"
check journal-on-volume sh -c 'ls /mnt/ephemcrypt/var/log/journal/*/system.journal'
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
# rsyslogd (syslogd_t) writes the marker to /var/log/syslog, on the volume.
in_syslog() {
	for _i in 1 2 3 4 5 6 7 8 9 10; do
		grep -q "$marker" /mnt/ephemcrypt/var/log/syslog 2>/dev/null && return 0
		sleep 1
	done
	echo "no $marker in /mnt/ephemcrypt/var/log/syslog" && return 1
}
check rsyslog-writes-on-volume in_syslog
# domain PID: the SELinux context a process runs in
domain() { tr -d '\0' <"/proc/$1/attr/current"; }
rsyslog_confined() { domain "$(systemctl show -P MainPID rsyslog.service)" | grep ':syslogd_t:'; }
check rsyslog-confined rsyslog_confined
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

# AVC denials of this boot: the kernel's (before auditd) and auditd's. None may involve the
# volume (its mount point, dm devices, the unlabeled_t of an unlabelled file system), the
# mappings or ephemcrypt (its binary, units, status files).
avcs() { journalctl -b -k -q -o cat | grep 'avc: *denied'; grep -h 'type=AVC' /var/log/audit/audit.log; }
report "AVC denials in this boot" avcs
report "Domains of the running services" sh -c 'for p in /proc/[0-9]*; do c=$(tr -d "\0" <$p/attr/current 2>/dev/null) && [ -n "$(cat $p/cmdline 2>/dev/null)" ] && echo "$c $(cat $p/comm)"; done | sort -u'
no_ephemcrypt_avc() { ! avcs | grep -E 'ephemcrypt|dm-[0-9]|/mnt|unlabeled_t|mnt_t'; }
check no-avc-involving-ephemcrypt no_ephemcrypt_avc
vm_done
