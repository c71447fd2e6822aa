#!/bin/sh
# /usr/local/sbin/vmtest of boot-systemd.sh: run by vmtest.service in the Debian root after
# multi-user.target, once the boot has finished; ephemcrypt ran in the dracut systemd initrd.
# vmtest=volume (kernel command line): EPH-A and EPH-B blank (used), EPH-C with ext4 (refused).
# Prints a report (lines "REPORT ...") of what a user wants to see, then checks that everything
# survived switch_root and the real root's udev and systemd.
# vmtest=separate-var: /var is its own file system in the root's fstab (/dev/vdb), as CIS-hardened
# images have it: /var/log and /var/tmp must end up on the volume after that mount, bound again by
# the units setup wrote, and the status says ok.
# vmtest=fallback: the mount point cannot be made (it lies under a regular file) after mkfs, while the initrd's udev probes the new file system: setup must roll back every
# mapping and cover the bind targets with tmpfs, and the boot must go on.
# shellcheck disable=SC2016 # sh -c '...' expands in the guest
# shellcheck source=lib.sh
. /lib/vmtest.sh

state=$(systemctl is-system-running --wait)

status=$(ephemcrypt status 2>&1)
status_has() { printf "%s\n" "$status" | grep -q "$1"; }
check boot-finished-running test "$state" = running
check no-failed-units test -z "$(systemctl --failed --plain --no-legend)"
# udev owns /dev/mapper: ephemcrypt makes no node where the initrd's or the root's udev wants a link.
check no-link-conflict no_link_conflict

if grep -q ' vmtest=separate-var' /proc/cmdline; then
	report "ephemcrypt status" echo "$status"
	report "Mounts" sh -c 'findmnt --list -o TARGET,SOURCE,FSTYPE | grep -E "^(/var|/var/log|/var/tmp|/tmp|/mnt/ephemcrypt) "'
	check var-from-fstab test "$(findmnt -n -o SOURCE /var)" = /dev/vdb
	for m in /var/log /var/tmp /tmp; do
		check "on-volume-$m" on_volume "$m"
		check "unit-active-$m" mount_active "$m"
	done
	check status-ok status_has '^result: ok'
	check status-units status_has '^unit: var-log.mount'
	check units-from-run test -f /run/systemd/system/var-log.mount -a -f /run/systemd/system/var-tmp.mount
	check journal-on-volume on_volume /var/log/journal
	check written-to-volume sh -c 'echo x >/var/log/probe && test -s /mnt/ephemcrypt/var/log/probe'
	check var-disk-log-hidden test ! -e /var/log/var-disk.log
	vm_done
	exit
fi

if grep -q ' vmtest=fallback' /proc/cmdline; then
	report "ephemcrypt status" echo "$status"
	check status-degraded status_has '^result: degraded (create directory /sysroot/etc/hostname/ephemcrypt: Not a directory'
	check status-names-the-step status_has '^failed step: mkdir /sysroot/etc/hostname/ephemcrypt$'
	check rollback-complete eval '! status_has cleanup'
	check no-mapping-left eval '! dmsetup ls | grep -q ephemcrypt'
	check no-swap test -z "$(swapon --noheadings)"
	for m in /var/log /tmp /var/tmp; do
		check "tmpfs-$m" test "$(findmnt -n -o FSTYPE "$m")" = tmpfs
		check "unit-active-$m" mount_active "$m"
	done
	vm_done
	exit
fi

report "Disks chosen and refused, mappings, step timings (ephemcrypt status)" echo "$status"
report "Device tree (lsblk)" lsblk -o NAME,MAJ:MIN,TYPE,SIZE,SERIAL,FSTYPE,MOUNTPOINTS
report "Device-mapper tables: the key is a keyring reference, even with --showkeys" \
	sh -c 'dmsetup table; echo "--showkeys ephemcrypt: $(dmsetup table --showkeys ephemcrypt)"'
