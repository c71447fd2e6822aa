#!/bin/sh
# /usr/local/sbin/vmtest of boot-initramfs-tools.sh: run by vmtest.service in the Debian root
# after multi-user.target. The initramfs was made by Debian's initramfs-tools (update-initramfs in
# this root, after `make install`), as on Debian's and Ubuntu's cloud images.
# vmtest=volume: EPH-A, EPH-B blank (used), EPH-C with ext4 (refused). Reports, checks that the
#   volume survived the real root's udev and systemd, then writes a plaintext marker to /var/log
#   that the host must not find on the raw disks.
# vmtest=nohook: the same root booted with the stock image (ephemcrypt not in it, as when the
#   image was not rebuilt, or on an initrd-less boot): `ephemcrypt status` explains and exits 3,
#   ephemcrypt-check.service fails with the explanation in the journal.
# shellcheck disable=SC2016 # sh -c '...' expands in the guest
# shellcheck source=lib.sh
. /lib/vmtest.sh

state=$(systemctl is-system-running --wait)
status=$(ephemcrypt status 2>&1)
rc=$?
status_has() { printf "%s\n" "$status" | grep -q "$1"; }
# udev owns /dev/mapper: ephemcrypt makes no node where the initramfs' or the root's udev wants a link.
check no-link-conflict no_link_conflict

if grep -q ' vmtest=nohook' /proc/cmdline; then
	report "ephemcrypt status (no hook in the image)" echo "$status"
	report "ephemcrypt-check.service" journalctl -b -q -o short-monotonic -u ephemcrypt-check.service
	check status-exit-3 test "$rc" = 3
	check status-explains status_has "ephemcrypt did not run in this boot's initramfs"
	check status-names-initrdless status_has "GRUB_FORCE_PARTUUID"
	check check-unit-failed sh -c 'test "$(systemctl is-failed ephemcrypt-check.service)" = failed'
	check check-unit-says-why sh -c 'journalctl -b -q -o cat -p warning -u ephemcrypt-check.service | grep -q "did not run in this boot"'
	check boot-degraded-not-stuck test "$state" = degraded
	check only-the-check-failed test "$(systemctl --failed --plain --no-legend | awk '{ print $1 }')" = ephemcrypt-check.service
	check var-log-on-root-disk sh -c '! dmsetup ls | grep -q ephemcrypt'
	vm_done
	exit
fi

report "Disks chosen and refused, mappings, step timings (ephemcrypt status)" echo "$status"
report "What ephemcrypt logged in the initramfs (to /dev/kmsg)" \
	journalctl -b -q -o short-monotonic --no-hostname _TRANSPORT=kernel SYSLOG_IDENTIFIER=ephemcrypt
report "Check in the real root (ephemcrypt-check.service)" journalctl -b -q -o cat -u ephemcrypt-check.service
report "Device-mapper tables" dmsetup table
report "Mounts on the volume" sh -c 'findmnt -l -o TARGET,SOURCE,FSTYPE,OPTIONS | awk "NR == 1 || /ephemcrypt/"'
report "Boot time (systemd-analyze)" systemd-analyze
check boot-finished-running test "$state" = running
check no-failed-units test -z "$(systemctl --failed --plain --no-legend)"
check status-ok status_has "^result: ok"
check status-refused-ext4 status_has "EPH-C.*refused: .*ext2/3/4"
check ran-in-initramfs from_kmsg '^done: 2 disk(s) encrypted'
check check-unit-ok sh -c 'systemctl is-active -q ephemcrypt-check.service && journalctl -b -q -o cat -u ephemcrypt-check.service | grep -q "ephemcrypt: ok: 2 disk(s) encrypted"'
check crypt-logon-key sh -c 'dmsetup table ephemcrypt | grep -q " crypt aes-xts-plain64 :64:logon:"'
check no-keyring-entry sh -c '! grep -q ephemcrypt /proc/keys'
for m in /mnt/ephemcrypt /var/log /tmp /var/tmp; do
	check "on-volume-$m" on_volume "$m"
	check "unit-active-$m" mount_active "$m"
done
check swap-on-volume one_swap_on ephemcrypt-swap
journal=/var/log/journal/$(cat /etc/machine-id)/system.journal
check journal-persistent test -s "$journal"
check journal-on-volume on_volume "$journal"
check image-log-hidden test ! -e /var/log/image.log
i=0
while [ $i -lt 4000 ]; do echo "EPHEMCRYPT-PLAINTEXT-MARKER-$i"; i=$((i + 1)); done >/var/log/marker.log
sync
echo 3 >/proc/sys/vm/drop_caches
vm_done
