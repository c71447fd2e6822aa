#!/bin/bash
# userland.sh: print the root of the programs that test initramfs images of VM_ARCH are made of
# (mkinitrd.sh): / for x86_64 (this machine's own, installed from VM_PACKAGES); for aarch64, the
# arm64 builds of the same Debian packages and the libraries they need, downloaded with apt-get
# and unpacked (dpkg -x) under .cache/userland/, once per set of package versions. A library no
# listed package provides stops the script, naming it.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

case ${VM_ARCH:-x86_64} in
x86_64) echo / && exit 0 ;;
aarch64) arch=arm64 triplet=aarch64-linux-gnu ;;
*) die "VM_ARCH=$VM_ARCH: x86_64 or aarch64" ;;
esac
# The programs of mkinitrd.sh (BINS there) and the packages of their libraries.
BINS=(/sbin/mke2fs /sbin/mkfs.ext4 /sbin/mkfs.xfs /sbin/blkid /sbin/dmsetup /bin/keyctl)
PACKAGES=(busybox-static e2fsprogs xfsprogs util-linux dmsetup keyutils
	libc6 libext2fs2 libcom-err2 libblkid1 libuuid1 libdevmapper1.02.1 libselinux1 libudev1 libpcre2-8-0
	libcap2 libkeyutils1 libinih1 liburcu8 libgcc-s1)
foreign_arch ":$arch"
apt_lists "libc6:$arch"
versions=$(for p in "${PACKAGES[@]}"; do
	apt-cache policy "$p:$arch" | awk -v p="$p" '$1 == "Candidate:" { print p "=" $2 }'
done)
key=$(echo "$versions" | sha256sum | cut -c1-16)
root=$CACHE/userland/$arch-$key
if [[ ! -e $root/.done ]]; then
	lock "userland-$arch"
fi
if [[ ! -e $root/.done ]]; then
	debs=$CACHE/debs/$arch
	mkdir -p "$debs"
	rm -rf "$root.tmp" && mkdir -p "$root.tmp"
	while read -r pv; do
		p=${pv%%=*} v=${pv#*=}
		[[ $v != '(none)' ]] || die "apt has no $p for $arch"
		compgen -G "$debs/${p}_*.deb" >/dev/null || (cd "$debs" &&
			apt-get download -q -o APT::Sandbox::User=root "$p:$arch=$v" >&2) ||
			die "cannot download $p:$arch"
		dpkg -x "$(compgen -G "$debs/${p}_*.deb" | tail -n1)" "$root.tmp"
	done <<<"$versions"
	# Every library the programs of the test images need must be here.
	unprovided=$(elf_libs "$root.tmp" "$triplet" "${BINS[@]}" | sed -n 's/^MISSING //p')
	[[ -z $unprovided ]] || die "no package listed in $0 provides $(echo "$unprovided" | tr '\n' ' ')for $arch"
	touch "$root.tmp/.done"
	rm -rf "$root"
	mv "$root.tmp" "$root"
	log "userland for $arch ready in $root"
	find "$CACHE/userland" -maxdepth 1 -name "$arch-*" ! -name "${root##*/}" -exec rm -rf {} + # superseded
fi
echo "$root"
