#!/bin/bash
# boot-dracut.sh [run.sh options...]: the boot chain with Debian's real dracut (shell init). Two
# initramfs images from dracut-initrd.sh (ephemcrypt added with --add, and by the dracut.conf.d
# snippet) boot a busybox real root on /dev/vda whose /sbin/init (guest/dracut-root.sh) checks
# what ephemcrypt left after switch_root. Every boot has two blank 1 GiB NVMe disks, EPH-A and
# EPH-B; the scenarios (vmtest.scenario= tells the guest which):
#   ok        devices=serial:EPH-*: volume, swap and binds in place, status ok; writes a marker
#   reboot    the conf.d image on the disks and root of `ok`: a new key and file system, the
#             marker is gone, the disks (holding ciphertext now) are taken again
#   degraded  expect=2 with nothing selected: tmpfs over the bind targets, status degraded
#   halt      the same with on-failure=halt: the machine powers off, the real root never runs
#   absent    the defaults (presets select no QEMU disk): root untouched, status absent
# The host checks that ok and reboot wrote to the disks and the others did not. Exit 1 if any
# scenario failed.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
vm_kernel # once for the whole script: its images and its boots use the same kernel

# The binary make install puts into the images (no EPHEMCRYPT_BIN here: the images come from
# make install), for `ephemcrypt status` in the real root.
bin=$VM_DIR/../../target/x86_64-unknown-linux-musl/release/ephemcrypt
out=$CACHE/boot-dracut
rm -rf "$out"
mkdir -p "$out"
"$VM_DIR/dracut-initrd.sh" "$out/add.img" # builds the binary if needed
"$VM_DIR/dracut-initrd.sh" "$out/none.img" --without-mkfs # must fail, naming mkfs.ext4
"$VM_DIR/dracut-initrd.sh" "$out/conf-d.img" --conf-d
"$VM_DIR/rootfs-busybox.sh" "$out/root.img" "$VM_DIR/guest/dracut-root.sh" "$bin:/usr/sbin/ephemcrypt"

failed=() summary=()
# boot NAME IMAGE MACHINE APPEND [run.sh options]: boot IMAGE on MACHINE's root and two disks
# (made on first use), NAME as the scenario; the result goes into the summary.
boot() {
	local name=$1 img=$2 m=$3 append=$4 result=PASS
	shift 4
	[[ -e $out/$m-root.img ]] || cp --sparse=always "$out/root.img" "$out/$m-root.img"
	log "scenario $name"
	"$VM_DIR/run.sh" --initrd "$out/$img" --virtio "$out/$m-root.img" --log "$out/$name.log" \
		--disk "$out/$m-a.raw:EPH-A:1G" --disk "$out/$m-b.raw:EPH-B:1G" --timeout 300 \
		--append "root=/dev/vda rw rd.shell=0 vmtest.scenario=$name $append" "$@" >"$out/$name.run" 2>&1 || result=FAIL
	[[ $name != halt ]] || result=$(halted "$out/$name.log") # run.sh fails there: no VMTEST DONE
	disks "$name" "$out/$m-a.raw" "$out/$m-b.raw" || result=FAIL
	[[ $name == halt && $result == PASS ]] || cat "$out/$name.run"
	[[ $result == PASS ]] || failed+=("$name")
	summary+=("$(printf '%-9s %s  %s' "$name" "$result" "$(grep -o 'after [0-9.]* s' "$out/$name.run" | head -n1)")")
}
# halted LOG: PASS when the hook powered the machine off (on-failure=halt) and the real root
# never ran.
halted() {
	if grep -aq 'ephemcrypt: setup exited with status 1 (1: on-failure=halt): powering the machine off' "$1" &&
		grep -aq 'reboot: Power down' "$1" && ! tr -d '\r' <"$1" | grep -v '^VMTEST FAIL run.sh' | grep -aq '^VMTEST '; then
		log "halt: the hook powered the machine off; the real root never ran"
		echo PASS
	else
		log "halt: no 'powering the machine off' and 'reboot: Power down' in $1, or the real root ran"
		echo FAIL
	fi
}
# disks SCENARIO DISK...: ok and reboot wrote to the disks (ciphertext: setup.sh checks that no
# plaintext is in it); the failure scenarios left them untouched (their images still sparse).
disks() {
	local name=$1 d kib
	shift
	for d; do
		kib=$(du -k "$d" | cut -f1)
		case $name in ok | reboot) ((kib > 0)) ;; *) ((kib == 0)) ;; esac && continue
		log "error: $name: $kib KiB written to ${d##*/}"
		return 1
	done
}

sel='rd.ephemcrypt.devices=serial:EPH-*'
none='rd.ephemcrypt.devices=serial:NONE-* rd.ephemcrypt.expect=2 rd.ephemcrypt.wait=2'
boot ok add.img ok "$sel rd.ephemcrypt.swap=64M" "$@"
boot reboot conf-d.img ok "$sel rd.ephemcrypt.swap=64M" "$@"
boot degraded add.img degraded "$none" "$@"
# The halt boot ends with the machine powered off (qemu exits): no VMTEST DONE.
boot halt add.img halt "$none rd.ephemcrypt.on-failure=halt" --timeout 120 "$@"
boot absent add.img absent "" "$@"

printf '%s\n' "boot-dracut.sh: scenario  result  boot time" "${summary[@]/#/  }"
((${#failed[@]} == 0)) || die "failed: ${failed[*]}"
log "PASS: dracut boot tests"
