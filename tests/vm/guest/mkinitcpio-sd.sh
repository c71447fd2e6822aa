#!/bin/sh
# /usr/local/sbin/vmtest of mkinitcpio.sh's systemd boot: run by vmtest.service in the Debian root
# after multi-user.target; ephemcrypt ran in the sd-ephemcrypt image with systemd as its init,
# on two blank disks (EPH-A, EPH-B), with swap. Checks the volume, binds and swap as the real
# root's units, the order in the initramfs (ephemcrypt.service done before initrd-fs.target was
# reached, so before the switch), and that no udev of the boot found a node where it wanted a
# /dev/mapper link.
# shellcheck disable=SC2016 # sh -c '...' expands in the guest
# shellcheck source=lib.sh
. /lib/vmtest.sh

state=$(systemctl is-system-running --wait)
status=$(ephemcrypt status 2>&1)
printf '%s\n' "$status" | sed 's/^/    /'
status_has() { printf "%s\n" "$status" | grep -q "$1"; }
# done_order: the units whose start job finished, in the order the journal has them (systemd's
# job-done messages: "Started", "Finished", "Reached target"), for the two that matter here
done_order() {
	journalctl -b -q -o json --output-fields=UNIT JOB_TYPE=start JOB_RESULT=done \
		UNIT=ephemcrypt.service UNIT=initrd-fs.target | grep -o '"UNIT":"[^"]*"' | cut -d'"' -f4 | paste -sd' '
}

check boot-finished-running test "$state" = running
check no-failed-units test -z "$(systemctl --failed --plain --no-legend)"
check no-link-conflict no_link_conflict
check status-ok status_has '^result: ok'
check status-live sh -c 'test "$(printf "%s\n" "$0" | grep -c ": live$")" = 4' "$status"
check ran-in-initrd test "$(first_of '^done: 2 disk' '^Switching root')" = "done: 2 disk"
check initrd-unit-journal sh -c 'journalctl -b -q -o cat -u ephemcrypt.service | grep -q "done: 2 disk"'
check unit-before-initrd-fs test "$(done_order)" = "ephemcrypt.service initrd-fs.target"
for m in /mnt/ephemcrypt /var/log /tmp /var/tmp; do
	check "mounted-$m" on_volume "$m"
	check "unit-active-$m" mount_active "$m"
done
check swap-active one_swap_on ephemcrypt-swap
check swap-unit-active sh -c 'systemctl list-units --plain --no-legend --state=active "*.swap" | grep -q .'
for n in ephemcrypt ephemcrypt-swap ephemcrypt-data; do
	check "udev-ready-$n" udev_ready "$n"
	check "link-$n" test -L "/dev/mapper/$n"
	check "device-unit-$n" systemctl is-active -q "$(systemd-escape -p --suffix=device "/dev/mapper/$n")"
done
vm_done
