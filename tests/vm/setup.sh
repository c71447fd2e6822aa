#!/bin/bash
# setup.sh [run.sh options...]: `ephemcrypt setup` on a real kernel (see guest/setup.sh), then
# host-side checks of the raw disk images: the marker written through the volume is not in
# them, the refused disks are byte-identical, and the used disks carry no recognizable signature.
# VM_ARCH=aarch64: the same with the arm64 binary on qemu's arm64 "virt" machine, Debian's arm64
# cloud kernel and arm64 programs in the initramfs (userland.sh).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
vm_kernel # once for the whole script: its images and its boots use the same kernel

bin=${EPHEMCRYPT_BIN:-$VM_DIR/../../target/$VM_ARCH-unknown-linux-musl/release/ephemcrypt}
[[ -x $bin ]] || die "no $bin: run 'make build ARCH=$VM_ARCH' first"
out=$CACHE/setup
[[ $VM_ARCH == x86_64 ]] || out+=-$VM_ARCH
mkdir -p "$out"
rm -f "$out"/*.raw
for d in a b c d; do truncate -s 1G "$out/$d.raw"; done
rm -f "$out"/[ef].raw
mkfs.ext4 -q -F -L persistent "$out/c.raw"              # selected by serial, but carries ext4
head -c 4M /dev/urandom | dd of="$out/d.raw" conv=notrunc status=none # not selected
sum_before=$(sha256sum "$out/c.raw" "$out/d.raw" | cut -d' ' -f1)
cat >"$out/ephemcrypt.conf" <<'CONF'
# VM test: EPH-A, EPH-B (blank) and EPH-C (ext4) are selected; OTHER-D is not.
devices = serial:EPH-*
expect = 2
swap = 64M
CONF

"$VM_DIR/mkinitrd.sh" "$out/initrd.img" "$VM_DIR/guest/setup.sh" "$bin:/bin/ephemcrypt" "$out/ephemcrypt.conf:/etc/ephemcrypt.conf"
# Enumeration order differs from serial order: EPH-B is the first controller.
"$VM_DIR/run.sh" --initrd "$out/initrd.img" --log "$out/console.log" \
	--disk "$out/b.raw:EPH-B" --disk "$out/d.raw:OTHER-D" --disk "$out/a.raw:EPH-A" --disk "$out/c.raw:EPH-C" "$@"

fails=0
hcheck() { # hcheck NAME CMD...: a host-side check
	if "${@:2}"; then echo "HOST PASS $1"; else echo "HOST FAIL $1"; fails=$((fails + 1)); fi
}
hcheck refused-disks-byte-identical test "$(sha256sum "$out/c.raw" "$out/d.raw" | cut -d' ' -f1)" = "$sum_before"
for d in a b; do
	hcheck "marker-not-on-$d.raw" bash -c "! grep -aq EPHEMCRYPT-PLAINTEXT-MARKER '$out/$d.raw'"
	hcheck "no-signature-on-$d.raw" bash -c "! blkid -p '$out/$d.raw' >/dev/null 2>&1"
	hcheck "ciphertext-on-$d.raw" bash -c "[ \"\$(du -k '$out/$d.raw' | cut -f1)\" -gt 0 ]"
done
# An interrupted setup (killed after the headers, before mkfs; the machine stops without cleanup)
# is taken back by its headers on the next boot, and completes.
truncate -s 1G "$out/e.raw" "$out/f.raw"
"$VM_DIR/mkinitrd.sh" "$out/interrupted.img" "$VM_DIR/guest/interrupted.sh" "$bin:/bin/ephemcrypt"
for phase in interrupt retake; do
	"$VM_DIR/run.sh" --initrd "$out/interrupted.img" --log "$out/$phase.log" \
		--disk "$out/f.raw:EPH-F" --disk "$out/e.raw:EPH-E" --append "vmtest=$phase" "$@" || fails=$((fails + 1))
done
# The step timings, for the record.
tr -d '\r' <"$out/console.log" | sed -n 's/^STATUS-TEXT //p' >"$out/status.txt"
cat "$out/status.txt"
((fails == 0)) || die "$fails host check(s) failed"
log "PASS: setup VM test"
