#!/bin/bash
# dracut module 91ephemhook (bench/boot-time.sh only; never installed): the shell hook people
# write instead of ephemcrypt, as the comparison for the boot-time bench. A unit in dracut's
# systemd initrd runs ephemhook.sh before initrd-fs.target: mdadm RAID0 over the disks whose
# serial starts with EPH-, cryptsetup plain with a random key (ephemcrypt's cipher, key size,
# sector size and flags), mkfs.ext4 with ephemcrypt's arguments, mounted on /sysroot/mnt/ephemhook
# with /var/log, /tmp and /var/tmp bound onto it. No check that a disk is free, no rollback.
# shellcheck disable=SC2154 # dracut's variables (moddir, systemdsystemunitdir, initdir)
check() { return 255; }
depends() { echo systemd crypt mdraid; }
install() {
	inst_multiple mdadm cryptsetup mkfs.ext4 mount mkdir udevadm cat sleep
	inst_script "$moddir/ephemhook.sh" /usr/sbin/ephemhook
	inst_simple "$moddir/ephemhook.service" "$systemdsystemunitdir/ephemhook.service"
	mkdir -p "$initdir$systemdsystemunitdir/initrd.target.wants"
	ln -sf ../ephemhook.service "$initdir$systemdsystemunitdir/initrd.target.wants/ephemhook.service"
}
