#!/bin/bash
# rootfs-debian.sh OUT.img TEST_SCRIPT [FILE:DEST ...]
# A Debian 12 real root with systemd for boot-chain tests: a raw ext4 image (root=/dev/vda) made
# from `debootstrap --variant=minbase bookworm` plus systemd-sysv, udev and dmsetup (lsblk,
# findmnt and mke2fs come with minbase). Root has no password (serial console), the journal is
# persistent (/var/log/journal), and vmtest.service runs /usr/local/sbin/vmtest after
# multi-user.target with its output on the console. The image is cached under .cache/debian and
# rebuilt only when the way it is built changes; each call copies it to OUT.img and
# writes TEST_SCRIPT as /usr/local/sbin/vmtest, guest/lib.sh as /lib/vmtest.sh and each FILE at
# DEST into the copy (debugfs: no mounting). Env: DEBIAN_MIRROR overrides apt's bookworm mirror.
# DEBIAN_SUITE=trixie: a Debian 13 root instead (cached as images of their own).
# DEBIAN_KERNEL=yes: a root that boots its own way, as a cloud image does: initramfs-tools and
# this run's Debian cloud kernel (kernel.sh) installed in it, with the stock initramfs that
# update-initramfs made at the kernel's installation (/boot/initrd.img-$KVER); a 2G image.
# DEBIAN_EXTRA=pkg,pkg: more packages in the root (cached as a variant of its own).
# DEBIAN_SELINUX=enforcing: the reference policy (selinux-policy-default, policycoreutils, auditd)
# in the root, /etc/selinux/config set to enforcing, and every file labelled at build time
# (setfiles in the tree; mkfs.ext4 -d keeps the labels), as a hardened image is built; the files of
# each call are labelled too (setfiles in the loop-mounted copy). The kernel needs `security=selinux
# selinux=1` on its command line (run.sh --append).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

