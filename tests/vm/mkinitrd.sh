#!/bin/bash
# mkinitrd.sh OUT.img INIT_SCRIPT [FILE:DEST ...]
# Build a test initramfs: a cached base archive (busybox, kernel modules, mke2fs/mkfs.xfs/
# blkid/dmsetup with their libraries, /lib/vmtest.sh) followed by a small archive holding
# INIT_SCRIPT as /init and each FILE at DEST. The kernel unpacks concatenated archives in order.
# Env: VM_MODULES="mod ..." adds modules (their dependencies are resolved with modprobe).
# VM_ARCH=aarch64: the arm64 kernel's modules and the arm64 builds of the programs (userland.sh).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

(($# >= 2)) || die "usage: ${0##*/} OUT.img INIT_SCRIPT [FILE:DEST ...]"
out=$1 init=$2
shift 2
[[ -f $init ]] || die "no init script $init"
vm_kernel
stage='' base=''
trap 'rm -rf "$stage" "$out.$$" "$base.$$"' EXIT
kroot=${MODDIR%/lib/modules/*}

sysroot=$("$VM_DIR/userland.sh") # / on x86_64
case $VM_ARCH in
x86_64) aes="aesni-intel crypto_simd cryptd" triplet=x86_64-linux-gnu ;;
aarch64) aes="aes-ce-blk aes-neon-blk" triplet=aarch64-linux-gnu ;;
esac
MODULES="dm-mod dm-crypt nvme nvme-core ext4 jbd2 mbcache crc16 crc32c xfs libcrc32c
	$aes xts ecb cbc sha256 loop virtio_pci virtio_blk virtio-rng
	${VM_MODULES:-}"
BINS="/sbin/mke2fs /sbin/mkfs.ext4 /sbin/dumpe2fs /sbin/mkfs.xfs /sbin/blkid /sbin/dmsetup /bin/keyctl"
DATA="/etc/mke2fs.conf"
PKGS=(busybox-static e2fsprogs xfsprogs util-linux dmsetup keyutils libc6)

# The kernel takes zstd when built with it; gzip otherwise.
if grep -q '^CONFIG_RD_ZSTD=y' "$kroot/boot/config-$KVER"; then compress=(zstd -q -9 -T0); else compress=(gzip -9n); fi

# pack DIR: write DIR as a compressed newc archive on stdout (sorted, owned by root).
pack() { (cd "$1" && find . -mindepth 1 -print0 | LC_ALL=C sort -z |
	cpio --null -o -H newc -R 0:0 --reproducible --quiet | "${compress[@]}"); }

# copy SRC DEST_IN_STAGE: a file (symlinks kept as links, targets copied) plus, for a
# dynamic ELF, the libraries and loader ldd lists (for another architecture: elf_libs, from
# the sysroot).
copy() {
	local src=$1 dst=$2 lib
	mkdir -p "$(dirname "$dst")"
	rm -rf "$dst"
	if [[ -L $src && ${3:-} != deref ]]; then
		local target
		target=$(readlink "$src")
		ln -s "$target" "$dst"
		[[ $target == /* ]] || copy "$(dirname "$src")/$target" "$(dirname "$dst")/$target"
		return
	fi
	cp -aL "$src" "$dst"
	if [[ $sysroot != / && $src == "$sysroot"/* ]]; then
		for lib in $(elf_libs "$sysroot" "$triplet" "${src#"$sysroot"}"); do
			[[ -e $stage$lib ]] || { mkdir -p "$stage${lib%/*}" && cp -L "$sysroot$lib" "$stage$lib"; }
		done
		return
	fi
	ldd "$src" >/dev/null 2>&1 || return 0
	for lib in $(ldd "$src" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'); do
		[[ -e $stage$lib ]] || copy "$lib" "$stage$lib" deref
	done
}

build_base() {
	local base=$1 m f
	stage=$(mktemp -d "$CACHE/stage.XXXXXX")
	mkdir -p "$stage"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,run,tmp,mnt,etc,root,lib,lib64,var}
	mknod -m 600 "$stage/dev/console" c 5 1
	mknod -m 666 "$stage/dev/null" c 1 3
	copy "${sysroot%/}/bin/busybox" "$stage/bin/busybox"
	# The applets of this machine's busybox: the same Debian version as the sysroot's.
	/bin/busybox --list-full | while read -r f; do [[ -e $stage/$f ]] || ln -s /bin/busybox "$stage/$f"; done
	for f in $BINS $DATA; do copy "${sysroot%/}$f" "$stage$f"; done
	copy "$VM_DIR/guest/lib.sh" "$stage/lib/vmtest.sh"
	local mdir=$stage/lib/modules/$KVER
	mkdir -p "$mdir"
	for m in $MODULES; do
		modprobe --show-depends -d "$kroot" -S "$KVER" "$m" >/dev/null || die "no module $m in $KVER"
		for f in $(modprobe --show-depends -d "$kroot" -S "$KVER" "$m" | awk '$1 == "insmod" { print $2 }'); do
			copy "$f" "$stage${f#"$kroot"}"
		done
	done
	cp "$MODDIR"/modules.{order,builtin,builtin.modinfo} "$mdir/"
	depmod -b "$stage" "$KVER"
	pack "$stage" >"$base.$$"
	mv "$base.$$" "$base"
	rm -rf "$stage"
	stage=''
}

# The base archive is rebuilt when this script, the guest library, the kernel, the module
# list or a package that provides its files changes.
key=$({
	cat "$VM_DIR/mkinitrd.sh" "$VM_DIR/lib.sh" "$VM_DIR/guest/lib.sh"
	echo "$KVER $MODULES ${compress[*]} $sysroot"
	dpkg-query -W "${PKGS[@]}"
} | sha256sum | cut -c1-16)
base=$CACHE/initrd/base-$KVER-$key.img
[[ -s $base ]] || lock "initrd-$KVER"
if [[ ! -s $base ]]; then
	start=$SECONDS
	mkdir -p "$CACHE/initrd"
	build_base "$base"
	log "base archive $base built in $((SECONDS - start)) s ($(du -h "$base" | cut -f1))"
	find "$CACHE/initrd" -name 'base-*' -mtime +7 -delete # bases unused for a week
fi
touch "$base"

stage=$(mktemp -d "$CACHE/stage.XXXXXX")
copy "$init" "$stage/init" deref
chmod 755 "$stage/init"
for pair; do
	[[ $pair == *:/* ]] || die "expected FILE:/DEST, got $pair"
	[[ -e ${pair%:/*} ]] || die "no file ${pair%:/*}"
	copy "${pair%:/*}" "$stage/${pair##*:/}" deref
done
mkdir -p "$(dirname "$out")"
cat "$base" <(pack "$stage") >"$out.$$"
mv "$out.$$" "$out"
