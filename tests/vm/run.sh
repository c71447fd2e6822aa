#!/bin/bash
# run.sh --initrd IMG [--disk FILE:SERIAL[:SIZE[:BLOCK]]]... [--virtio FILE[:SIZE]]... [--append ARGS]
#        [--log FILE] [--timeout SECONDS] [--first SECONDS] [--silence SECONDS] [--mem MIB] [--show]
#        [--monitor 'PATTERN|COMMAND']... [--tpm SOCKET]
# Boot the Debian cloud kernel from kernel.sh with IMG under qemu (TCG: nested KVM hangs here), on
# a PC, or with VM_ARCH=aarch64 on qemu's arm64 "virt" machine.
# Each --disk is an NVMe controller with that serial (qemu device id disk0, disk1, ... in the
# order given; BLOCK: its logical and physical block size), each --virtio a virtio-blk disk; with
# SIZE (truncate syntax, e.g. 512M) a missing FILE is created sparse. The console goes to the log
# (default .cache/last.log); --show also streams it. Exit 0 only when the guest printed
# "VMTEST DONE" and no "VMTEST FAIL"; on failure the log's tail is printed.
# --tpm: a TPM 2.0 (tpm-tis) backed by the software TPM (swtpm socket --ctrl) listening on SOCKET.
# --monitor: once the console shows a line matching PATTERN (grep -E), COMMAND goes to qemu's
# monitor (e.g. 'device_del disk1', 'system_reset'). A system_reset ends the run (-no-reboot):
# the machine stops as in a crash, without a clean shutdown, and the run passes if the guest
# printed no "VMTEST FAIL" before it. A system_powerdown (the ACPI power button, as a cloud's stop)
# ends the run too: it passes when qemu exits (the guest powered off) within 60 s of it and the
# guest printed no "VMTEST FAIL"; past 60 s it fails.
# A guest that shows no sign of life within --first seconds (default 180) fails at once rather
# than at --timeout: no "VMTEST " line and no "ephemcrypt:" line yet means it never reached the
# initramfs' work (a kernel without its modules, a root that never appears). A kernel panic
# ends qemu at once (panic=-1 with -no-reboot). A guest that was alive and then prints nothing
# for --silence seconds (default 300) has hung: it fails then, with the console's last lines,
# rather than at --timeout. A kernel "Oops: int3" before the guest's test began is emulation's
# fault under load: that boot runs once more (RUN_SH_RETRY), and only once.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

args_all=("$@") # for the one boot more after an emulator fault (below)
initrd='' append='' logf=$CACHE/last.log timeout=300 first=180 silence=300 mem=1024 show='' drives=() monitors=() nvme=0 tpm=()
add_drive() { # add_drive FILE[:SIZE] DEVICE-OPTIONS
	local file=${1%%:*} size=${1#*:} id=d${#drives[@]}
	[[ $size == "$1" ]] && size=
	[[ -e $file || -z $size ]] || truncate -s "$size" "$file"
	[[ -f $file ]] || die "no disk image $file"
	drives+=(-drive "file=$file,if=none,format=raw,id=$id" -device "$2,drive=$id")
}
while (($#)); do
	case $1 in
	--initrd) initrd=$2 ;;
	--disk) # FILE:SERIAL[:SIZE[:BLOCK]]
		IFS=: read -r f s z b <<<"$2"
		[[ -n $s ]] || die "--disk wants FILE:SERIAL[:SIZE[:BLOCK]], got $2"
		add_drive "$f${z:+:$z}" "nvme,serial=$s,id=disk$nvme${b:+,logical_block_size=$b,physical_block_size=$b}"
		nvme=$((nvme + 1)) ;;
	--monitor) [[ $2 == *'|'* ]] || die "--monitor wants 'PATTERN|COMMAND', got $2"
		monitors+=("$2") ;;
	--virtio) add_drive "$2" virtio-blk-pci ;;
	--tpm) # shellcheck disable=SC2054 # the commas are qemu's option syntax
		tpm=(-chardev "socket,id=chrtpm,path=$2" -tpmdev emulator,id=tpm0,chardev=chrtpm -device tpm-tis,tpmdev=tpm0) ;;
	--append) append+=" $2" ;;
	--log) logf=$2 ;;
	--timeout) timeout=$2 ;;
	--first) first=$2 ;;
	--silence) silence=$2 ;;
	--mem) mem=$2 ;;
	--show) show=1; shift; continue ;;
	*) die "unknown argument $1 (see the header of $0)" ;;
	esac
	shift 2
