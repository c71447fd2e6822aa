#!/bin/sh
# dracut pre-pivot hook (shell init): the real root is mounted at $NEWROOT. All logic is in the
# binary; this only branches on its exit status: 0 boot on, 1 on-failure=halt. Any other status
# means setup ended without finishing (128+N: killed by signal N; an abort is 134): a second
# invocation undoes what it left and applies the failure policy. If that one does not exit 0
# either, the machine powers off: it never goes on with the dead run's work half done.
# shellcheck source=/dev/null # dracut's own, in the image
type die >/dev/null 2>&1 || . /lib/dracut-lib.sh

/usr/sbin/ephemcrypt setup --newroot "${NEWROOT:-/sysroot}"
rc=$?
if [ $rc -gt 1 ]; then
    warn "ephemcrypt: setup ended with status $rc without finishing: undoing what it left, then on-failure"
    /usr/sbin/ephemcrypt setup --newroot "${NEWROOT:-/sysroot}" --died $rc
    rc=$?
fi
# Not 0 (1: on-failure=halt; or the second invocation died too): the machine powers off, as the
# systemd unit's FailureAction=poweroff-force does; the status is in /run/ephemcrypt. Only
# where the kernel has no sysrq to do it does dracut's emergency path stop the boot instead.
if [ $rc -ne 0 ]; then
    echo "ephemcrypt: setup exited with status $rc (1: on-failure=halt): powering the machine off" >&2
    sync
    echo o > /proc/sysrq-trigger
    sleep 30
    die "ephemcrypt: setup exited with status $rc (1: on-failure=halt) and the machine did not power off"
fi
unset rc