(($# >= 2)) || die "usage: ${0##*/} OUT.img TEST_SCRIPT [FILE:DEST ...]"
out=$1 script=$2
shift 2
need_pkgs debootstrap e2fsprogs
# DEBIAN_SUITE=trixie: a Debian 13 root (systemd 257, initramfs-tools 0.148, dracut-ng) instead.
suite=${DEBIAN_SUITE:-bookworm}
[[ $suite =~ ^(bookworm|trixie)$ ]] || die "DEBIAN_SUITE=$suite: bookworm or trixie"
# The host's apt sources name bookworm's mirror only: another suite's comes from Debian's.
[[ $suite == bookworm ]] || DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian/}
PACKAGES=systemd-sysv,udev,dmsetup${DEBIAN_EXTRA:+,$DEBIAN_EXTRA}
# Debian 13's minbase has no e2fsprogs (no longer priority required): a root on ext4 has it, and
# ephemcrypt's package depends on it (its hook refuses to build an image without mkfs.ext4).
[[ $suite == bookworm ]] || PACKAGES+=,e2fsprogs
selinux=${DEBIAN_SELINUX:-}
[[ -z $selinux || $selinux == enforcing ]] || die "DEBIAN_SELINUX=$selinux: only 'enforcing' is known"
[[ -z $selinux ]] || PACKAGES+=,selinux-policy-default,policycoreutils,auditd
FC=/etc/selinux/default/contexts/files/file_contexts
size=1G kernel=''
if [[ ${DEBIAN_KERNEL:-} == yes ]]; then
	vm_kernel
	PACKAGES+=,initramfs-tools,kmod,linux-base,zstd size=2G kernel=$(compgen -G "$CACHE/debs/${KERNEL_PKG}_*.deb" | tail -n1)
	[[ -n $kernel ]] || die "no .deb of $KERNEL_PKG in $CACHE/debs (kernel.sh downloads it)"
fi

build() { # build IMG: debootstrap into a tree, configure it, make the ext4 image
	local img=$1 tree mirror
	tree=$(mktemp -d "$CACHE/debian/tree.XXXXXX")
	trap 'rm -rf "$tree"' EXIT
	# shellcheck disable=SC2016 # $(REPO_URI) is apt's, not ours
	mirror=${DEBIAN_MIRROR:-$(apt-get indextargets --format '$(REPO_URI)' "Codename: $suite" \
		'Identifier: Packages' 2>/dev/null | grep -v security | head -n1)}
	log "debootstrap $suite from ${mirror:=http://deb.debian.org/debian/}"
	mkdir -p "$CACHE/debs/debootstrap"
	# shellcheck disable=SC2086 # one word (checked above), unquoted as the bookworm it replaced
	debootstrap --variant=minbase --include="$PACKAGES" --cache-dir="$CACHE/debs/debootstrap" \
		$suite "$tree" "$mirror" >"$CACHE/debian/debootstrap.log" 2>&1 ||
		die "debootstrap failed: see $CACHE/debian/debootstrap.log"
	# Small and quiet: no docs, man pages, locales, apt lists or package cache.
	rm -rf "$tree"/usr/share/{doc,man,info,locale}/* "$tree"/var/lib/apt/lists/* "$tree"/var/cache/apt/*.bin \
		"$tree"/var/cache/apt/archives/*.deb "$tree"/var/log/*.log "$tree"/var/log/apt/*
	echo ephemcrypt-vm >"$tree/etc/hostname"
	echo '/dev/vda / ext4 errors=remount-ro 0 1' >"$tree/etc/fstab"
	chroot "$tree" passwd -q -d root
	chroot "$tree" systemd-machine-id-setup >/dev/null 2>&1
	# No /mnt/ephemcrypt: setup makes it on the root the initrd mounted read-only.
	mkdir -p "$tree/etc/systemd/journald.conf.d" "$tree/var/log/journal"
	chroot "$tree" chown root:systemd-journal /var/log/journal
	chmod 2755 "$tree/var/log/journal"
	printf '[Journal]\nStorage=persistent\n' >"$tree/etc/systemd/journald.conf.d/persistent.conf"
	echo "a log line from the image, hidden once /var/log is bound" >"$tree/var/log/image.log"
	cat >"$tree/etc/systemd/system/vmtest.service" <<-'UNIT'
		[Unit]
		Description=VM test checks (tests/vm), then power off
		After=multi-user.target
		ConditionPathExists=/usr/local/sbin/vmtest

		[Service]
		Type=exec
		ExecStart=/usr/local/sbin/vmtest
		StandardOutput=tty
		StandardError=tty

		[Install]
		WantedBy=multi-user.target
	UNIT
	chroot "$tree" systemctl -q enable vmtest.service
	if [[ -n $kernel ]]; then
		# Its postinst builds the stock initramfs with update-initramfs, as on an installed system.
		cp "$kernel" "$tree/tmp/kernel.deb"
		mount --bind /proc "$tree/proc" && mount --bind /sys "$tree/sys" && mount --bind /dev "$tree/dev"
		trap 'umount "$tree/proc" "$tree/sys" "$tree/dev" 2>/dev/null; rm -rf "$tree"' EXIT
		chroot "$tree" dpkg -i /tmp/kernel.deb >"$CACHE/debian/kernel-install.log" 2>&1 ||
			die "installing $kernel in the root failed: see $CACHE/debian/kernel-install.log"
		umount "$tree/proc" "$tree/sys" "$tree/dev"
		rm -f "$tree/tmp/kernel.deb"
		[[ -s $tree/boot/initrd.img-$KVER ]] || die "no stock initramfs in the root after installing $kernel"
	fi
	[[ -z $selinux ]] || label "$tree"
	mkfs.ext4 -q -F -L debian-root -d "$tree" "$img.tmp" "$size" >/dev/null
	mv "$img.tmp" "$img"
	rm -rf "$tree"
	trap - EXIT
}

label() { # label TREE: SELinux enforcing at the next boot, every file labelled as the policy says
	local tree=$1
	printf 'SELINUX=enforcing\nSELINUXTYPE=default\n' >"$tree/etc/selinux/config"
	[[ -s $tree$FC ]] || die "no $FC in the root: did selinux-policy-default install?"
	setfiles_in "$tree" -e /proc -e /sys -e /dev / >"$CACHE/debian/setfiles.log" 2>&1 ||
		die "labelling the root failed: see $CACHE/debian/setfiles.log"
	getfattr_selinux "$tree/etc/fstab" | grep -q ':etc_t:' ||
		die "$tree/etc/fstab has no etc_t label after setfiles: does this file system keep security.* xattrs?"
}
# setfiles_in ROOT ARGS...: the root's setfiles with the root's policy, in a chroot with /proc
# (libselinux sets labels through /proc/self/fd)
setfiles_in() {
	local root=$1 rc=0
	shift
	mount -t proc proc "$root/proc"
	chroot "$root" setfiles -F "$FC" "$@" || rc=$?
	umount "$root/proc"
	return $rc
}
getfattr_selinux() { python3 -c 'import os,sys; print(os.getxattr(sys.argv[1], "security.selinux").decode())' "$1"; }

# The function as it reads for bookworm: the key of a bookworm image is the one it had before
# DEBIAN_SUITE existed (warm caches stay warm); another suite's differs by its name.
# shellcheck disable=SC2016 # sed expressions, not expansions
build_text=$(declare -f build | sed -e 's/"Codename: \$suite"/'\''Codename: '"$suite"\''/' -e 's/\$suite/'"$suite"'/g')
key=$(printf '%s\n' "$build_text" "$PACKAGES" "${kernel##*/}" ${selinux:+"$(declare -f label)"} |
	sha256sum | cut -c1-16)
