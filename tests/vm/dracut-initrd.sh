#!/bin/bash
# dracut-initrd.sh OUT.img [--conf-d | --systemd | --systemd-none | --systemd-shell]
# An initramfs made by Debian's real dracut (dracut-core) from the module `make install` puts in
# a staging directory, for the cloud kernel of kernel.sh. The host's /usr and /etc stay as they
# are: dracut's tree (/usr/lib/dracut) is copied to the cache with the installed module added, and
# /usr/bin/dracut is pointed at the copy with dracutbasedir= (it honours the variable when set),
# at an empty configuration (--conf, --confdir) and at the cached kernel (--kver, --kmoddir). The
# staged sbin leads DRACUT_PATH (dracut replaces PATH with it), so the module's
# `require_binaries ephemcrypt` finds the binary there.
# Shell init (systemd omitted) or, with --systemd, dracut's systemd initrd; not host-only, with
# the drivers of a virtio root and NVMe disks. Root stacks the test root does not have (lvm, md,
# LUKS, multipath, resume, ...) are left out, as on a host without those tools: what ephemcrypt
# needs (dm and its udev rule) must come from its own module; and under TCG each dracut module's
# hooks cost boot time. ephemcrypt comes in by --add ephemcrypt or, with --conf-d, by the
# dracut.conf.d snippet that make install ships. lsinitrd must then show the binary, dm-crypt,
# mkfs.ext4, ephemcrypt's udev rule (and neither dmsetup nor the dm rules) and the pre-pivot hook
# (shell init) or the unit wanted by initrd.target (systemd). Images are cached by their inputs
# (installed files, this script, kernel, host packages). For bench/boot-time.sh: --systemd-none,
# the same systemd initrd without ephemcrypt; --systemd-shell, with dracut's crypt and mdraid
# modules and the shell hook of bench/shell-hook instead (needs mdadm and cryptsetup-bin on the host).
# DEBIAN_SUITE=trixie (--systemd only): the suite's own dracut instead of the host's, as that
# distribution builds its image: a copy of a Debian 13 root with dracut-core (dracut-ng 106) and
# systemd 257 in it (rootfs-debian.sh, DEBIAN_EXTRA=dracut-core,zstd: the root boot-systemd.sh
# boots), `make install` into it, the kernel's modules bound at /usr/lib/modules/$KVER, and
# dracut run in a chroot of it with the root's own configuration (/etc/dracut.conf{,.d},
# /usr/lib/dracut/dracut.conf.d) and the same options; the image is checked as above.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

(($# >= 1)) || die "usage: ${0##*/} OUT.img [--conf-d | --systemd | --without-mkfs]"
out=$1 via=${2:---add}
case $via in
--add | --conf-d | --systemd | --without-mkfs | --systemd-none) need_pkgs dracut-core systemd udev dmsetup zstd ;;
--systemd-shell) need_pkgs dracut-core systemd udev dmsetup zstd mdadm cryptsetup-bin ;;
*) die "unknown option $via" ;;
esac
vm_kernel
suite=${DEBIAN_SUITE:-bookworm}
[[ $suite == bookworm || $via == --systemd ]] || die "DEBIAN_SUITE=$suite: --systemd only"

work=$CACHE/dracut${DEBIAN_SUITE:+-$suite}
lock "dracut${DEBIAN_SUITE:+-$suite}"
rm -rf "${work:?}"/{staging,lib,conf.d}
mkdir -p "$work/conf.d" "$(dirname "$out")"
make -s -C "$VM_DIR/../.." install DESTDIR="$work/staging" >&2

chroot=''
if [[ $suite != bookworm ]]; then
	# The suite's root, with ephemcrypt installed and the kernel's modules where its dracut looks.
	chroot=$work/mnt
	export DEBIAN_SUITE DEBIAN_EXTRA=${DEBIAN_EXTRA:-dracut-core,zstd}
	"$VM_DIR/rootfs-debian.sh" "$work/root.img" "$VM_DIR/guest/boot-systemd.sh"
	mkdir -p "$chroot"
	unmount() {
		umount "$chroot/usr/lib/modules/$KVER" "$chroot/proc" "$chroot/sys" "$chroot/dev" 2>/dev/null || true
		umount "$chroot" 2>/dev/null || true
		rm -f "$work/root.img"
	}
	trap unmount EXIT
	mount -o loop "$work/root.img" "$chroot"
	cp -a "$work/staging/." "$chroot/"
	mkdir -p "$chroot/usr/lib/modules/$KVER"
	mount --bind -o ro "$MODDIR" "$chroot/usr/lib/modules/$KVER"
	mount --bind /proc "$chroot/proc" && mount --bind /sys "$chroot/sys" && mount --bind /dev "$chroot/dev"
	chroot "$chroot" dracut --version >/dev/null 2>&1 || die "no dracut in the $suite root (DEBIAN_EXTRA=$DEBIAN_EXTRA)"
