#!/bin/bash
# Ensure a Debian cloud kernel is unpacked under .cache/kernel/ and print
#   KVER=...  VMLINUZ=...  MODDIR=...
# as shell assignments. From another script:  eval "$(tests/vm/kernel.sh)"
# KERNEL_PKG=linux-image-X-cloud-amd64 pins a package; by default the one that
# linux-image-cloud-amd64 depends on (in the local apt lists) is used.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

need_pkgs qemu-system-x86 busybox-static cpio kmod zstd xz-utils dmsetup keyutils e2fsprogs xfsprogs util-linux

meta=linux-image-cloud-amd64
resolved=$CACHE/kernel/resolved # apt-cache is slow here: resolve again only after apt-get update
if [[ -z ${KERNEL_PKG:-} && -s $resolved && $resolved -nt /var/lib/apt/lists ]]; then
	KERNEL_PKG=$(<"$resolved")
elif [[ -z ${KERNEL_PKG:-} ]]; then
	apt_lists "$meta"
	KERNEL_PKG=$(apt-cache depends "$meta" | awk '$1 == "Depends:" && $2 ~ /^linux-image-/ { print $2; exit }')
	[[ -n $KERNEL_PKG ]] || die "cannot resolve the kernel package of $meta"
	mkdir -p "${resolved%/*}" && echo "$KERNEL_PKG" >"$resolved"
fi
KVER=${KERNEL_PKG#linux-image-}
root=$CACHE/kernel/$KVER

[[ -e $root/.done ]] || lock kernel
if [[ ! -e $root/.done ]]; then
	start=$SECONDS
	mkdir -p "$CACHE/debs" "$CACHE/kernel"
	deb=$(compgen -G "$CACHE/debs/${KERNEL_PKG}_*.deb" | tail -n1 || true)
	if [[ -z $deb ]]; then
		log "downloading $KERNEL_PKG"
		# _apt cannot write into a root-owned cache dir; download as root, quietly.
		(cd "$CACHE/debs" && apt-get download -q -o APT::Sandbox::User=root "$KERNEL_PKG" >&2)
		deb=$(compgen -G "$CACHE/debs/${KERNEL_PKG}_*.deb" | tail -n1)
	fi
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
printf 'KVER=%q\nVMLINUZ=%q\nMODDIR=%q\nexport KVER VMLINUZ MODDIR\n' "$KVER" "$VMLINUZ" "$MODDIR"