variant=${kernel:+kernel}
variant=${variant:-plain}${DEBIAN_EXTRA:+-${DEBIAN_EXTRA//,/-}}${selinux:+-selinux}
img=$CACHE/debian/$suite-$variant-$key.img
[[ -s $img ]] || lock debian
if [[ ! -s $img ]]; then
	start=$SECONDS
	mkdir -p "$CACHE/debian"
	build "$img"
	log "Debian root $img built in $((SECONDS - start)) s ($(du -h "$img" | cut -f1) used of $size)"
	# superseded images of this variant (and of the naming before variants)
	find "$CACHE/debian" \( -name "$suite-$variant-????????????????.img" -o -name "$suite-????????????????.img" \) \
		! -name "${img##*/}" -delete
fi

# Copy the image and write the files of this test into the copy.
cp --sparse=always "$img" "$out.tmp"
cmds=() checks=()
put() { # put SRC DEST MODE
	local dir=${2%/*} d='' part
	cmds+=("cd /")
	for part in ${dir//\// }; do d+=${d:+/}$part && cmds+=("mkdir $d"); done
	cmds+=("cd ${dir:-/}" "rm ${2##*/}" "write $(realpath "$1") ${2##*/}" "sif ${2##*/} mode 0100$3")
	checks+=("$2")
}
put "$script" /usr/local/sbin/vmtest 755
put "$VM_DIR/guest/lib.sh" /usr/lib/vmtest.sh 644 # /lib is a link to usr/lib
for pair; do
	[[ $pair == *:/* ]] || die "expected FILE:/DEST, got $pair"
	[[ -f ${pair%:/*} ]] || die "no file ${pair%:/*}"
	put "${pair%:/*}" "/${pair##*:/}" "$(stat -c %a "${pair%:/*}")"
done
printf '%s\n' "${cmds[@]}" | debugfs -w -f - "$out.tmp" >/dev/null 2>&1 || true
for f in "${checks[@]}"; do
	debugfs -R "stat $f" "$out.tmp" 2>/dev/null | grep -q 'Type: regular' || die "could not write $f into $out"
done
if [[ -n $selinux ]]; then
	# Label what was written as the image's policy says (setfiles of the image, in the mounted copy).
	mnt=$(mktemp -d "$CACHE/debian/mnt.XXXXXX")
	mount -o loop "$out.tmp" "$mnt"
	rc=0
	setfiles_in "$mnt" "${checks[@]}" >/dev/null || rc=$?
	umount "$mnt" && rmdir "$mnt"
	((rc == 0)) || die "labelling ${checks[*]} in $out failed"
fi
mv "$out.tmp" "$out"