report "Mounts on the volume (findmnt)" sh -c \
	'findmnt -l -o TARGET,SOURCE,FSTYPE,OPTIONS | awk "NR == 1 || /ephemcrypt/"'
report "Swap" swapon --show
journal=/var/log/journal/$(cat /etc/machine-id)/system.journal
report "Journal (persistent, on the volume)" sh -c \
	"ls -l $journal; findmnt -o TARGET,SOURCE,FSTYPE -T $journal; journalctl --disk-usage"
report "What ephemcrypt logged in the initrd (journalctl -b -t ephemcrypt, from /dev/kmsg)" \
	journalctl -b -q -o short-monotonic --no-hostname _TRANSPORT=kernel SYSLOG_IDENTIFIER=ephemcrypt
report "Boot time (systemd-analyze)" systemd-analyze
report "Units of the volume (systemctl)" systemctl list-units --all --no-pager --plain --no-legend \
	var-log.mount tmp.mount var-tmp.mount mnt-ephemcrypt.mount '*.swap' 'dev-mapper-ephemcrypt*'

check ran-in-initrd test "$(first_of '^done: 2 disk' '^Switching root')" = "done: 2 disk"
check initrd-lines-from-kmsg from_kmsg '^done: 2 disk(s) encrypted'
check initrd-unit-journal sh -c 'journalctl -b -q -o cat -u ephemcrypt.service | grep -q "done: 2 disk"'
check status-ok status_has "^result: ok"
check status-live status_has ": live\$"
check status-none-gone eval "! status_has GONE"
check status-refused-ext4 status_has "EPH-C.*refused: .*ext2/3/4"
for m in /mnt/ephemcrypt /var/log /tmp /var/tmp; do
	check "mounted-$m" on_volume "$m"
	check "unit-active-$m" mount_active "$m"
done
check swap-active one_swap_on ephemcrypt-swap
check journal-flushed systemctl is-active -q systemd-journal-flush.service
check journal-persistent test -s "$journal"
check journal-on-volume on_volume "$journal"
check image-log-hidden test ! -e /var/log/image.log
check root-no-password sh -c 'passwd -S root | grep -q " NP "'
for n in ephemcrypt ephemcrypt-swap ephemcrypt-data; do
	check "udev-ready-$n" udev_ready "$n"
done
# A later uevent (a package's udev rules, `udevadm trigger`) must not take the volume away either.
udevadm trigger --settle --subsystem-match=block
sleep 2
for m in /var/log /tmp /var/tmp; do
	check "after-trigger-mount-$m" mount_active "$m"
	check "after-trigger-on-volume-$m" on_volume "$m"
done
check after-trigger-swap one_swap_on ephemcrypt-swap
# ephemcrypt-check.service (wanted by multi-user.target, sandboxed) wrote the feature file that
# node-feature-discovery turns into node labels, beside another one it left alone.
nfd=/etc/kubernetes/node-feature-discovery/features.d
report "Node feature file ($nfd/ephemcrypt)" sh -c "grep -v '^#' $nfd/ephemcrypt; ls -l $nfd"
check check-unit-ran sh -c 'systemctl is-active -q ephemcrypt-check.service &&
	journalctl -b -q -o cat -u ephemcrypt-check.service | grep -q "ephemcrypt: ok: 2 disk(s) encrypted"'
check nfd-feature-file sh -c 'test "$(grep -v "^#" "$1/ephemcrypt")" = "$(printf "%s\n" ephemcrypt.encrypted=true \
	ephemcrypt.result=ok ephemcrypt.cipher=aes-xts-plain64 ephemcrypt.key-bits=512)"' _ "$nfd"
check nfd-file-mode test "$(stat -c %a "$nfd/ephemcrypt")" = 644
check nfd-other-untouched test "$(cat "$nfd/other")" = other.vendor=true
check nfd-no-temporary test "$(find "$nfd" -mindepth 1 | wc -l)" = 2
vm_done
