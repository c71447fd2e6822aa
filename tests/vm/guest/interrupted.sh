#!/bin/sh
# /init of the interrupted-setup VM test (tests/vm/setup.sh, after the main test): two blank NVMe
# disks, EPH-E and EPH-F.
#   vmtest=interrupt: setup is killed (SIGKILL) the moment it runs mkfs: after the headers and the
#                     mappings, before the file system. The machine then stops without cleanup,
#                     as a crash would.
#   vmtest=retake:    the next boot on the same disks: plan and setup take them back by their
#                     headers, and setup completes.
# shellcheck disable=SC2016 # sh -c '...' expands in the guest
# shellcheck source=lib.sh
. /lib/vmtest.sh
vm_init
vm_wait_dev /dev/nvme0n1 /dev/nvme1n1
mkdir -p /sysroot
mount -t tmpfs -o mode=755 newroot /sysroot
mkdir -p /sysroot/var/log /sysroot/tmp /sysroot/var/tmp /sysroot/mnt/ephemcrypt
cat >/run/ephemcrypt.conf <<'CONF'
devices = serial:EPH-*
expect = 2
CONF
node_of() { for d in /sys/block/nvme*; do grep -q "^$1 *$" "$d/device/serial" && echo "/dev/${d##*/}"; done; }

if grep -qw vmtest=interrupt /proc/cmdline; then
	check disks-blank sh -c 'ephemcrypt plan --config /run/ephemcrypt.conf | grep -c "used\|use: blank" | grep -qx 2'
	# A mkfs that kills setup, its parent, at once: no undo runs.
	mkdir -p /run/killer
	printf '#!/bin/sh\nkill -9 $PPID\nsleep 5\n' >/run/killer/mkfs.ext4
	chmod 755 /run/killer/mkfs.ext4
	PATH=/run/killer:$PATH ephemcrypt setup --config /run/ephemcrypt.conf --newroot /sysroot
	check setup-was-killed test $? = 137
	check headers-written sh -c "head -c 16 $(node_of EPH-E) | grep -aq EPHEMCRYPT && head -c 16 $(node_of EPH-F) | grep -aq EPHEMCRYPT"
	check left-half-made sh -c 'dmsetup ls | grep -q ephemcrypt'
	check no-file-system sh -c '! grep -q /sysroot/mnt/ephemcrypt /proc/mounts'
	sync
	vm_done # poweroff -f: no cleanup, as after a crash
fi

# The next boot.
ephemcrypt plan --config /run/ephemcrypt.conf >/run/plan.txt
sed 's/^/PLAN /' /run/plan.txt
check plan-takes-both-back sh -c 'test "$(grep -c "use: previous ephemcrypt volume .ephemcrypt. [0-9a-f]*, created " /run/plan.txt)" = 2'
ephemcrypt setup --config /run/ephemcrypt.conf --newroot /sysroot
check setup-exit-0 test $? = 0
check status-ok grep -q '"result": "ok"' /run/ephemcrypt/status.json
check status-previous-volume sh -c 'ephemcrypt status | grep -c "): used: previous ephemcrypt volume" | grep -qx 2'
check volume-mounted sh -c 'grep -q "^/dev/mapper/ephemcrypt /sysroot/mnt/ephemcrypt ext4 " /proc/mounts'
check binds sh -c 'grep -q " /sysroot/var/log ext4 " /proc/mounts'
ephemcrypt status | sed 's/^/STATUS-TEXT /'
umount /sysroot/var/log /sysroot/tmp /sysroot/var/tmp /sysroot/mnt/ephemcrypt
vm_done
