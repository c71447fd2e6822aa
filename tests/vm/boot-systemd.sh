#!/bin/bash
# boot-systemd.sh [--demo] [run.sh options...]: the whole boot chain with systemd on both sides.
# Debian's dracut (with its systemd module) builds an initramfs from the installed ephemcrypt
# (dracut-initrd.sh); qemu boots the Debian cloud kernel with it and a Debian 12 systemd root on
# /dev/vda (rootfs-debian.sh), mounted read-only in the initrd as Debian does; NVMe disks are
# picked by rd.ephemcrypt.devices=serial:EPH-*. ephemcrypt.service runs in the initrd; after
# multi-user.target guest/boot-systemd.sh reports and checks what survived. Two boots:
#   volume    EPH-A, EPH-B blank (used), EPH-C with ext4 (refused; byte-identical afterwards)
#   separate-var  /var on its own disk in the root's fstab: /var/log and /var/tmp on the volume
#             after it is mounted (units setup wrote), status ok
#   fallback  the mount point cannot be made: full rollback, tmpfs, the boot goes on
# The volume boot also runs ephemcrypt-check.service (the sandboxed unit, wanted by
# multi-user.target), which must write node-feature-discovery's feature file (Kubernetes labels).
# The volume boot's report is kept in .cache/boot-systemd/report.txt; --demo makes only that
# boot and prints the report (make demo).
# DEBIAN_SUITE=trixie KERNEL_SUITE=trixie: the same boots and checks in a Debian 13 root (systemd
# 257) with dracut-core (dracut-ng 106) installed in it, whose own dracut builds the image in a
# chroot (dracut-initrd.sh), with Debian 13's 6.12 kernel (make matrix: systemd@trixie;
# .cache/boot-systemd-trixie).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
vm_kernel # once for the whole script: its images and its boots use the same kernel

demo=''
[[ ${1:-} != --demo ]] || { demo=1 && shift; }
bin=$VM_DIR/../../target/x86_64-unknown-linux-musl/release/ephemcrypt
[[ -x $bin ]] || die "no $bin: run 'make build' first"
out=$CACHE/boot-systemd
if [[ ${DEBIAN_SUITE:-bookworm} != bookworm ]]; then
	# The root whose dracut built the image is the one that boots (rootfs-debian.sh, dracut-initrd.sh).
	export DEBIAN_SUITE DEBIAN_EXTRA=dracut-core,zstd
	out+=-$DEBIAN_SUITE
