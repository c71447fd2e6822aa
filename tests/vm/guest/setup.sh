#!/bin/sh
# /init of the setup VM test (tests/vm/setup.sh): `ephemcrypt setup` on a real kernel with four
# NVMe disks: EPH-A and EPH-B blank (used), EPH-C selected but carrying ext4 (refused), OTHER-D
# not selected. The new root is a tmpfs laid out like a real root.
# shellcheck disable=SC2016 # sh -c '...' expands in the guest
# shellcheck source=lib.sh
. /lib/vmtest.sh
vm_init
# For the kernel matrix (matrix.sh): which kernel, and how long it took to reach here.
echo "BOOT $(uname -r) $(uname -m): userspace ready after $(cut -d' ' -f1 /proc/uptime) s"
vm_wait_dev /dev/nvme0n1 /dev/nvme1n1 /dev/nvme2n1 /dev/nvme3n1

mkdir -p /sysroot
mount -t tmpfs -o mode=755 newroot /sysroot
mkdir -p /sysroot/var/log/journal /sysroot/var/log/private /sysroot/tmp/.X11-unix /sysroot/var/tmp /sysroot/etc
chmod 1777 /sysroot/tmp /sysroot/var/tmp /sysroot/tmp/.X11-unix
chown 0:4 /sysroot/var/log/journal
chmod 2755 /sysroot/var/log/journal
chmod 700 /sysroot/var/log/private
echo "a log written before setup" >/sysroot/var/log/old.log
# As dracut leaves it by default: read-only, and without the mount point /mnt/ephemcrypt.
mount -o remount,ro /sysroot

# dev_of SERIAL: major:minor of the NVMe namespace with that serial
dev_of() { for d in /sys/block/nvme*; do grep -q "^$1 *$" "$d/device/serial" && cat "$d/dev"; done; }
# node_of SERIAL: the /dev node of the NVMe namespace with that serial
node_of() { for d in /sys/block/nvme*; do grep -q "^$1 *$" "$d/device/serial" && echo "/dev/${d##*/}"; done; }

# The plan first: what setup is about to do, step by step (it touches nothing).
ephemcrypt plan --newroot /sysroot >/run/plan.txt
check plan-exit-0 test $? = 0
sed 's/^/PLAN /' /run/plan.txt

# No /dev/mapper/control (no udev static nodes): setup makes it from sysfs.
modprobe dm-mod && rm -f /dev/mapper/control
ephemcrypt setup --newroot /sysroot 2>/run/setup.log
rc=$?
cat /run/setup.log
check setup-exit-0 test $rc = 0
check control-node-made test -c /dev/mapper/control
check mount-point-made-on-ro-root test -d /sysroot/mnt/ephemcrypt
check root-read-only-again sh -c 'grep -q "^newroot /sysroot tmpfs ro[, ]" /proc/mounts'

a=$(dev_of EPH-A) b=$(dev_of EPH-B)
check stripe-by-serial-order sh -c "dmsetup table ephemcrypt-stripe | grep -q '^0 [0-9]* striped 2 512 $a 2048 $b 2048\$'"
# Each member starts with ephemcrypt's header, member index in serial order.
check header-on-EPH-A sh -c "head -c 16 $(node_of EPH-A) | grep -aq EPHEMCRYPT"
check header-on-EPH-B sh -c "head -c 16 $(node_of EPH-B) | grep -aq EPHEMCRYPT"
check crypt-over-stripe sh -c "dmsetup table ephemcrypt | grep -q ' crypt aes-xts-plain64 :64:logon:ephemcrypt:ephemcrypt:[^ ]* 0 $(dm_dev ephemcrypt-stripe) 0 '"
check crypt-flags sh -c 'dmsetup table ephemcrypt | grep -q "no_read_workqueue" && dmsetup table ephemcrypt | grep -q "sector_size:4096"'
check showkeys-is-a-reference sh -c 'dmsetup table --showkeys ephemcrypt | grep -q " :64:logon:" && ! dmsetup table --showkeys ephemcrypt | grep -Eq " [0-9a-f]{64,} "'
check no-keyring-entry-left sh -c '! grep -q "logon.*ephemcrypt" /proc/keys'
# The AES implementation dm-crypt uses (in use: refcnt above 1): the CPU's, not the generic one.
used=$(awk '$1 == "name" { n = $3 } $1 == "driver" { d = $3 } $1 == "refcnt" && n == "xts(aes)" && $3 > 1 { print d }' /proc/crypto)
echo "CRYPTO xts(aes) in use on $(uname -m): $used"
case $(uname -m) in aarch64) want='aes-(ce|neon)' ;; *) want=aesni ;; esac
check "aes-implementation-$(uname -m)" sh -c "echo '$used' | grep -Eq '$want'"
check swap-slice-on-crypt sh -c "dmsetup table ephemcrypt-swap | grep -q '^0 131072 linear $(dm_dev ephemcrypt) 0\$'"
check data-slice-on-crypt sh -c "dmsetup table ephemcrypt-data | grep -q ' linear $(dm_dev ephemcrypt) 131072\$'"
check swap-active swap_on ephemcrypt-swap
check swap-signature sh -c 'blkid -o value -s TYPE /dev/mapper/ephemcrypt-swap | grep -qx swap'
check fs-mounted sh -c 'grep -q "^/dev/mapper/ephemcrypt-data /sysroot/mnt/ephemcrypt ext4 rw,nosuid,nodev" /proc/mounts'
for t in /sysroot/var/log /sysroot/tmp /sysroot/var/tmp; do
	check "bind-$t" sh -c "grep -q '^/dev/mapper/ephemcrypt-data $t ext4 ' /proc/mounts"
