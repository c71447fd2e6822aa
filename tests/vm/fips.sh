#!/bin/bash
# fips.sh [run.sh options...]: `ephemcrypt setup` on a kernel in FIPS mode (fips=1) and on a
# locked-down kernel (lockdown=confidentiality), one boot each (see guest/fips.sh), then host-side
# checks of the raw disk images: in FIPS mode the disk setup refused (a cipher the kernel refuses
# there) was never written to; the disks of the volume carry its headers and no plaintext.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
vm_kernel # once for the whole script: its images and its boots use the same kernel

bin=${EPHEMCRYPT_BIN:-$VM_DIR/../../target/$VM_ARCH-unknown-linux-musl/release/ephemcrypt}
[[ -x $bin ]] || die "no $bin: run 'make build' first"
out=$CACHE/fips
mkdir -p "$out"
# twofish: to show that the kernel itself refuses it in FIPS mode (guest/fips.sh).
VM_MODULES="twofish_generic" "$VM_DIR/mkinitrd.sh" "$out/initrd.img" "$VM_DIR/guest/fips.sh" "$bin:/bin/ephemcrypt"

fails=0
hcheck() { # hcheck NAME CMD...: a host-side check
	if "${@:2}"; then echo "HOST PASS $1"; else echo "HOST FAIL $1"; fails=$((fails + 1)); fi
}
for mode in fips lockdown; do
	case $mode in
	fips) append=fips=1 ;;
	lockdown) append=lockdown=confidentiality ;;
	esac
	rm -f "$out"/*.raw
	# Enumeration order differs from serial order.
	"$VM_DIR/run.sh" --initrd "$out/initrd.img" --log "$out/$mode.log" --append "$append" \
		--disk "$out/c.raw:EPH-C:1G" --disk "$out/a.raw:EPH-A:1G" --disk "$out/b.raw:EPH-B:1G" "$@" ||
		fails=$((fails + 1))
	if [[ $mode == fips ]]; then
		# Sparse and never written: not one block of EPH-A's image is allocated.
		hcheck "$mode-refused-disk-never-written" test "$(du -k "$out/a.raw" | cut -f1)" = 0
	fi
	for d in b c; do
		hcheck "$mode-header-on-$d.raw" bash -c "head -c 16 '$out/$d.raw' | grep -aq EPHEMCRYPT"
	done
done
((fails == 0)) || die "$fails check(s) failed"
log "PASS: FIPS mode and lockdown VM test"
