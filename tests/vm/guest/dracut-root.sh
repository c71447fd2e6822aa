#!/bin/sh
# /sbin/init of the busybox real root in the dracut boot tests (tests/vm/boot-dracut.sh): runs
# after dracut's shell init ran ephemcrypt and switched root, checks what ephemcrypt left, powers
# off. vmtest.scenario= on the kernel command line says what to expect:
#   ok        the volume (swap + ext4, binds) is in place; writes a marker into /var/log and the
#             file system's UUID onto the root disk for the next boot
#   reboot    a second boot on the disks of `ok`: a new volume, the marker is gone
#   degraded  the failure policy put tmpfs over the bind targets
#   absent    no eligible disk: nothing mounted, nothing made
# shellcheck disable=SC2016 # sh -c '...' expands in the guest
# shellcheck source=lib.sh
. /lib/vmtest.sh
scenario=$(sed -n 's/.*vmtest\.scenario=\([a-z]*\).*/\1/p' /proc/cmdline)
data=/dev/mapper/ephemcrypt-data
echo "info: scenario $scenario"
grep -E ' (/|/mnt/ephemcrypt|/var/log|/tmp|/var/tmp) ' /proc/mounts | sed 's/^/info: mount /'
ephemcrypt status >/run/status.txt
echo "status-exit=$?" >>/run/status.txt
sed 's/^/STATUS /' /run/status.txt

# status_is RESULT: `ephemcrypt status` printed that result and exited 0.
status_is() { grep -q "^result: $1\( \|\$\)" /run/status.txt && grep -qx 'status-exit=0' /run/status.txt; }
# mounted SOURCE TYPE TARGET...: each TARGET is a mount of SOURCE with that type.
mounted() {
	_src=$1 _type=$2
	shift 2
	for _t; do grep -q "^$_src $_t $_type " /proc/mounts || return 1; done
}
# no_volume: no device-mapper device and no swap.
no_volume() {
	for _d in /sys/block/dm-*; do [ ! -e "$_d" ] || return 1; done
	! grep -q '^/' /proc/swaps
}

check real-root grep -qx NAME=busybox-root /etc/os-release
# All of setup's lines reached the kernel log (it rate-limits /dev/kmsg writers).
check kmsg-complete sh -c 'dmesg | grep -q "ephemcrypt: " && ! dmesg | grep -q "ephemcrypt: .*suppressed"'
check no-link-conflict no_link_conflict

case $scenario in
ok | reboot)
	check status-ok status_is ok
	check kmsg-no-error sh -c '! dmesg | grep -q "ephemcrypt: error:"'
	check mappings-live sh -c 'test "$(grep -c ": live$" /run/status.txt)" = 4 && ! grep -q GONE /run/status.txt'
	if [ "$scenario" = ok ]; then taken=blank; else taken="previous ephemcrypt volume"; fi
	check "disks-used-$(echo "$taken" | tr ' ' -)" sh -c "test \"\$(grep -c '(QEMU NVMe Ctrl EPH-[AB]): used: $taken' /run/status.txt)\" = 2"
	check kmsg-done sh -c 'dmesg | grep -q "ephemcrypt: done: 2 disk(s) encrypted"'
	check mounts-on-volume mounted $data ext4 /mnt/ephemcrypt /var/log /tmp /var/tmp
	check swap-on-volume swap_on ephemcrypt-swap
	# udev owns /dev/mapper: links there, never a node it cannot replace.
	check mapper-links mapper_links ephemcrypt-stripe ephemcrypt ephemcrypt-swap ephemcrypt-data
	check image-log-hidden test ! -e /var/log/image.log
	check tmp-1777 sh -c 'test "$(stat -c %a /tmp)" = 1777 && test "$(stat -c %a /var/tmp)" = 1777'
	# The ext4 UUID, from the superblock (at 1024, s_uuid at +104): busybox-static has no blkid.
	uuid=$(dd if=$data bs=1 skip=1128 count=16 2>/dev/null | od -An -tx1 | tr -d ' \n')
	echo "info: file system UUID $uuid"
	if [ "$scenario" = ok ]; then
		check write-marker sh -c 'echo "boot 1 was here" >/var/log/marker && test -s /var/log/marker'
		echo "$uuid" >/root/boot1-uuid
	else
		check same-root-as-boot-1 test -s /root/boot1-uuid
		check marker-gone test ! -e /var/log/marker
		check new-file-system sh -c "test -n '$uuid' && test '$uuid' != \"\$(cat /root/boot1-uuid)\""
	fi
	;;
degraded)
	check status-degraded status_is degraded
	check status-reason grep -q '0 eligible disk(s), 2 expected' /run/status.txt
	check tmpfs-on-binds mounted tmpfs tmpfs /var/log /tmp /var/tmp
	check tmp-1777 sh -c 'test "$(stat -c %a /tmp)" = 1777'
	check no-volume no_volume
	;;
absent)
	check status-absent status_is absent
	check nothing-mounted sh -c '! grep -Eq " (/mnt/ephemcrypt|/var/log|/tmp|/var/tmp) " /proc/mounts'
	check image-log-visible test -s /var/log/image.log
	check no-volume no_volume
	;;
*) fail scenario "unknown vmtest.scenario '$scenario'" ;;
esac
sync
vm_done
