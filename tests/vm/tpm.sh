#!/bin/bash
# tpm.sh [run.sh options...]: setup's outcome measured into a TPM (issue 24), through Debian's
# dracut with its systemd module into a Debian 12 root with tpm2-tools and age, with a software
# TPM (swtpm, fresh for each boot: PCRs start at zero) behind qemu's tpm-tis, and
# rd.ephemcrypt.measure=auto (PCR 15). Four boots, checked by guest/tpm.sh and here:
#   ok        two disks, escrow to a fresh age identity (so the guest knows the key): result ok
#   fallback  a third disk expected and missing (the failure policy: tmpfs): result degraded
#   held      rd.ephemcrypt.hold=1: result held
#   notpm     no TPM: the volume is made, the status says not measured
# For each boot with a TPM, the host replays the measurement log the guest printed
# (tools/pcr-replay, from zeros) and compares it with PCR 15 of every bank as tpm2_pcrread read
# it after the boot; the three values must differ. The values and the time of the measure step
# are kept in .cache/tpm/values.txt.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
vm_kernel
need_pkgs age swtpm swtpm-tools python3

bin=$VM_DIR/../../target/x86_64-unknown-linux-musl/release/ephemcrypt
[[ -x $bin ]] || die "no $bin: run 'make build' first"
replay=$VM_DIR/../../tools/pcr-replay
out=$CACHE/tpm
mkdir -p "$out"
rm -f "$out"/*.raw "$out"/*.log "$out"/*.bin "$out/id.txt" "$out/values.txt"
"$VM_DIR/dracut-initrd.sh" "$out/initrd.img" --systemd
age-keygen -o "$out/id.txt" 2>/dev/null
recipient=$(age-keygen -y "$out/id.txt")
DEBIAN_EXTRA=age,tpm2-tools "$VM_DIR/rootfs-debian.sh" "$out/root.img" "$VM_DIR/guest/tpm.sh" \
	"$bin:/usr/sbin/ephemcrypt" "$out/id.txt:/root/id.txt"

fails=0 swtpm_pid=''
trap '[[ -z $swtpm_pid ]] || kill "$swtpm_pid" 2>/dev/null || true' EXIT
# boot NAME tpm|notpm RUN.SH-ARGS...: boot the root with two disks, with a fresh software TPM or none
boot() {
	local name=$1 tpm=$2 i
	shift 2
	local args=()
	if [[ $tpm == tpm ]]; then
		rm -rf "$out/swtpm" && mkdir -p "$out/swtpm"
		# --terminate: swtpm ends when qemu closes the control channel.
		swtpm socket --tpm2 --tpmstate dir="$out/swtpm" --ctrl type=unixio,path="$out/swtpm/sock" \
			--terminate --log file="$out/swtpm/swtpm.log" &
		swtpm_pid=$!
		for ((i = 0; i < 100; i++)); do [[ -S $out/swtpm/sock ]] && break; sleep 0.1; done
		[[ -S $out/swtpm/sock ]] || die "swtpm made no socket (see $out/swtpm/swtpm.log)"
		args=(--tpm "$out/swtpm/sock")
	fi
	"$VM_DIR/run.sh" --initrd "$out/initrd.img" --log "$out/$name.log" --timeout 900 --virtio "$out/root.img" \
		--disk "$out/a.raw:EPH-A:1G" --disk "$out/b.raw:EPH-B:1G" "${args[@]}" \
		--append "root=/dev/vda ro rd.ephemcrypt.devices=serial:EPH-* rd.ephemcrypt.measure=auto vmtest=$name" \
		--append "systemd.mask=serial-getty@ttyS0.service" "$@" || fails=$((fails + 1))
	if [[ -n $swtpm_pid ]]; then
		kill "$swtpm_pid" 2>/dev/null || true
		wait "$swtpm_pid" 2>/dev/null || true
		swtpm_pid=''
	fi
}
console() { tr -d '\r' <"$out/$1.log"; }
# replayed NAME: check that the log NAME's guest printed replays to the PCR 15 it read; print
# "NAME BANK VALUE" for each bank
replayed() {
	local name=$1 bank value want
	console "$name" | sed -n 's/^TPMLOG //p' | base64 -d >"$out/$name.bin"
	[[ -s $out/$name.bin ]] || { echo "HOST FAIL $name-log: the guest printed no measurement log" >&2 && return 1; }
	local n=0
	while read -r _ bank value; do
		want=$(python3 "$replay" --pcr 15 --bank "$bank" "$out/$name.bin" | cut -d' ' -f3)
		if [[ ${value#0x} == "$want" ]]; then
			echo "HOST PASS $name-replay-$bank" >&2
		else
			echo "HOST FAIL $name-replay-$bank: the TPM holds ${value#0x}, the log replays to ${want:-nothing}" >&2
			return 1
		fi
		echo "$name $bank ${value#0x}"
		n=$((n + 1))
	done < <(console "$name" | grep -a '^PCR15 ')
	((n > 0)) || { echo "HOST FAIL $name-pcr: the guest read no PCR 15" >&2 && return 1; }
}

boot ok tpm --append "rd.ephemcrypt.expect=2 rd.ephemcrypt.escrow=$recipient"
boot fallback tpm --append "rd.ephemcrypt.expect=3 rd.ephemcrypt.wait=1"
boot held tpm --append "rd.ephemcrypt.hold=1"
boot notpm notpm --append "rd.ephemcrypt.expect=2"
rm -f "$out"/*.raw
for b in ok fallback held; do
	replayed "$b" >>"$out/values.txt" || fails=$((fails + 1))
	python3 "$replay" --show "$out/$b.bin" 2>&1 >/dev/null | sed "s/^/EVENT $b /" >>"$out/values.txt" || true
done
# Three outcomes, three values, in each bank.
while read -r bank; do
	distinct=$(awk -v b="$bank" '$1 != "EVENT" && $2 == b { print $3 }' "$out/values.txt" | sort -u | wc -l)
	if ((distinct == 3)); then
		echo "HOST PASS three-values-$bank" >&2
	else
		echo "HOST FAIL three-values-$bank: $distinct distinct values of PCR 15 for ok, fallback, held" >&2
		fails=$((fails + 1))
	fi
done < <(awk '$1 != "EVENT" { print $2 }' "$out/values.txt" | sort -u)
for b in ok fallback held notpm; do
	console "$b" | sed -n "s/^STATUS *\([0-9]* ms\)  measure the outcome.*/MEASURE-TIME $b \1/p" >>"$out/values.txt"
done
cat "$out/values.txt" >&2
((fails == 0)) || die "tpm test: $fails failure(s) (logs in $out)"
log "PASS: outcomes measured into PCR 15, each replayed from its log"
