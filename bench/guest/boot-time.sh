#!/bin/bash
# /usr/local/sbin/vmtest of bench/boot-time.sh: after multi-user.target, one line with the boot's
# times (systemd-analyze), where /var/log is, and ephemcrypt's own setup time when it ran.
# shellcheck source=tests/vm/guest/lib.sh
. /lib/vmtest.sh
set -u
until systemd-analyze >/dev/null 2>&1; do sleep 0.2; done # "boot not finished yet"
line=$(systemd-analyze | head -n1)
failed=$(systemctl --failed --no-legend --plain | awk '{ print $1 }' | paste -sd, -)
src=$(findmnt -n -o SOURCE /var/log || echo none)
setup_ms=''
if [[ -f /run/ephemcrypt/status.json ]]; then
	setup_ms=$(grep -o '"ms": *[0-9]*' /run/ephemcrypt/status.json | awk -F: '{ s += $2 } END { print s }')
fi
for u in ${failed//,/ }; do # why, for the console
	journalctl -b -u "$u" --no-pager -o cat 2>/dev/null | tail -n 15 | sed "s/^/BOOTLOG $u: /"
done
echo "BOOTTIME {\"analyze\":\"$line\",\"var_log\":\"$src\",\"failed\":\"$failed\",\"setup_ms\":\"$setup_ms\"}"
vm_done
