#!/bin/sh
# dracut pre-pivot hook (shell init): the real root is mounted at $NEWROOT. All logic is in the
# binary; a non-zero exit (on-failure=halt, or anything unexpected) takes dracut's emergency path.
type die >/dev/null 2>&1 || . /lib/dracut-lib.sh

/usr/sbin/ephemcrypt setup --newroot "${NEWROOT:-/sysroot}"
rc=$?
# 1: on-failure=halt; anything else (a usage error, a crash) fails closed too.
[ $rc -eq 0 ] || die "ephemcrypt: setup exited with status $rc (1: on-failure=halt); see /run/ephemcrypt/status.json"
unset rc
