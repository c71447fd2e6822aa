#!/bin/sh
# /init of the harness self-test (smoke.sh): kernel, modules, disks and tools work in the VM.
# shellcheck disable=SC2016 # sh -c '...' and awk programs expand in the guest
# shellcheck source=lib.sh
. /lib/vmtest.sh
vm_init
vm_wait_dev /dev/nvme0n1 /dev/nvme1n1 /dev/vda

# dm-mod must be loaded by hand (no static node); the rest is autoloaded by the kernel
# through /sbin/modprobe (busybox) below, as a real initrd would.
check modprobe-dm-mod modprobe dm-mod
if [ ! -c /dev/mapper/control ]; then
	mkdir -p /dev/mapper
	mknod /dev/mapper/control c "$(cut -d: -f1 /sys/class/misc/device-mapper/dev)" \
		"$(cut -d: -f2 /sys/class/misc/device-mapper/dev)"
	echo "note: created /dev/mapper/control by hand"
fi
check dm-control test -c /dev/mapper/control

# NVMe identity as the kernel shows it; [] show padding. The serials come from smoke.sh.
for d in /sys/block/nvme*; do
	n=${d##*/}
	for a in serial model firmware_rev; do echo "info: $n/device/$a=[$(cat "$d/device/$a")]"; done
	echo "info: $n/device -> $(readlink -f "$d/device") dev=$(cat "$d/dev") size=$(cat "$d/size")"
done
serials=$(cat /sys/block/nvme*/device/serial | sed 's/ *$//' | sort | tr '\n' ' ')
check nvme-serials test "$serials" = "SMOKE-A SMOKE-B "
check nvme-model sh -c 'cat /sys/block/nvme0n1/device/model | grep -q "^QEMU NVMe Ctrl"'
check virtio-disk test -b /dev/vda

check ext4-features test -r /sys/fs/ext4/features/lazy_itable_init
check mkfs-ext4 mkfs.ext4 -q -F -E nodiscard,lazy_itable_init=1,lazy_journal_init=1 /dev/nvme0n1
check blkid-ext4 sh -c 'blkid -o value -s TYPE /dev/nvme0n1 | grep -qx ext4'
check mount-ext4 sh -c 'mkdir -p /mnt/a && mount -t ext4 /dev/nvme0n1 /mnt/a && echo hi >/mnt/a/f && umount /mnt/a'
check mkfs-xfs mkfs.xfs -q -f -K /dev/nvme1n1
check blkid-xfs sh -c 'blkid -o value -s TYPE /dev/nvme1n1 | grep -qx xfs'
check mount-xfs sh -c 'mkdir -p /mnt/b && mount -t xfs /dev/nvme1n1 /mnt/b && umount /mnt/b'

# dm-crypt over dm-striped, devices as major:minor, key from the kernel keyring (logon type).
# keyctl runs in its own process: with no session keyring, @s would be a new one that dies
# with it. @us (the user session keyring) is what request_key() searches in that case.
sz=$(($(cat /sys/block/nvme0n1/size) / 1024 * 1024))
check dm-striped dmsetup create smoke-stripe --table \
	"0 $((sz * 2)) striped 2 1024 $(cat /sys/block/nvme0n1/dev) 0 $(cat /sys/block/nvme1n1/dev) 0"
check keyctl-logon sh -c 'head -c 64 /dev/urandom | keyctl padd logon smoke:key @us >/dev/null'
check dm-crypt dmsetup create smoke-crypt --table "0 $((sz * 2)) crypt aes-xts-plain64 :64:logon:smoke:key 0 \
$(dmsetup info -c --noheadings -o major,minor smoke-stripe) 0 3 no_read_workqueue no_write_workqueue sector_size:4096"
check autoload sh -c 'grep -q "^dm_crypt " /proc/modules && grep -q "^aesni_intel " /proc/modules'
echo "info: crypt table $(dmsetup table smoke-crypt)"
echo "info: dm $(dmsetup version | tr '\n' ' ')"
echo "info: targets $(dmsetup targets | tr '\n' ' ')"
echo "info: /sys/module/dm_crypt: $(cd /sys/module/dm_crypt && echo *)"
echo "info: /dev/mapper after dmsetup create (no udev): $(cd /dev/mapper && echo *)"
check dm-mknodes dmsetup mknodes
check key-invalidate sh -c 'keyctl invalidate "$(keyctl search @us logon smoke:key)"'
check mkfs-crypt mkfs.ext4 -q -F -E nodiscard,lazy_itable_init=1,lazy_journal_init=1 /dev/mapper/smoke-crypt
check mount-crypt sh -c 'mount /dev/mapper/smoke-crypt /mnt/a && echo hi >/mnt/a/f && umount /mnt/a'
check dm-remove dmsetup remove smoke-crypt smoke-stripe

# xts(aes) registered and self-tested (aesni_intel registers it directly).
check crypto-xts-aes awk '/^name/ { n = $3 } /^selftest/ && n == "xts(aes)" && $3 == "passed" { ok = 1 } END { exit !ok }' /proc/crypto
echo "info: xts(aes) drivers: $(awk '/^name/ { n = $3 } /^driver/ && n == "xts(aes)" { printf "%s ", $3 }' /proc/crypto)"
# Every module in the initrd loads.
check modprobe-all sh -c 'for m in $(sed "s|:.*||; s|.*/||; s|\.ko$||" /lib/modules/*/modules.dep); do modprobe $m || exit; done'
echo "info: modules $(cut -d' ' -f1 /proc/modules | sort | tr '\n' ' ')"
echo "info: $(dmesg | grep -m1 'crng init')"
vm_done
