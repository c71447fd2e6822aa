#!/bin/sh
# /sbin/init of the busybox real root in the mkinitcpio boot test (tests/vm/mkinitcpio.sh): after
# switch_root, what the late hook set up in the initramfs is in place. The root is read-only.
# shellcheck disable=SC2016 # sh -c '...' expands in the guest
# shellcheck source=lib.sh
. /lib/vmtest.sh
check pid-1 test $$ = 1
check api-fs-moved sh -c 'test -r /proc/mounts && test -c /dev/null && test -d /run/ephemcrypt'
check root-ro sh -c 'grep -q "^/dev/vda / ext4 ro," /proc/mounts'
check volume-mounted sh -c 'grep -q "^/dev/mapper/ephemcrypt-data /mnt/ephemcrypt ext4 rw," /proc/mounts'
for t in /var/log /tmp /var/tmp; do
	check "bind-$t" sh -c "grep -q '^/dev/mapper/ephemcrypt-data $t ext4 rw,' /proc/mounts"
done
check image-log-hidden test ! -e /var/log/image.log
check no-link-conflict no_link_conflict
# No udev here: ephemcrypt made the links udev would make, so that a real root's udev can take
# them over (a node there is what it cannot replace).
check mapper-links mapper_links ephemcrypt-stripe ephemcrypt ephemcrypt-swap ephemcrypt-data
check tmp-1777 sh -c 'test "$(stat -c %a /tmp)" = 1777 && test "$(stat -c %a /var/tmp)" = 1777'
check log-writable sh -c 'echo hello >/var/log/boot.log && grep -q hello /mnt/ephemcrypt/var/log/boot.log'
check swap-on-volume swap_on ephemcrypt-swap
check status-ok grep -q '"result": "ok"' /run/ephemcrypt/status.json
check status-command sh -c 'ephemcrypt status | grep -q "mapping /dev/mapper/ephemcrypt ([0-9:]*): live"'
ephemcrypt status | sed 's/^/    /'
vm_done
