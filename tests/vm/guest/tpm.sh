#!/bin/sh
# /usr/local/sbin/vmtest of tpm.sh: ephemcrypt measured its outcome in dracut's systemd initrd
# (rd.ephemcrypt.measure=auto, PCR 15). Prints what the host checks: the measurement log
# ("TPMLOG " and its base64), PCR 15 of every bank as the TPM holds it now ("PCR15 BANK HEX",
# tpm2_pcrread) and the status ("STATUS "); checks here what needs the guest:
# vmtest=ok: result ok, measured; the key (from the escrow, decrypted with /root/id.txt) is in
#   neither the log, the status nor the journal.
# vmtest=fallback: a third disk expected and missing: degraded, tmpfs, the event names the policy.
# vmtest=held: rd.ephemcrypt.hold=1: held, measured.
# vmtest=notpm: no TPM: setup still makes the volume and the status says not measured.
# shellcheck source=lib.sh
. /lib/vmtest.sh

state=$(systemctl is-system-running --wait)
boot=$(sed -n 's/.* vmtest=\([a-z]*\).*/\1/p' /proc/cmdline)
status=$(ephemcrypt status 2>&1)
echo "$status" | sed 's/^/STATUS /'
status_has() { printf "%s\n" "$status" | grep -q "$1"; }
log=/run/log/systemd/tpm2-measure.log
check boot-running test "$state" = running
if [ -e "$log" ]; then
	echo "TPMLOG $(base64 -w0 "$log")"
	# systemd's protocol: the sticky bit is set only while a record is being appended.
	check log-mode-0600 test "$(stat -c %a "$log")" = 600
fi
if [ -e /dev/tpmrm0 ]; then
	TPM2TOOLS_TCTI=device:/dev/tpmrm0 tpm2_pcrread 2>&1 |
		awk '/^ *[a-z0-9]+:$/ { b = $1; sub(":", "", b) } /^ *15 *:/ { print "PCR15", b, tolower($2) }'
fi

case $boot in
ok)
	check status-ok status_has '^result: ok'
	check measured status_has '^measured: PCR 15 ('
	check event-ok status_has '"result":"ok","policy":null,"died":false,"cipher":"aes-xts-plain64","key_bits":512'
	check event-serials status_has '"serials":\["EPH-A","EPH-B"\]'
	key=$(age -d -i /root/id.txt /run/ephemcrypt/escrow.age | od -An -v -tx1 | tr -d ' \n')
	check key-is-64-bytes test "${#key}" = 128
	# Every 8-byte piece of the key, in hex (either case).
	nokey() {
		i=0
		while [ $i -lt 128 ]; do
			piece=$(echo "$key" | cut -c$((i + 1))-$((i + 16)))
			if grep -qiF "$piece" "$1"; then echo "key bytes from $((i / 2)) in $1" && return 1; fi
			i=$((i + 16))
		done
	}
	journalctl -b -q --no-pager -o export >/run/journal.txt
	check no-key-in-log nokey "$log"
	check no-key-in-status nokey /run/ephemcrypt/status.json
	check no-key-in-journal nokey /run/journal.txt
	rm -f /run/journal.txt
	;;
fallback)
	check status-degraded status_has '^result: degraded (2 eligible disk(s), 3 expected'
	check var-log-on-tmpfs test "$(findmnt -n -o FSTYPE /var/log)" = tmpfs
	check measured status_has '^measured: PCR 15 ('
	check event-degraded status_has '"result":"degraded","policy":"tmpfs","died":false'
	;;
held)
	check status-held status_has '^result: held'
	check measured status_has '^measured: PCR 15 ('
	check event-held status_has '"result":"held","policy":null'
	;;
notpm)
	check no-tpm test ! -e /dev/tpm0
	check status-ok status_has '^result: ok'
	check not-measured status_has '^not measured (PCR 15): no TPM'
	check no-log test ! -e "$log"
	;;
*) fail boot "no vmtest=ok|fallback|held|notpm on the command line" ;;
esac
vm_done
