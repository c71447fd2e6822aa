#!/bin/sh
# dracut pre-pivot hook (shell init): the real root is mounted at $NEWROOT. All logic is in the
# binary; a non-zero exit means on-failure=halt, so take dracut's emergency path.
type die >/dev/null 2>&1 || . /lib/dracut-lib.sh

if ! /usr/sbin/ephemcrypt setup --newroot "${NEWROOT:-/sysroot}"; then
    die "ephemcrypt: setup failed and on-failure=halt; see /run/ephemcrypt/status.json"
fi
