#!/bin/sh
# /sbin/init of the busybox real root in the death tests (tests/vm/death.sh): setup was killed in
# the initramfs (the fault-injection build, ephemcrypt.fault=OP@OBJECT=SIGNAL), the boot hook's
# second invocation (setup --died) undid what it left and applied on-failure=tmpfs. Checks, after
# switch_root: tmpfs on every bind target, no mapping, no swap, no mount of the volume, the
# mount point it made gone, and the status: degraded, "setup killed by signal N (SIGX) at step
# 'STEP'", the failed step. vmtest.death=N:STEP-WORD on the kernel command line says what to expect.
# shellcheck source=lib.sh
. /lib/vmtest.sh
spec=$(sed -n 's/.*vmtest\.death=\([^ ]*\).*/\1/p' /proc/cmdline)
sig=${spec%%:*} step=$(echo "${spec#*:}" | sed 's/%20/ /g')
echo "info: death by signal $sig at a step with '$step'"
grep -E ' (/|/mnt/ephemcrypt|/var/log|/tmp|/var/tmp) ' /proc/mounts | sed 's/^/info: mount /'
ephemcrypt status >/run/status.txt
echo "status-exit=$?" >>/run/status.txt
sed 's/^/STATUS /' /run/status.txt
ephemcrypt status --json | grep '"failed_step"' | sed 's/^/STATUS /'

check real-root grep -qx NAME=busybox-root /etc/os-release
check status-degraded grep -q '^result: degraded' /run/status.txt
check status-says-killed grep -q "setup killed by signal $sig (SIG[A-Z]*) at step '[^']*$step" /run/status.txt
check failed-step sh -c "ephemcrypt status --json | grep -q '\"failed_step\": \"[^\"]*$step'"
check status-says-undone grep -q 'what it had made was undone' /run/status.txt
for t in /var/log /tmp /var/tmp; do
	check "tmpfs-on-$t" grep -q "^tmpfs $t tmpfs " /proc/mounts
done
# shellcheck disable=SC2016 # expands in sh -c
check tmp-1777 sh -c 'test "$(stat -c %a /tmp)" = 1777'
# shellcheck disable=SC2016 # expands in sh -c
check no-mapping sh -c 'for d in /sys/block/dm-*; do [ ! -e "$d" ] || exit 1; done'
check no-swap sh -c '! grep -q "^/" /proc/swaps'
check volume-not-mounted sh -c '! grep -q " /mnt/ephemcrypt " /proc/mounts'
check mount-point-made-is-gone test ! -e /mnt/ephemcrypt
check no-progress-record test ! -e /run/ephemcrypt/progress
check kmsg-names-death sh -c "dmesg | grep -q 'ephemcrypt: .*setup killed by signal $sig'"
sync
vm_done
