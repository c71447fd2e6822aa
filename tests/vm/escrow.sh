#!/bin/bash
# escrow.sh [run.sh options...]: key escrow, hold, guard and recovery through the whole boot chain
# (Debian's dracut with its systemd module, a Debian 12 systemd root with age, cryptsetup, dmsetup
# and D-Bus, which logind and so the guard's inhibitor lock need). Three boots on the same two disks and root, checked by guest/escrow.sh: boot 1 with
# escrow to a fresh age identity and the guard, reset by the host through qemu's monitor once it
# has written known files (a crash); boot 2 held by the hold file: the disks must stay byte for
# byte as they were while `ephemcrypt recover` and the stock-tool script read boot 1's files;
# boot 3 makes a new volume, and boot 1's files are gone for good.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
vm_kernel
need_pkgs age

bin=$VM_DIR/../../target/x86_64-unknown-linux-musl/release/ephemcrypt
[[ -x $bin ]] || die "no $bin: run 'make build' first"
out=$CACHE/escrow
mkdir -p "$out"
rm -f "$out"/*.raw "$out"/*.log "$out/id.txt"
"$VM_DIR/dracut-initrd.sh" "$out/initrd.img" --systemd
age-keygen -o "$out/id.txt" 2>/dev/null
recipient=$(age-keygen -y "$out/id.txt")
# The root has the kernel's modules (DEBIAN_KERNEL): a held boot loads no device-mapper module in
# the initramfs, so recover loads dm_mod, dm_crypt and the cipher's from the root, as on a real machine.
DEBIAN_KERNEL=yes DEBIAN_EXTRA=age,cryptsetup-bin,dbus "$VM_DIR/rootfs-debian.sh" "$out/root.img" "$VM_DIR/guest/escrow.sh" \
	"$bin:/usr/sbin/ephemcrypt" "$out/id.txt:/root/id.txt"

fails=0
boot() { # boot N RUN.SH-ARGS...
	local n=$1
	shift
	"$VM_DIR/run.sh" --initrd "$out/initrd.img" --log "$out/boot$n.log" --timeout 900 --virtio "$out/root.img" \
		--disk "$out/a.raw:EPH-A:1G" --disk "$out/b.raw:EPH-B:1G" \
		--append "root=/dev/vda ro rd.ephemcrypt.devices=serial:EPH-* rd.ephemcrypt.expect=2 rd.ephemcrypt.swap=64M" \
		--append "rd.ephemcrypt.escrow=$recipient rd.ephemcrypt.guard=1 vmtest=boot$n" \
		--append "systemd.mask=serial-getty@ttyS0.service" "$@" || fails=$((fails + 1))
}
boot 1 --monitor 'VMTEST CRASH-NOW|system_reset'
before=$(cat "$out/a.raw" "$out/b.raw" | sha256sum)
boot 2
if [[ $(cat "$out/a.raw" "$out/b.raw" | sha256sum) == "$before" ]]; then
	echo "HOST PASS held-disks-byte-identical"
else
	echo "HOST FAIL held-disks-byte-identical: boot 2 (held, recovering read-only) changed the disks"
	fails=$((fails + 1))
fi
boot 3
tr -d '\r' <"$out/boot2.log" | grep -a -E '^(RECOVER-TIME|STOCK-TIME) ' >&2 || true
rm -f "$out"/*.raw
((fails == 0)) || die "escrow test: $fails failure(s) (logs in $out)"
log "PASS: escrow, hold, guard and recovery"