done
[[ -f $initrd ]] || die "--initrd IMG is required"
vm_kernel
mkdir -p "$(dirname "$logf")"

case $VM_ARCH in # (kernel.sh): the machine of that architecture, and its serial console
x86_64) machine=(qemu-system-x86_64) console=ttyS0 ;;
aarch64) machine=(qemu-system-aarch64 -M virt) console=ttyAMA0 ;;
esac
qemu=("${machine[@]}" -accel tcg -cpu max -m "$mem" -smp 2 -nographic -no-reboot
	-nic none -kernel "$VMLINUZ" -initrd "$initrd"
	-append "console=$console panic=-1 quiet$append" "${drives[@]}" "${tpm[@]}")
mon='' fired=() reset='' powerdown_at=''
if ((${#monitors[@]})); then
	# The monitor on a pipe pair (qemu opens both ends read-write: nothing blocks); its replies
	# are kept beside the console log.
	mon=$(mktemp -d "$CACHE/monitor.XXXXXX")
	mkfifo "$mon/m.in" "$mon/m.out"
	# shellcheck disable=SC2054 # the commas are qemu's option syntax
	qemu+=(-chardev "pipe,id=mon0,path=$mon/m" -mon chardev=mon0,mode=readline)
fi
ms() { date +%s%3N; }
# clean: the log without CRs and the firmware's terminal escapes, each VMTEST report on a line of
# its own (the firmware's last line has no newline: the guest's first report may follow it on the
# same line, after the escapes that clear the screen)
clean() { tr -d '\r' <"$logf" | sed -e 's/\x1b[^A-Za-z]*[A-Za-z]//g' -e 's/\([^ ]\)VMTEST /\1\nVMTEST /'; }
# results: the VMTEST lines of the log
results() { clean | grep -a '^VMTEST ' || true; }
secs() { printf '%d.%d' $(($1 / 1000)) $(($1 % 1000 / 100)); } # secs MS -> "12.3"
start=$(ms) done_at='' timed_out='' alive=''
# alive: the guest printed a milestone (its test's results, or ephemcrypt's log lines)
milestone() { clean | grep -aqE '^VMTEST |ephemcrypt: '; }
"${qemu[@]}" </dev/null >"$logf" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; [[ -z $mon ]] || rm -rf "$mon"' EXIT
catpid=''
if [[ -n $mon ]]; then
	cat "$mon/m.out" >"$logf.monitor" &
	catpid=$!
fi
# monitor: send each --monitor COMMAND once the console shows its PATTERN
monitor() {
	local i text
	text=$(clean)
	for i in "${!monitors[@]}"; do
		[[ -z ${fired[i]:-} ]] || continue
		grep -aqE -- "${monitors[i]%%|*}" <<<"$text" || continue
		fired[i]=1
		log "monitor: ${monitors[i]#*|} (the console showed /${monitors[i]%%|*}/)"
		# shellcheck disable=SC2016 # $1 and $2 are bash -c's arguments
		timeout 10 bash -c 'echo "$1" >"$2"' _ "${monitors[i]#*|}" "$mon/m.in" || log "monitor: qemu did not take it"
		[[ ${monitors[i]#*|} != system_reset ]] || reset=1
		[[ ${monitors[i]#*|} != system_powerdown ]] || powerdown_at=$(ms)
	done
}
[[ -z $show ]] || tail -n +1 -f --pid="$pid" "$logf" &
# Poll the log: note when DONE appears, kill qemu at the deadline, or shortly after DONE
# if the guest fails to power off.
while kill -0 "$pid" 2>/dev/null; do
	now=$(ms)
	if [[ -z $done_at ]] && results | grep '^VMTEST DONE' >/dev/null; then done_at=$now; fi
	if [[ -n $done_at ]] && ((now - done_at > 30000)); then
		log "guest did not power off 30 s after DONE: killing qemu"
		break
	fi
	if [[ -n $powerdown_at ]] && ((now - powerdown_at > 60000)); then
		timed_out="the guest did not power off within 60 s of system_powerdown"
		break
	fi
	if ((now - start > timeout * 1000)); then
		timed_out="timeout after $timeout s"
		break
	fi
	if [[ -z $alive ]] && milestone; then alive=1; fi
	size=$(stat -c %s "$logf" 2>/dev/null || echo 0)
	if [[ $size != "${last_size:-}" ]]; then last_size=$size last_change=$now; fi
	if [[ -n $alive ]] && ((now - last_change > silence * 1000)); then
		timed_out="hung: the console has been silent for $silence s"
		break
	fi
	[[ -z $mon ]] || monitor
	if [[ -z $alive ]] && ((now - start > first * 1000)); then
		timed_out="no sign of life (no VMTEST or ephemcrypt line) after $first s"
		break
	fi

	sleep 0.2
done
kill "$pid" 2>/dev/null || true
wait "$pid" || true
[[ -z $catpid ]] || kill "$catpid" 2>/dev/null || true
[[ -z $timed_out ]] || echo "VMTEST FAIL run.sh: $timed_out" >>"$logf"
end=$(ms)
[[ -n $done_at ]] || done_at=$end
wait

res=$(results)
echo "$res" >&2
if [[ -n $reset && -z $timed_out ]] && ! grep -q '^VMTEST FAIL' <<<"$res"; then
	log "PASS: reset by the monitor after $(secs $((end - start))) s (log $logf)"
	exit 0
fi
if [[ -n $powerdown_at && -z $timed_out ]] && ! grep -q '^VMTEST FAIL' <<<"$res"; then
	log "PASS: powered off $(secs $((end - powerdown_at))) s after system_powerdown (log $logf)"
	exit 0
fi
if grep -q '^VMTEST DONE' <<<"$res" && ! grep -q '^VMTEST FAIL' <<<"$res"; then
	log "PASS: VMTEST DONE after $(secs $((done_at - start))) s, qemu ran $(secs $((end - start))) s (log $logf)"
	exit 0
fi
# The emulator's fault, not the test's: under heavy load TCG has been seen to trip the kernel's
# code patching ("Oops: int3" in enqueue_timer 2.7 s into a stock image's boot, make matrix,
# 2026-12-08). When the kernel oopsed that way before the guest printed anything of its own (no
# VMTEST or ephemcrypt line: its test had not begun), the boot runs once more; the first log is
# kept beside the log. Any other failure, and a second fault, fail as they are.
# (The whole log is read again: the poll loop may have ended before it saw the last lines.)
if [[ -z ${RUN_SH_RETRY:-} && -z $res && -z $reset && -z $powerdown_at ]] && ! milestone && clean | grep -aq 'Oops: int3'; then
	cp "$logf" "$logf.emulator-fault"
	log "the kernel hit an int3 oops before the guest's test began (emulation under load; log kept in" \
		"$logf.emulator-fault): booting once more"
	[[ -z $mon ]] || rm -rf "$mon"
	trap - EXIT
	RUN_SH_RETRY=1 exec "$BASH" "$0" "${args_all[@]}"
fi
[[ -n $show ]] || { echo "--- last 60 lines of $logf:"; tail -n 60 "$logf"; } >&2
grep -q '^VMTEST DONE' <<<"$res" || log "no VMTEST DONE"
log "FAIL after $(secs $((end - start))) s (log $logf)"
exit 1
