#!/bin/bash
# soak.sh [BOOTS]: BOOTS (default 20) boots in a row of the whole boot chain (Debian's dracut with
# its systemd module, a Debian 12 systemd root) on the same two disks and the same root disk, as
# a machine that reboots. guest/soak.sh checks each boot (setup ok, the previous boot's file gone,
# no keyring entry, the same plaintext block is new ciphertext on the raw disks). Each boot's
# status time line goes to .cache/soak/boot-N.status; the summary (one line per boot: result,
# setup time, ciphertext hash) to .cache/soak/summary.txt, with the failures and the median and
# largest setup time. `make soak`; not part of `make test` (about 20 s per boot under TCG).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
vm_kernel

boots=${1:-20}
bin=$VM_DIR/../../target/x86_64-unknown-linux-musl/release/ephemcrypt
[[ -x $bin ]] || die "no $bin: run 'make build' first"
out=$CACHE/soak
mkdir -p "$out"
rm -f "$out"/*.raw "$out"/*.log "$out"/boot-*.status "$out/summary.txt"
"$VM_DIR/dracut-initrd.sh" "$out/initrd.img" --systemd
"$VM_DIR/rootfs-debian.sh" "$out/root.img" "$VM_DIR/guest/soak.sh" "$bin:/usr/sbin/ephemcrypt"

fails=0
for ((n = 1; n <= boots; n++)); do
	rc=0
	"$VM_DIR/run.sh" --initrd "$out/initrd.img" --log "$out/boot-$n.log" --timeout 900 --virtio "$out/root.img" \
		--disk "$out/a.raw:EPH-A:1G" --disk "$out/b.raw:EPH-B:1G" \
		--append "root=/dev/vda ro rd.ephemcrypt.devices=serial:EPH-* rd.ephemcrypt.expect=2 rd.ephemcrypt.swap=64M" \
		--append "vmtest.boot=$n systemd.mask=serial-getty@ttyS0.service" 2>"$out/boot-$n.err" || rc=$?
	tr -d '\r' <"$out/boot-$n.log" | sed -n 's/^STATUS-TEXT //p' >"$out/boot-$n.status"
	line=$(tr -d '\r' <"$out/boot-$n.log" | sed -n 's/^SOAK //p' | head -n1)
	if ((rc == 0)) && [[ -n $line ]]; then
		echo "PASS $line" >>"$out/summary.txt"
	else
		fails=$((fails + 1))
		echo "FAIL boot=$n ${line:-(no SOAK line)}" >>"$out/summary.txt"
		grep -a 'VMTEST FAIL' "$out/boot-$n.log" >&2 || tail -n 20 "$out/boot-$n.err" >&2
	fi
	log "boot $n/$boots: $(tail -n1 "$out/summary.txt")"
done
# Every boot's ciphertext differs from every other's (guest: from the previous one's).
dups=$(sed -n 's/.* cipher=\([0-9a-f]*\).*/\1/p' "$out/summary.txt" | sort | uniq -d | wc -l)
times=$(sed -n 's/.* setup_ms=\([0-9]*\).*/\1/p' "$out/summary.txt" | sort -n)
count=$(echo "$times" | grep -c . || true)
median=$(echo "$times" | awk -v n="$count" 'NR == int((n + 1) / 2) { print }')
{
	echo "boots: $boots, failed: $fails, repeated ciphertexts: $dups"
	echo "setup time (sum of the status' steps, ms): median ${median:-?}, max $(echo "$times" | tail -n1)," \
		"min $(echo "$times" | head -n1)"
} | tee -a "$out/summary.txt" >&2
rm -f "$out"/*.raw
((fails == 0 && dups == 0)) || die "soak: $fails failed boot(s), $dups repeated ciphertext(s) (logs in $out)"
log "PASS: $boots boots in a row"
