#!/bin/bash
# Ensure a Debian cloud kernel is unpacked under .cache/kernel/ and print
#   VM_ARCH=...  KERNEL_PKG=...  KVER=...  VMLINUZ=...  MODDIR=...
# as exported shell assignments. From another script: vm_kernel (lib.sh), or
# eval "$(tests/vm/kernel.sh)".
# KERNEL_PKG=linux-image-X-cloud-amd64 pins a package (a run that resolved it once passes it on).
# Otherwise it is resolved now, once: every package of the VM tests is installed first (an
# apt-get update, where one is needed, happens before the lists are read, never between
# building an image and booting it), then linux-image-cloud-amd64's dependency is read from the
# apt lists. Lists older than the archive name a kernel the archive may no longer have: when its
# download fails, the lists are updated and the kernel resolved again.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# VM_ARCH=aarch64: Debian's arm64 cloud kernel (apt's arm64 architecture is added where missing).
case ${VM_ARCH:=x86_64} in
x86_64) meta=linux-image-cloud-amd64 suffix='' ;;
aarch64) meta=linux-image-cloud-arm64 suffix=:arm64 ;;
*) die "VM_ARCH=$VM_ARCH: x86_64 or aarch64" ;;
esac
resolve() {
	apt-cache depends "$meta$suffix" 2>/dev/null |
		awk '$1 == "Depends:" && $2 ~ /^linux-image-/ { sub(/:arm64$/, "", $2); print $2; exit }'
}
# download PKG: the .deb (of this architecture) into the cache, unless it is there
download() {
	compgen -G "$CACHE/debs/${1}_*.deb" >/dev/null && return 0
	log "downloading $1$suffix"
	mkdir -p "$CACHE/debs"
	# _apt cannot write into a root-owned cache dir; download as root, quietly.
	(cd "$CACHE/debs" && apt-get download -q -o APT::Sandbox::User=root "$1$suffix" >&2)
}

if [[ -z ${KERNEL_PKG:-} ]]; then
	need_pkgs "${VM_PACKAGES[@]}"
	foreign_arch "$suffix"
	apt_lists "$meta$suffix"
	KERNEL_PKG=$(resolve)
	[[ -n $KERNEL_PKG ]] || die "cannot resolve the kernel package of $meta"
	if [[ ! -e $CACHE/kernel/${KERNEL_PKG#linux-image-}/.done ]] && ! download "$KERNEL_PKG"; then
		log "$KERNEL_PKG is not in the archive (apt lists older than it): apt-get update"
		apt-get update -q -o DPkg::Lock::Timeout=1800 >&2
		KERNEL_PKG=$(resolve)
		[[ -n $KERNEL_PKG ]] || die "cannot resolve the kernel package of $meta"
	fi
	log "kernel for this run: $KERNEL_PKG"
fi
KVER=${KERNEL_PKG#linux-image-}
root=$CACHE/kernel/$KVER

[[ -e $root/.done ]] || lock kernel
if [[ ! -e $root/.done ]]; then
	start=$SECONDS
	mkdir -p "$CACHE/kernel"
	download "$KERNEL_PKG" || die "cannot download $KERNEL_PKG"
	deb=$(compgen -G "$CACHE/debs/${KERNEL_PKG}_*.deb" | tail -n1)
	log "unpacking $deb"
	rm -rf "$root" "$root.tmp"
	dpkg -x "$deb" "$root.tmp"
	# Uncompressed modules + a fresh modules.dep: busybox insmod/modprobe need no xz/zstd support.
	find "$root.tmp/lib/modules/$KVER" -name '*.ko.xz' -exec xz -d {} +
	find "$root.tmp/lib/modules/$KVER" -name '*.ko.zst' -exec zstd -q -d --rm {} +
	depmod -b "$root.tmp" "$KVER"
	touch "$root.tmp/.done"
	mv "$root.tmp" "$root"
	log "kernel $KVER ready in $((SECONDS - start)) s"
fi

VMLINUZ=$root/boot/vmlinuz-$KVER
MODDIR=$root/lib/modules/$KVER
[[ -f $VMLINUZ && -d $MODDIR ]] || die "broken kernel cache $root (remove it)"
printf 'VM_ARCH=%q\nKERNEL_PKG=%q\nKVER=%q\nVMLINUZ=%q\nMODDIR=%q\nexport VM_ARCH KERNEL_PKG KVER VMLINUZ MODDIR\n' \
	"$VM_ARCH" "$KERNEL_PKG" "$KVER" "$VMLINUZ" "$MODDIR"
