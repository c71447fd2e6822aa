#!/bin/bash
# boot-initramfs-tools.sh [run.sh options...]: the boot chain of Debian's and Ubuntu's cloud images.
# A Debian 12 systemd root with the cloud kernel and initramfs-tools installed in it
# (rootfs-debian.sh, DEBIAN_KERNEL=yes); `make install` into that root, then update-initramfs in
# a chroot builds its image, as a package's postinst would. First, with fs=xfs and no mkfs.xfs in
# the root, the build must fail naming it and leave the old image. qemu then boots the kernel with
# that image and the root on /dev/vda, with three NVMe disks: EPH-A and EPH-B blank (used), EPH-C
# with ext4 (refused); guest/boot-itools.sh checks from the real root. On the host: the refused
# disk byte-identical, no plaintext marker on the raw disks. Last, the same root booted with the
# stock image (ephemcrypt not in it): ephemcrypt status and ephemcrypt-check.service explain.
# Sizes of both images and the boot time go to .cache/boot-itools/report.txt.
# DEBIAN_SUITE=trixie KERNEL_SUITE=trixie: the same in a Debian 13 root (initramfs-tools 0.148,
# systemd 257) with its 6.12 kernel (make matrix; .cache/boot-itools-trixie).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
vm_kernel

repo=$VM_DIR/../..
[[ -x $repo/target/x86_64-unknown-linux-musl/release/ephemcrypt ]] || die "no release binary: run 'make build' first"
out=$CACHE/boot-itools${DEBIAN_SUITE:+-$DEBIAN_SUITE}
mkdir -p "$out"
rm -f "$out"/*.raw "$out/report.txt"
DEBIAN_KERNEL=yes "$VM_DIR/rootfs-debian.sh" "$out/root.img" "$VM_DIR/guest/boot-itools.sh"

# Install ephemcrypt into the root and rebuild its initramfs there, in a chroot.
mnt=$(mktemp -d "$CACHE/itools-root.XXXXXX")
cleanup() {
	umount "$mnt/proc" "$mnt/sys" "$mnt/dev" 2>/dev/null || true
	umount "$mnt" 2>/dev/null || true
	rmdir "$mnt" 2>/dev/null || true
}
trap cleanup EXIT
mount -o loop "$out/root.img" "$mnt"
initrd=$mnt/boot/initrd.img-$KVER
cp "$initrd" "$out/stock.img"
make --no-print-directory -s -C "$repo" install DESTDIR="$mnt" PREFIX=/usr >&2
mount --bind /proc "$mnt/proc" && mount --bind /sys "$mnt/sys" && mount --bind /dev "$mnt/dev"
fails=0
hcheck() { # hcheck NAME CMD...: a host-side check
	if "${@:2}"; then echo "HOST PASS $1"; else echo "HOST FAIL $1"; fails=$((fails + 1)); fi
}
echo 'fs = xfs' >"$mnt/etc/ephemcrypt.conf"
hcheck build-without-mkfs-fails bash -c "! chroot '$mnt' update-initramfs -u -k '$KVER' >'$out/build-xfs.log' 2>&1"
hcheck build-names-mkfs.xfs grep -q "E: ephemcrypt: the configured file system needs 'mkfs.xfs'" "$out/build-xfs.log"
hcheck old-image-kept cmp -s "$initrd" "$out/stock.img"
rm "$mnt/etc/ephemcrypt.conf"
chroot "$mnt" update-initramfs -u -k "$KVER" >"$out/build.log" 2>&1 || die "update-initramfs failed: see $out/build.log"
cp "$initrd" "$out/initrd.img"
# make install enables the check (a vendor link in multi-user.target.wants): nothing to enable.
hcheck check-unit-static-by-install test "$(chroot "$mnt" systemctl is-enabled ephemcrypt-check.service)" = static
chroot "$mnt" lsinitramfs "/boot/initrd.img-$KVER" >"$out/contents.txt"
for f in usr/sbin/ephemcrypt scripts/local-bottom/ephemcrypt usr/sbin/mkfs.ext4 etc/mke2fs.conf; do
	hcheck "image-has-${f##*/}" grep -q "$f" "$out/contents.txt"
done
# Every module the installed binary names for this kernel (the hook holds no list of its own).
mods=$(chroot "$mnt" ephemcrypt needs --modules --kver "$KVER") || die "ephemcrypt needs --modules failed"
for m in dm_crypt xts; do hcheck "needs-names-$m" grep -qx "$m" <<<"$mods"; done
for m in $mods; do
	hcheck "image-has-module-$m" grep -q "/${m//_/[-_]}\.ko" "$out/contents.txt"
done
cleanup
trap - EXIT

for d in a b c; do truncate -s 1G "$out/$d.raw"; done
mkfs.ext4 -q -F -L persistent "$out/c.raw"
sum_before=$(sha256sum <"$out/c.raw")
args=(--timeout 900 --virtio "$out/root.img" --disk "$out/b.raw:EPH-B" --disk "$out/c.raw:EPH-C"
	--disk "$out/a.raw:EPH-A" --append "root=/dev/vda ro rd.ephemcrypt.devices=serial:EPH-* rd.ephemcrypt.expect=2"
	--append "rd.ephemcrypt.swap=64M systemd.mask=serial-getty@ttyS0.service")
"$VM_DIR/run.sh" --initrd "$out/initrd.img" --log "$out/volume.log" "${args[@]}" --append vmtest=volume "$@" ||
	fails=$((fails + 1))
hcheck refused-disk-byte-identical test "$(sha256sum <"$out/c.raw")" = "$sum_before"
for d in a b; do
	hcheck "marker-not-on-$d.raw" bash -c "! grep -aq EPHEMCRYPT-PLAINTEXT-MARKER '$out/$d.raw'"
done
"$VM_DIR/run.sh" --initrd "$out/stock.img" --log "$out/nohook.log" "${args[@]}" --append vmtest=nohook "$@" ||
	fails=$((fails + 1))
{
	tr -d '\r' <"$out/volume.log" | sed -n 's/^REPORT //p'
	printf '\n== Image sizes (zstd, as update-initramfs makes them)\n'
	printf '   stock initramfs-tools image: %s bytes\n   with ephemcrypt:             %s bytes (+%s)\n' \
		"$(stat -c %s "$out/stock.img")" "$(stat -c %s "$out/initrd.img")" \
		"$(($(stat -c %s "$out/initrd.img") - $(stat -c %s "$out/stock.img")))"
} >"$out/report.txt"
rm -f "$out"/*.raw
((fails == 0)) || die "initramfs-tools boot test: $fails failure(s) (logs in $out)"
log "PASS: initramfs-tools: $(grep -m1 -o 'Startup finished in .*' "$out/report.txt" || echo 'no systemd-analyze');" \
	"image $(stat -c %s "$out/stock.img") -> $(stat -c %s "$out/initrd.img") bytes"
