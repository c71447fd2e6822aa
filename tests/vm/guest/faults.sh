#!/bin/sh
# /init of the fault matrix and the crash tests (tests/vm/faults.sh). One case per boot, named by
# vmtest.case=NAME on the kernel command line. The real root is an ext4 disk (/dev/vda) mounted
# read-only, as the boot chains do; two NVMe disks EPH-A and EPH-B are the ephemeral disks. This
# init prepares the case's fault (a real one where it can be made from outside: a module or a
# program missing from the image, a read-only root disk, a full /run, a mapping name taken, a
# keyring quota; otherwise EPHEMCRYPT_FAULT, which only the test build of the binary reads),
# runs `ephemcrypt setup`, writes what the case expects to /run/vmtest.expect, and switches to
# the real root, where /sbin/vmcheck (guest/faults-root.sh) checks that nothing is left
# half-made. With on-failure=halt it checks here instead, as the boot chain would stop here.
# shellcheck disable=SC2016 # sh -c '...' expands in the guest
# shellcheck source=lib.sh
. /lib/vmtest.sh
vm_init
modprobe -q ext4
c=$(sed -n 's/.*vmtest\.case=\([^ ]*\).*/\1/p' /proc/cmdline)
vm_wait_dev /dev/vda /dev/nvme0n1 /dev/nvme1n1

conf=/run/ephemcrypt.conf
printf 'devices = serial:EPH-*\nexpect = 2\nmin-size = 128M\nswap = 16M\nwait = 10\n' >$conf
# What the case expects: the result, the failed step (a prefix; none for a plan that refuses),
# a fragment of the reason, the setup exit code, and a foreign mapping that must survive.
fault='' result=degraded step='' reason='' rc_want=0 foreign='' setro='' taken='' refused='' headers=yes
untouched=''
bin=ephemcrypt
module_gone() {
	find /lib/modules -name "$1.ko*" -exec rm -f {} \;
	[ -z "$(find /lib/modules -name "$1.ko*")" ] || fail "$c" "module $1 is still in the image"
	grep -q "^$1 " /proc/modules && fail "$c" "module $1 is loaded already"
}
case $c in
# A disk detached through qemu's monitor while setup waits for a third one.
wait-detach)
	printf 'expect = 3\nwait = 25\n' >>$conf
	reason='1 eligible disk(s), 3 expected' ;;
# The members' headers (the second one fails: before any is written), then each mapping: create, table load, resume, its /dev/mapper node.
header) fault='write header to#2=EIO' step='headers on 2 disk(s)' reason='(EIO)' ;;
stripe-create) fault='device-mapper create#1=ENOMEM' step='mapping ephemcrypt-stripe' reason='(ENOMEM)' ;;
stripe-load) fault='device-mapper table load#1=EINVAL' step='mapping ephemcrypt-stripe' reason='(EINVAL)' ;;
random-key) fault='random key=EIO' step='crypt mapping ephemcrypt' reason='(EIO)' ;;
crypt-load) fault='device-mapper table load#2=EINVAL' step='crypt mapping ephemcrypt' reason='(EINVAL)' ;;
crypt-resume) fault='device-mapper resume#2=EIO' step='crypt mapping ephemcrypt' reason='(EIO)' ;;
swap-node) fault='create device node#3=ENOSPC' step='mapping ephemcrypt-swap' reason='(ENOSPC)' ;;
data-create) fault='device-mapper create#4=ENOMEM' step='mapping ephemcrypt-data' reason='(ENOMEM)' ;;
# Real: the cipher's module is not in the image (serpent: aesni_intel brings its own xts(aes));
# the root user's key quota is spent.
crypt-module)
	echo 'cipher = serpent-xts-plain64' >>$conf
	module_gone serpent_generic
	step='crypt mapping ephemcrypt' reason='the kernel does not offer xts(serpent)' ;;
key-quota)
	echo 1 >/proc/sys/kernel/keys/root_maxbytes
	step='crypt mapping ephemcrypt' reason='(EDQUOT)' ;;
# Real: a mapping of that name exists already (not ours: it must survive the rollback).
name-taken)
	modprobe dm-mod
	dmsetup create ephemcrypt-swap --table '0 8 error' || fail name-taken "dmsetup create failed"
	foreign=ephemcrypt-swap untouched=yes reason='a mapping named ephemcrypt-swap (' ;;
swap-signature) fault='write swap signature=EIO' step='swap on' reason='(EIO)' ;;
swapon) fault='swapon=EINVAL' step='swap on' reason='(EINVAL)' ;;
# Real: mkfs is not in the image; mkfs fails.
mkfs-missing)
	rm -f /sbin/mkfs.ext4 /sbin/mke2fs
	step='mkfs ext4' reason='not found on PATH' ;;
mkfs-fails)
	rm -f /sbin/mkfs.ext4
	printf '#!/bin/sh\necho "mkfs.ext4: Could not allocate block in ext2 filesystem" >&2\nexit 1\n' >/sbin/mkfs.ext4
	chmod 755 /sbin/mkfs.ext4
	step='mkfs ext4' reason='Could not allocate block' ;;
# Real: the root disk is read-only (a verity root, say): the mount point cannot be made.
remount-rw) setro=1 step='remount /sysroot read-write' reason='(EACCES)' ;;
# Real: the mount point lies under a regular file.
mount-point-file)
	echo 'mount = /etc/hostname/ephemcrypt' >>$conf
	step='mkdir /sysroot/etc/hostname' reason='(ENOTDIR)' ;;
