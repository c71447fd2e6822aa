#!/bin/sh
# /usr/local/sbin/vmtest of the soak test (tests/vm/soak.sh): boot N of many on the same disks and
# root (vmtest.boot=N on the kernel command line); ephemcrypt ran in the dracut systemd initrd.
# Checks: setup ok; the file the previous boot wrote to /var/log is gone (a fresh volume); no
# keyring entry; a known plaintext block, written through the volume at the same place in every
# boot, is ciphertext on the raw disks that differs from the previous boot's (a new key), and
# reads back as the plaintext through the volume. The previous boot's ciphertext hash is kept on
# the root disk (/var/lib/soak, not on the volume). Prints "SOAK ..." lines for the host.
# shellcheck disable=SC2016 # sh -c '...' expands in the guest
# shellcheck source=lib.sh
. /lib/vmtest.sh

n=$(sed -n 's/.*vmtest\.boot=\([0-9]*\).*/\1/p' /proc/cmdline)
state=$(systemctl is-system-running --wait)
check boot-finished-running test "$state" = running
status=$(ephemcrypt status 2>&1)
echo "$status" | sed 's/^/STATUS-TEXT /'
check status-ok sh -c 'echo "$1" | grep -q "^result: ok"' _ "$status"
check previous-boot-file-gone sh -c 'test -z "$(ls /var/log | grep "^soak-boot-")"'
echo "written in boot $n" >"/var/log/soak-boot-$n"
check no-keyring-entry sh -c '! grep -q ephemcrypt /proc/keys'

# The known plaintext: 4 KiB, the same in every boot, at 4 MiB into the swap slice (swap off).
swapoff /dev/mapper/ephemcrypt-swap
yes EPHEMCRYPT-SOAK-KNOWN-PLAINTEXT-BLOCK | head -c 4096 >/run/plain
# Where that lands on the raw disks, from the live tables: swap slice -> crypt -> stripe -> member.
swap_off=$(dmsetup table ephemcrypt-swap | awk '{ print $5 }')
crypt_off=$(dmsetup table ephemcrypt | awk '{ print $8 }')
# shellcheck disable=SC2046 # the table's fields, split on purpose
set -- $(dmsetup table ephemcrypt-stripe) # 0 LEN striped COUNT CHUNK DEV OFF DEV OFF ...
count=$4 chunk=$5
shift 5
s=$((crypt_off + swap_off + 8192)) # 4 MiB in 512-byte sectors
i=$((s / chunk % count))
shift $((i * 2))
dev=$1 off=$2
# shellcheck disable=SC2017 # integer division on purpose: the stripe's chunk row
raw_sector=$((off + s / chunk / count * chunk + s % chunk))
dd if=/run/plain of=/dev/mapper/ephemcrypt-swap bs=4096 seek=1024 count=1 oflag=direct conv=notrunc 2>/dev/null
dd if="/dev/block/$dev" bs=512 skip=$raw_sector count=8 iflag=direct 2>/dev/null >/run/cipher
check reads-back-as-plaintext sh -c 'dd if=/dev/mapper/ephemcrypt-swap bs=4096 skip=1024 count=1 iflag=direct 2>/dev/null | cmp -s - /run/plain'
check raw-is-not-plaintext sh -c '! cmp -s /run/cipher /run/plain && ! grep -aq EPHEMCRYPT-SOAK /run/cipher'
cipher=$(sha256sum </run/cipher | cut -c1-16)
mkdir -p /var/lib/soak
if [ -s /var/lib/soak/cipher ]; then
	check ciphertext-differs-from-previous-boot test "$cipher" != "$(cat /var/lib/soak/cipher)"
fi
echo "$cipher" >/var/lib/soak/cipher
grep -q "^$cipher\$" /var/lib/soak/all 2>/dev/null && fail ciphertext-never-seen "$cipher appeared in an earlier boot"
echo "$cipher" >>/var/lib/soak/all
sync
# setup's time: the sum of its steps' times, from the status
ms=$(ephemcrypt status --json | awk -F': ' '/"ms":/ { gsub(/[^0-9]/, "", $2); t += $2 } END { print t + 0 }')
echo "SOAK boot=$n setup_ms=$ms cipher=$cipher raw=$dev+$raw_sector $(systemd-analyze | head -n1)"
vm_done