done
# No background zeroing of the inode tables mke2fs left unwritten (noinit_itable): the kernel
# lists init_itable=N among a file system's options when it would (/proc/fs/ext4/DEV/options).
data_dm=$(basename "$(readlink -f /dev/mapper/ephemcrypt-data)")
check no-itable-zeroing sh -c "grep -qx rw /proc/fs/ext4/$data_dm/options && ! grep -q '^init_itable' /proc/fs/ext4/$data_dm/options"
# mke2fs as planned: no backup superblock, flex groups of 4096
check mkfs-no-backups sh -c "dumpe2fs -h /dev/mapper/ephemcrypt-data 2>/dev/null | grep -Eq '^Flex block group size: +4096\$' && ! dumpe2fs -h /dev/mapper/ephemcrypt-data 2>/dev/null | grep -q '^Backup block groups:.*[0-9]'"
check skeleton-tmp-1777 sh -c 'test "$(stat -c %a /sysroot/tmp)" = 1777 && test "$(stat -c %a /sysroot/var/tmp)" = 1777'
check skeleton-subdir sh -c 'test "$(stat -c %a /sysroot/tmp/.X11-unix)" = 1777'
check skeleton-journal sh -c 'test "$(stat -c "%a %u %g" /sysroot/var/log/journal)" = "2755 0 4"'
check skeleton-private sh -c 'test "$(stat -c %a /sysroot/var/log/private)" = 700'
check skeleton-no-files sh -c '! test -e /sysroot/var/log/old.log'
# Setup did what the plan printed: each mapping's table is the planned one with its placeholders
# filled in (KEY: the logon key reference; /dev/mapper/NAME: that mapping's major:minor), mkfs
# ran the planned argv, the mounts are the planned ones.
awk '/^ *[0-9]+\. create mapping /{ name = $4; next }
	/^ *[0-9]+\. / { name = "" }
	name != "" && /^        [0-9]/ { sub(/^ +/, ""); print name " " $0 }' /run/plan.txt >/run/planned
check plan-has-four-mappings test "$(cut -d' ' -f1 /run/planned | sort -u | wc -l)" = 4
key=$(dmsetup table ephemcrypt | awk '{ print $5 }')
check key-is-a-logon-reference sh -c "echo '$key' | grep -Eq '^:64:logon:ephemcrypt:ephemcrypt:[0-9-]+\$'"
while read -r name line; do
	want=$(echo "$line" | sed "s|KEY|$key|")
	for m in $(echo "$line" | grep -o '/dev/mapper/[^ ]*'); do
		want=$(echo "$want" | sed "s|$m|$(dm_dev "${m#/dev/mapper/}")|")
	done
	check "table-as-planned-$name" test "$(dmsetup table "$name")" = "$want"
done </run/planned
mkfs_argv=$(grep -o 'mkfs\.ext4 .*' /run/plan.txt)
check mkfs-as-planned grep -qxF "ephemcrypt: running $mkfs_argv" /run/setup.log
check plan-remounts-the-ro-root sh -c 'grep -q "mount -o remount,rw.* /sysroot\$" /run/plan.txt && grep -q "mount -o remount,ro.* /sysroot\$" /run/plan.txt'
check mount-as-planned grep -qF "mount -t ext4 -o nosuid,nodev,noinit_itable /dev/mapper/ephemcrypt-data /sysroot/mnt/ephemcrypt (its root labelled as /sysroot/mnt/ephemcrypt was)" /run/plan.txt
for t in /sysroot/var/log /sysroot/tmp /sysroot/var/tmp; do
	check "bind-as-planned-$t" grep -q "mount --bind /sysroot/mnt/ephemcrypt${t#/sysroot} $t\$" /run/plan.txt
done
check status-ok grep -q '"result": "ok"' /run/ephemcrypt/status.json
check status-refused-signature grep -q 'carries a signature: ext2/3/4 file system' /run/ephemcrypt/status.json
check status-refused-unselected grep -q "not selected by 'devices'" /run/ephemcrypt/status.json
check status-key-held grep -q 'kernel keyring (logon), never stored' /run/ephemcrypt/status.json
check status-command sh -c 'ephemcrypt status | grep -q "mapping /dev/mapper/ephemcrypt ([0-9:]*): live"'
sed 's/^/STATUS /' /run/ephemcrypt/status.json
ephemcrypt status | sed 's/^/STATUS-TEXT /'

# A marker through the volume; the host looks for it in the raw disk images.
i=0
while [ $i -lt 4000 ]; do echo "EPHEMCRYPT-PLAINTEXT-MARKER-$i"; i=$((i + 1)); done >/sysroot/var/log/marker.log
sync
before=$(md5sum </run/ephemcrypt/status.json)
ephemcrypt setup --newroot /sysroot
check second-run-exit-0 test $? = 0
check second-run-keeps-data sh -c 'test "$(grep -c EPHEMCRYPT-PLAINTEXT-MARKER /sysroot/var/log/marker.log)" = 4000'
check second-run-keeps-status test "$(md5sum </run/ephemcrypt/status.json)" = "$before"
check second-run-one-stripe sh -c 'test "$(dmsetup ls | grep -c ephemcrypt)" = 4'
swapoff -a
umount /sysroot/var/log /sysroot/tmp /sysroot/var/tmp /sysroot/mnt/ephemcrypt
sync
echo 3 >/proc/sys/vm/drop_caches
vm_done