fi
# in_root CMD...: CMD in the suite's root (a clean environment), or on the host
in_root() {
	if [[ -n $chroot ]]; then chroot "$chroot" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@"; else "$@"; fi
}

key=$({
	cat "$VM_DIR/dracut-initrd.sh" "$VM_DIR/lib.sh" "$VM_DIR"/../../bench/shell-hook/*
	(cd "$work/staging" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
	echo "$KVER $via"
	in_root dpkg-query -W
} | sha256sum | cut -c1-16)
img=$work/initrd-$KVER-${via#--}-$key.img
if [[ ! -s $img && -n $chroot ]]; then
	omit=(i18n console-setup lvm dmraid multipath resume usrmount nvdimm lunmask virtiofs terminfo
		kernel-modules-extra modsign mdraid crypt)
	start=$SECONDS
	trap 'rm -f "$img.$$"; unmount' EXIT
	in_root dracut --quiet --force --kver "$KVER" --no-hostonly --omit "${omit[*]}" \
		--add-drivers "ext4 virtio_blk virtio_pci nvme" --compress zstd --no-early-microcode \
		--add "systemd ephemcrypt" /tmp/initrd.img 2>"$work/dracut.log" ||
		{ cat "$work/dracut.log" >&2; die "dracut of $suite failed"; }
	cat "$work/dracut.log" >&2
	mv "$chroot/tmp/initrd.img" "$img.$$"
	# shellcheck disable=SC2016 # dpkg-query's ${Version}
	log "$suite's $(in_root dracut --version 2>&1 | head -n1) built the image, with systemd" \
		"$(in_root dpkg-query -W -f '${Version}' systemd) in it"
elif [[ ! -s $img ]]; then
	cp -a /usr/lib/dracut "$work/lib"
	cp -a "$work/staging/usr/lib/dracut/modules.d/90ephemcrypt" "$work/lib/modules.d/"
	: >"$work/dracut.conf"
	add=(--add ephemcrypt) omit=(systemd)
	case $via in
	--conf-d)
		cp "$work/staging/usr/share/doc/ephemcrypt/dracut.conf.d-ephemcrypt.conf" "$work/conf.d/ephemcrypt.conf"
		add=() ;;
	--systemd) add=(--add "systemd ephemcrypt") omit=() ;;
	--systemd-none) add=(--add systemd) omit=() ;;
	--systemd-shell)
		cp -a "$VM_DIR/../../bench/shell-hook" "$work/lib/modules.d/91ephemhook"
		add=(--add "systemd ephemhook") omit=() ;;
	esac
	omit+=(i18n console-setup lvm dmraid multipath resume usrmount nvdimm lunmask virtiofs terminfo
		kernel-modules-extra modsign)
	[[ $via == --systemd-shell ]] || omit+=(mdraid crypt)
	start=$SECONDS
	trap 'rm -f "$img.$$"' EXIT
	path="$work/staging/usr/sbin /sbin /bin /usr/sbin /usr/bin"
	if [[ $via == --without-mkfs ]]; then
		# A build host without mkfs for the configured file system (ext4, the default): the build
		# must fail, naming it, not make an image that boots degraded every time.
		rm -rf "$work/sbin-without-mkfs" && mkdir -p "$work/sbin-without-mkfs"
		for f in /usr/sbin/* /sbin/*; do
			case ${f##*/} in mkfs* | mke2fs) ;; *) ln -sf "$(readlink -f "$f")" "$work/sbin-without-mkfs/${f##*/}" ;; esac
		done
		path="$work/staging/usr/sbin $work/sbin-without-mkfs /bin /usr/bin"
	fi
	if [[ $via == --without-mkfs ]] && DRACUT_PATH=$path PATH=${path// /:} dracutbasedir=$work/lib dracut \
		--quiet --force --conf "$work/dracut.conf" --confdir "$work/conf.d" --kver "$KVER" --kmoddir "$MODDIR" \
		--no-hostonly --omit "${omit[*]}" --compress zstd --no-early-microcode "${add[@]}" "$img.$$" \
		>"$work/dracut.log" 2>&1; then
		die "dracut built an image without mkfs.ext4 (see $work/dracut.log)"
	elif [[ $via == --without-mkfs ]]; then
		grep -q "ephemcrypt: the configured file system needs 'mkfs.ext4'" "$work/dracut.log" ||
			die "the failed build does not name mkfs.ext4: $(cat "$work/dracut.log")"
		log "without mkfs.ext4 the dracut build fails: $(grep -m1 "needs 'mkfs.ext4'" "$work/dracut.log")"
		exit 0
	fi
	DRACUT_PATH="$work/staging/usr/sbin /sbin /bin /usr/sbin /usr/bin" dracutbasedir=$work/lib dracut \
		--quiet --force --conf "$work/dracut.conf" --confdir "$work/conf.d" --kver "$KVER" --kmoddir "$MODDIR" \
		--no-hostonly --omit "${omit[*]}" --add-drivers "ext4 virtio_blk virtio_pci nvme" \
		--compress zstd --no-early-microcode "${add[@]}" "$img.$$" 2>"$work/dracut.log" ||
		{ cat "$work/dracut.log" >&2; die "dracut failed"; }
	grep -v "depends on '\?systemd" "$work/dracut.log" >&2 || true # the omitted module's dependants
	if [[ $via == --systemd-none || $via == --systemd-shell ]]; then # bench/boot-time.sh's comparisons
		mv "$img.$$" "$img"
		log "dracut built $img in $((SECONDS - start)) s ($(du -h "$img" | cut -f1))"
		cp "$img" "$out"
		exit 0
	fi
fi
if [[ ! -s $img ]]; then
	# The image must hold what the module installs; shell init must run the hook, systemd the unit.
	if [[ -n $chroot ]]; then
		cp "$img.$$" "$chroot/tmp/initrd.img"
		files=$(in_root lsinitrd /tmp/initrd.img | awk '{ print $9 }')
	else
		files=$(dracutbasedir=$work/lib lsinitrd "$img.$$" | awk '{ print $9 }')
	fi
	hook='usr/lib/dracut/hooks/pre-pivot/[0-9]*-ephemcrypt-hook\.sh'
	unit='.*/systemd/system/initrd\.target\.wants/ephemcrypt\.service'
	if [[ $via == --systemd ]]; then want=$unit unwanted=$hook; else want=$hook unwanted=$unit; fi
	for w in usr/sbin/ephemcrypt '.*/dm-crypt\.ko' 'usr/s\?bin/mkfs\.ext4' '.*/rules\.d/09-ephemcrypt\.rules' "$want"; do
		grep -qx "$w" <<<"$files" || die "the image lacks $w (see lsinitrd $img.$$)"
	done
	! grep -qx "$unwanted" <<<"$files" || die "the image has $unwanted: the wrong init flavour"
	# ephemcrypt's rule instead of the device-mapper rules: no dmsetup, no libdevmapper.
	for u in '.*/dmsetup' '.*/libdevmapper\.so.*' '.*/rules\.d/[0-9]*-dm\.rules'; do
		! grep -qx "$u" <<<"$files" || die "the image has $u (see lsinitrd $img.$$): ephemcrypt needs none of it"
	done
	# Every module the binary names for this kernel (the module holds no list of its own).
	mods=$("$work/staging/usr/sbin/ephemcrypt" needs --modules --kver "$KVER" --moddir "$MODDIR") || die "ephemcrypt needs --modules failed"
	for m in $mods; do
		grep -q "/${m//_/[-_]}\.ko" <<<"$files" || die "the image lacks module $m, which ephemcrypt needs --modules names"
	done
	log "the image holds the modules ephemcrypt needs --modules names: $(paste -sd' ' <<<"$mods")"
	mv "$img.$$" "$img"
	log "dracut built $img in $((SECONDS - start)) s ($(du -h "$img" | cut -f1))"
	find "$work" -maxdepth 1 -name 'initrd-*.img' -mtime +7 -delete # unused for a week
fi
touch "$img"
cp "$img" "$out"
