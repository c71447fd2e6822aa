#!/bin/bash
# The shell hook of bench/boot-time.sh: what ephemcrypt does, without its checks.
set -eu
disks=()
for ((try = 0; try < 50; try++)); do
	disks=()
	for s in /sys/block/nvme*n1; do
		[[ -e $s/device/serial ]] || continue
		[[ $(cat "$s/device/serial") == EPH-* ]] && disks+=("/dev/${s##*/}")
	done
	((${#disks[@]} >= 2)) && break
	sleep 0.1
done
udevadm settle
mdadm --create /dev/md/ephemhook --run --quiet --level=0 --chunk=256 --raid-devices=${#disks[@]} "${disks[@]}" </dev/null
cryptsetup open --type plain --cipher aes-xts-plain64 --key-size 512 --key-file /dev/urandom --sector-size 4096 \
	--perf-no_read_workqueue --perf-no_write_workqueue /dev/md/ephemhook ephemhook
mkfs.ext4 -q -F -L ephemhook -O sparse_super2,^resize_inode \
	-E nodiscard,lazy_itable_init=1,lazy_journal_init=1,num_backup_sb=0 -G 4096 /dev/mapper/ephemhook
mount -o nosuid,nodev /dev/mapper/ephemhook /sysroot/mnt/ephemhook
for d in var/log tmp var/tmp; do
	mkdir -p "/sysroot/mnt/ephemhook/$d"
	mount --bind "/sysroot/mnt/ephemhook/$d" "/sysroot/$d"
done
