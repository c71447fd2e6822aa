#!/bin/sh
# /usr/local/sbin/vmtest of guard.sh: a boot of dracut's systemd initrd into a Debian root with
# D-Bus (logind), guard = yes. Checks: the guard's lock is held and counted (status, metrics);
# `systemctl --check-inhibitors=yes reboot` typed at a terminal is refused; ephemcrypt-check.service and
# ephemcrypt-metrics.service work in their sandboxes (device-mapper asked, the metrics written
# into a textfile directory another account owns, through none of the links it planted there).
# Then "VMTEST POWERDOWN-NOW": the host presses the ACPI power button (qemu's system_powerdown,
# as a cloud's stop does) and expects the machine to power off cleanly within 60 s; logind's
# lines are copied to the console meanwhile.
# shellcheck disable=SC2016 # sh -c '...' expands in the guest
# shellcheck source=lib.sh
. /lib/vmtest.sh

state=$(systemctl is-system-running --wait)
# The guard is Type=simple: started once forked, its lock taken a moment later.
i=0
while ! systemd-inhibit --list --no-pager | grep -q '^ephemcrypt ' && [ $i -lt 30 ]; do
	sleep 1
	i=$((i + 1))
done
status=$(ephemcrypt status 2>&1)
echo "$status" | sed 's/^/STATUS /'
systemctl --failed --no-pager --plain --no-legend | sed 's/^/FAILED-UNIT /'
systemd-inhibit --list --no-pager | sed 's/^/INHIBIT /'
for f in /run/systemd/inhibit/*; do
	[ -f "$f" ] && sed "s|^|INHIBIT-FILE $f |" "$f"
done
for p in $(pidof systemd-inhibit); do sed "s|^|CGROUP $p |" "/proc/$p/cgroup"; done
check boot-running test "$state" = running
check status-ok sh -c 'echo "$1" | grep -q "^result: ok"' _ "$status"
check guard-active sh -c 'echo "$1" | grep -q "^guard: ephemcrypt-guard.service: active, reboots are blocked"' _ "$status"
check guard-sandboxed sh -c 'test "$(systemctl show -P ProtectSystem ephemcrypt-guard.service)" = strict'
check logind-dropin grep -qx 'PowerKeyIgnoreInhibited=yes' /run/systemd/logind.conf.d/ephemcrypt-guard.conf

# A reboot typed at a terminal (script(1) gives systemctl one): refused, naming the lock.
# systemd 252's systemctl checks inhibitors for root only when asked (--check-inhibitors=yes;
# from systemd 257 on logind enforces them for root too): a plain root `systemctl reboot` here
# would reboot, so the test asks as a careful operator (or a newer systemd) does.
if systemd-inhibit --list --no-pager | grep -q ephemcrypt; then
	script -qec 'systemctl --check-inhibitors=yes reboot' /dev/null >/run/reboot.out 2>&1
	rc=$?
	sed 's/^/REBOOT-REFUSED /' /run/reboot.out
	check interactive-reboot-refused sh -c 'test "$1" != 0 && grep -q "inhibit" /run/reboot.out' _ "$rc"
else
	fail interactive-reboot-refused "no inhibitor lock of ephemcrypt: not trying a reboot"
fi

# The sandboxed units. The textfile directory belongs to another account (prometheus on Debian;
# nobody here), which planted links at the final name and at the old fixed temporary name.
systemctl daemon-reload
systemctl start ephemcrypt-check.service
journalctl -b -q -o cat -u ephemcrypt-check.service | sed 's/^/CHECK /'
check check-unit-ok sh -c 'systemctl is-active -q ephemcrypt-check.service &&
	journalctl -b -q -o cat -u ephemcrypt-check.service | grep -q "ephemcrypt: ok: 2 disk(s) encrypted"'
dir=/var/lib/prometheus/node-exporter
mkdir -p "$dir" && chown nobody:nogroup "$dir" && chmod 755 "$dir"
echo precious >/root/victim
setpriv --reuid=nobody --regid=nogroup --clear-groups sh -c "ln -s /root/victim $dir/ephemcrypt.prom &&
	ln -s /root/victim $dir/.ephemcrypt.prom.tmp"
systemctl start ephemcrypt-metrics.service
journalctl -b -q -o cat -u ephemcrypt-metrics.service | sed 's/^/METRICS-UNIT /'
sed 's/^/METRICS /' "$dir/ephemcrypt.prom"
check metrics-written grep -qx 'ephemcrypt_setup_result{result="ok"} 1' "$dir/ephemcrypt.prom"
check metrics-mappings-asked sh -c 'grep -q "^ephemcrypt_mappings{state=\"live\"} [1-9]" "$1" &&
	grep -qx "ephemcrypt_mappings{state=\"unknown\"} 0" "$1"' _ "$dir/ephemcrypt.prom"
check metrics-guard-active grep -qx 'ephemcrypt_guard_active 1' "$dir/ephemcrypt.prom"
check metrics-no-write-through-links sh -c 'test "$(cat /root/victim)" = precious && ! test -L "$1/ephemcrypt.prom" &&
	test -L "$1/.ephemcrypt.prom.tmp"' _ "$dir"
check metrics-file-mode test "$(stat -c %a "$dir/ephemcrypt.prom")" = 644

# The cloud's stop: logind's lines to the console while the host presses the power button.
# (guard_no_dropin on the command line: the drop-in removed and logind restarted, to see the
# test fail without the fix.)
if grep -q guard_no_dropin /proc/cmdline; then
	rm /run/systemd/logind.conf.d/ephemcrypt-guard.conf && systemctl restart systemd-logind.service
	echo "WITHOUT-THE-FIX: logind restarted without the drop-in"
fi
grep -B1 -A4 'Power Button' /proc/bus/input/devices | sed 's/^/INPUT /'
check power-button-device grep -q 'Name="Power Button"' /proc/bus/input/devices
journalctl -f -n 0 -o cat -u systemd-logind.service | sed -u 's/^/LOGIND /' &
sleep 1
echo "VMTEST POWERDOWN-NOW"
sleep 600
fail powerdown "still running 600 s after the power button"