fi
mkdir -p "$out"
rm -f "$out"/*.raw "$out/report.txt"
[[ -z $demo ]] || log "building a dracut initramfs and a Debian 12 root, then booting them under qemu with" \
	"three disks (EPH-A, EPH-B blank; EPH-C with ext4); a few minutes the first time"
t=$SECONDS
# No lvm, md, multipath or crypt modules, as on a host without those tools: what ephemcrypt
# needs must come from its own module's dependencies.
"$VM_DIR/dracut-initrd.sh" "$out/initrd.img" --systemd
log "initramfs ready in $((SECONDS - t)) s"
# The demo shows the report instead of run.sh's list of checks (kept for a failure).
if [[ -n $demo ]]; then exec 3>"$out/run.err"; else exec 3>&2; fi
extra=("$@")

# The volume boot's root also has ephemcrypt-check.service wanted by multi-user.target, as the
# packages install it (a drop-in: debugfs writes no links), and node-feature-discovery's features.d
# with another feature file in it: the check must write its own beside it.
printf '[Unit]\nWants=ephemcrypt-check.service\n' >"$out/wants-check.conf"
printf 'other.vendor=true\n' >"$out/other-feature"
nfd=/etc/kubernetes/node-feature-discovery/features.d
check_unit=("$VM_DIR/../../systemd/ephemcrypt-check.service:/etc/systemd/system/ephemcrypt-check.service"
	"$out/wants-check.conf:/etc/systemd/system/multi-user.target.d/ephemcrypt-check.conf"
	"$out/other-feature:$nfd/other")

# boot NAME RUN.SH-ARGS...: boot a fresh copy of the root (console log NAME.log); vmtest=NAME
# tells the guest script what to expect.
boot() {
	local name=$1 files=()
	shift
	[[ $name != volume ]] || files=("${check_unit[@]}")
	"$VM_DIR/rootfs-debian.sh" "$out/root.img" "$VM_DIR/guest/boot-systemd.sh" "$bin:/usr/sbin/ephemcrypt" "${files[@]}"
	"$VM_DIR/run.sh" --initrd "$out/initrd.img" --log "$out/$name.log" --timeout 900 --virtio "$out/root.img" \
		--append "root=/dev/vda ro rd.ephemcrypt.devices=serial:EPH-* rd.ephemcrypt.swap=64M vmtest=$name" \
		--append "systemd.mask=serial-getty@ttyS0.service" "$@" "${extra[@]}" 2>&3
}
console() { tr -d '\r' <"$out/$1.log"; }

rc=0
for d in a b c; do truncate -s 1G "$out/$d.raw"; done
mkfs.ext4 -q -F -L persistent "$out/c.raw"
sum_before=$(sha256sum <"$out/c.raw")
boot volume --disk "$out/b.raw:EPH-B" --disk "$out/c.raw:EPH-C" --disk "$out/a.raw:EPH-A" \
	--append rd.ephemcrypt.expect=2 || rc=$?
console volume | sed -n 's/^REPORT //p' >"$out/report.txt"
results=$(console volume | grep -a '^VMTEST ' || true)
if [[ $(sha256sum <"$out/c.raw") == "$sum_before" ]]; then
	results+=$'\nHOST PASS refused-disk-byte-identical'
else
	results+=$'\nHOST FAIL refused-disk-byte-identical' && rc=1
fi
if [[ -n $demo ]]; then
	cat "$out/report.txt"
	printf '\n== Checks: %d passed, %d failed (guest/boot-systemd.sh, on the host: the refused disk)\n' \
		"$(grep -c ' PASS ' <<<"$results")" "$(grep -c ' FAIL ' <<<"$results" || true)"
	grep ' FAIL ' <<<"$results" | sed 's/^/  /' || true
	((rc == 0)) || cat "$out/run.err" >&2
else
	grep '^HOST ' <<<"$results"
	rm -f "$out"/*.raw
	# /var on its own disk in the root's fstab, holding the root's /var (and a log line that
	# must stay hidden under the volume).
	printf '/dev/vda / ext4 errors=remount-ro 0 1\n/dev/vdb /var ext4 defaults 0 2\n' >"$out/fstab"
	"$VM_DIR/rootfs-debian.sh" "$out/root.img" "$VM_DIR/guest/boot-systemd.sh" "$bin:/usr/sbin/ephemcrypt" \
		"$out/fstab:/etc/fstab"
	rm -rf "${out:?}/var" && mkdir -p "$out/var"
	debugfs -R "rdump /var $out/var" "$out/root.img" >/dev/null 2>&1
	echo "a log line on the /var disk, hidden once /var/log is bound" >"$out/var/var/log/var-disk.log"
	rm -f "$out/var.img" && mkfs.ext4 -q -F -L var -d "$out/var/var" "$out/var.img" 512M
	rm -rf "${out:?}/var"
	"$VM_DIR/run.sh" --initrd "$out/initrd.img" --log "$out/separate-var.log" --timeout 900 --virtio "$out/root.img" \
		--virtio "$out/var.img" --disk "$out/a.raw:EPH-A:1G" --disk "$out/b.raw:EPH-B:1G" \
		--append "root=/dev/vda ro rd.ephemcrypt.devices=serial:EPH-* rd.ephemcrypt.swap=64M vmtest=separate-var" \
		--append "rd.ephemcrypt.expect=2 systemd.mask=serial-getty@ttyS0.service" "${extra[@]}" || rc=$?
	rm -f "$out"/*.raw "$out/var.img"
	# A mount point under a regular file cannot be made (ENOTDIR), after mkfs.
	boot fallback --disk "$out/a.raw:EPH-A:1G" --disk "$out/b.raw:EPH-B:1G" \
		--append "rd.ephemcrypt.expect=2 rd.ephemcrypt.mount=/etc/hostname/ephemcrypt" || rc=$?
fi
((rc == 0)) || die "systemd boot test failed (console logs in $out)"
log "PASS: systemd boot: $(grep -m1 -o 'Startup finished in .*' "$out/report.txt" || echo 'no systemd-analyze')"
