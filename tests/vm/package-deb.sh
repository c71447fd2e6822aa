#!/bin/bash
# package-deb.sh [run.sh options...]: the path a Debian or Ubuntu user takes, through the recipe of
# docs/recipes. `make deb` builds the package; a Debian 12 root with the cloud kernel and
# initramfs-tools (rootfs-debian.sh, DEBIAN_KERNEL=yes) boots with its stock initramfs, and
# guest/package.sh runs docs/recipes/install-ephemcrypt.sh there with the Kubernetes node
# configuration (docs/recipes/kubernetes): `apt-get install ./ephemcrypt_*.deb`, whose trigger
# rebuilds the initramfs. The next boot uses that image (taken out of the root disk, as a boot
# loader would) with two disks: the volume must be in place, with no other step.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
vm_kernel

repo=$VM_DIR/../..
out=$CACHE/package-deb
mkdir -p "$out"
rm -f "$out"/*.raw "$out"/*.log "$out"/*.img
make --no-print-directory -s -C "$repo" deb >"$out/make-deb.log" 2>&1 || { cat "$out/make-deb.log" >&2; die "make deb failed"; }
deb=$(compgen -G "$repo/dist/ephemcrypt_*_amd64.deb" | tail -n1)
log "$(grep -E '^dist/.*bytes$|^lintian|^SKIPPED' "$out/make-deb.log" | paste -sd';' | sed 's/;/; /g')"
DEBIAN_KERNEL=yes DEBIAN_EXTRA=man-db "$VM_DIR/rootfs-debian.sh" "$out/root.img" "$VM_DIR/guest/package.sh" \
	"$deb:/root/$(basename "$deb")" "$repo/docs/recipes/install-ephemcrypt.sh:/root/install-ephemcrypt.sh" \
	"$repo/docs/recipes/kubernetes/ephemcrypt.conf:/root/kubernetes.conf"
initrd() { # initrd OUT: the root's /boot/initrd.img-$KVER
	rm -f "$1"
	debugfs -R "dump /boot/initrd.img-$KVER $1" "$out/root.img" >/dev/null 2>&1
	[[ -s $1 ]] || die "no /boot/initrd.img-$KVER in the root"
}
args=(--timeout 1500 --silence 900 --virtio "$out/root.img" --append "root=/dev/vda ro systemd.mask=serial-getty@ttyS0.service")
fails=0
initrd "$out/stock.img"
"$VM_DIR/run.sh" --initrd "$out/stock.img" --log "$out/install.log" "${args[@]}" --append vmtest=install "$@" ||
	fails=$((fails + 1))
initrd "$out/packaged.img"
log "initramfs: stock $(stat -c %s "$out/stock.img") bytes, after installing the package $(stat -c %s "$out/packaged.img")"
"$VM_DIR/run.sh" --initrd "$out/packaged.img" --log "$out/boot.log" "${args[@]}" --append vmtest=boot \
	--disk "$out/a.raw:EPH-A:1G" --disk "$out/b.raw:EPH-B:1G" "$@" || fails=$((fails + 1))
rm -f "$out"/*.raw
((fails == 0)) || die "package test: $fails failure(s) (logs in $out)"
log "PASS: apt-get install ./$(basename "$deb"), then a boot with the volume in place"