# Real: the file system's module is not in the image (mkfs.xfs is).
mount-fs-missing)
	echo 'fs = xfs' >>$conf
	module_gone xfs
	step='mount /sysroot/mnt/ephemcrypt' reason='(ENODEV)' ;;
skeleton) fault='copy the directories of@/var/tmp=ENOSPC' step='bind /sysroot/var/tmp' reason='(ENOSPC)' ;;
bind) fault='bind-mount#1=EINVAL' step='bind /sysroot/var/log' reason='(EINVAL)' ;;
remount-ro) fault='remount#2=EBUSY' step='remount /sysroot read-only' reason='(EBUSY)' ;;
# Removes that fail with EBUSY twice (udev probing) are tried again: nothing is left.
remove-busy) fault='run=EIO;device-mapper remove#1=EBUSY;device-mapper remove#2=EBUSY' step='mkfs ext4' reason='(EIO)' ;;
# Real: /run/systemd/system cannot be made, for the units of a root whose fstab mounts /var.
unit)
	mkdir -p /run/systemd
	: >/run/systemd/system
	step='unit ' reason='(ENOTDIR)' ;;
# Real: /run is full; the status cannot be written (the console says so instead).
status-full)
	mkdir -p /run/ephemcrypt
	mount -t tmpfs -o size=8k tmpfs /run/ephemcrypt
	dd if=/dev/zero of=/run/ephemcrypt/fill bs=1k count=64 2>/dev/null
	step='write /run/ephemcrypt/status.json' reason='(ENOSPC)' ;;
# The other failure policies.
continue)
	echo 'on-failure = continue' >>$conf
	fault='run=EIO' step='mkfs ext4' reason='(EIO)' ;;
halt)
	echo 'on-failure = halt' >>$conf
	fault='bind-mount#2=EIO' step='bind /sysroot/tmp' reason='(EIO)' result=failed rc_want=1 ;;
# Real, caught by the plan: 4096-byte logical blocks, 512-byte encryption sectors asked for.
sector-size)
	echo 'sector-size = 512' >>$conf
	reason='larger than the encryption sector size' ;;
# A crash (the host resets the machine) while setup hangs before a step, or while mkfs runs.
crash-headers) fault='device-mapper create#1=hang' ;;
crash-crypt) fault='device-mapper create#3=hang' ;;
crash-mkfs) # the reset comes while mkfs runs or right after, before setup goes on
	mv /sbin/mke2fs /sbin/mke2fs.real
	rm -f /sbin/mkfs.ext4
	printf '#!/bin/sh\n/sbin/mke2fs.real -t ext4 "$@" &\necho "VMTEST STAGE mkfs running" >/dev/console\nwait\nsleep 10\n' >/sbin/mkfs.ext4
	chmod 755 /sbin/mkfs.ext4 ;;
crash-binds) fault='bind-mount#2=hang' ;;
crash-status) fault='write@status.json=hang' ;;
# The boot after a crash, on the same disks and root: the disks are taken back by their headers.
retake) result=ok taken='previous ephemcrypt volume' ;;
# An upgrade from the previous release, whose volumes have no header, on the same disks: that
# release makes its volume; the next refuses the disks as unrecognised data (and writes nothing
# to them) until force=yes is set once; after that, its headers take them back.
upgrade-prev) bin=ephemcrypt-prev result=ok headers=no ;;
upgrade-next) untouched=yes reason='0 eligible disk(s), 2 expected' refused='holds data that is neither blank nor an ephemcrypt volume' ;;
upgrade-force)
	echo 'force = yes' >>$conf
	result=ok taken='forced (force=yes) over unrecognised data' ;;
upgrade-after) result=ok taken='previous ephemcrypt volume' ;;
*)
	fail case "unknown case '$c'"
	vm_done ;;
esac
policy=$(sed -n 's/^on-failure = //p' $conf)
[ -z "$setro" ] || blockdev --setro /dev/vda
mkdir -p /sysroot
mount -t ext4 -o ro /dev/vda /sysroot || fail mount-root "cannot mount /dev/vda"
# Headers before setup, to tell a rewritten header from the last boot's.
for d in /dev/nvme0n1 /dev/nvme1n1; do head -c 4096 $d | md5sum; done >/run/headers.before
ephemcrypt plan --config $conf --newroot /sysroot >/run/plan.txt 2>&1
sed 's/^/PLAN /' /run/plan.txt
echo "VMTEST STAGE setup ($c)"
{
	EPHEMCRYPT_FAULT=$fault $bin setup --config $conf --newroot /sysroot
	echo $? >/run/setup.rc
} 2>&1 | tee /run/setup.log
case $c in crash-*)
	fail crash "setup ended (exit $(cat /run/setup.rc)) before the host reset the machine"
	vm_done ;;
esac
cat >/run/vmtest.expect <<EOF
case='$c'
result='$result'
step='$step'
reason='$reason'
rc_want=$rc_want
rc=$(cat /run/setup.rc)
foreign='$foreign'
policy='${policy:-tmpfs}'
taken='$taken'
refused='$refused'
headers='$headers'
untouched='$untouched'
EOF
if [ "$policy" = halt ]; then
	# The boot chain stops here (its emergency shell): check from the initramfs (vmcheck ends
	# the test and powers off).
	R=/sysroot exec sh /sysroot/sbin/vmcheck
fi
for m in /dev /proc /sys /run; do mount --move $m /sysroot$m; done
exec switch_root /sysroot /sbin/vmcheck
