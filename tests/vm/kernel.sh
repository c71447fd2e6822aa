#!/bin/bash
# Ensure a Debian cloud kernel is unpacked under .cache/kernel/ and print
#   VM_ARCH=...  KERNEL_SUITE=...  KERNEL_PKG=...  KVER=...  VMLINUZ=...  MODDIR=...
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
# KERNEL_SUITE=bullseye (5.10), trixie (6.12), bookworm-backports (6.12): the cloud kernel of that
# Debian suite instead of the host's apt sources' (bookworm: 6.1), resolved and downloaded through
# an apt configuration of its own under the cache (its own sources and lists: the host's apt is
# neither changed nor updated). Unset: the host's apt, as before.
apt_opts=()
suite=${KERNEL_SUITE:-}
if [[ -n $suite ]]; then
	case $suite in bullseye | bookworm | trixie | bookworm-backports) ;; *) die "KERNEL_SUITE=$suite: bullseye, bookworm, trixie or bookworm-backports" ;; esac
	aptdir=$CACHE/apt/$suite
	apt_opts=(-o "Dir::Etc::SourceList=$aptdir/sources.list" -o Dir::Etc::SourceParts=/nonexistent
		-o "Dir::State::Lists=$aptdir/lists" -o "Dir::State::status=$aptdir/status" -o "Dir::Cache=$aptdir/cache"
		-o "APT::Architectures::=$(dpkg --print-architecture)" -o APT::Architectures::=arm64 -o Acquire::Languages=none)
fi
# suite_lists [force]: the suite's own apt lists, fetched once (again with force), under a lock.
suite_lists() {
	[[ -n $suite ]] || return 0
	mkdir -p "$aptdir/lists/partial" "$aptdir/cache/archives/partial"
	(
		flock 8
		[[ ${1:-} != force && -e $aptdir/.updated ]] && exit 0
		: >>"$aptdir/status"
		printf 'deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] %s %s main\n' \
			"${DEBIAN_MIRROR:-http://deb.debian.org/debian}" "$suite" >"$aptdir/sources.list"
		log "apt lists of $suite (for its kernel)"
		apt-get "${apt_opts[@]}" update -q >&2 && touch "$aptdir/.updated"
	) 8>"$CACHE/.apt-$suite.lock"
}
resolve() {
	apt-cache "${apt_opts[@]}" depends "$meta$suffix" 2>/dev/null |
		awk '$1 == "Depends:" && $2 ~ /^linux-image-/ { sub(/:arm64$/, "", $2); print $2; exit }'
}
# download PKG: the .deb (of this architecture) into the cache, unless it is there
download() {
	compgen -G "$CACHE/debs/${1}_*.deb" >/dev/null && return 0
	log "downloading $1$suffix${suite:+ ($suite)}"
	mkdir -p "$CACHE/debs"
	# _apt cannot write into a root-owned cache dir; download as root, quietly.
	(cd "$CACHE/debs" && apt-get "${apt_opts[@]}" download -q -o APT::Sandbox::User=root "$1$suffix" >&2)
}

if [[ -z ${KERNEL_PKG:-} ]]; then
	need_pkgs "${VM_PACKAGES[@]}"
	foreign_arch "$suffix"
	if [[ -n $suite ]]; then suite_lists; else apt_lists "$meta$suffix"; fi
	KERNEL_PKG=$(resolve)
	[[ -n $KERNEL_PKG ]] || die "cannot resolve the kernel package of $meta${suite:+ in $suite}"
	if [[ ! -e $CACHE/kernel/${KERNEL_PKG#linux-image-}/.done ]] && ! download "$KERNEL_PKG"; then
		log "$KERNEL_PKG is not in the archive (apt lists older than it): apt-get update"
		if [[ -n $suite ]]; then suite_lists force; else apt-get update -q -o DPkg::Lock::Timeout=1800 >&2; fi
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
	# trixie's packages ship /usr/lib/modules (merged /usr): lib/modules is found through a link.
	[[ -e $root.tmp/lib || ! -d $root.tmp/usr/lib/modules ]] || ln -s usr/lib "$root.tmp/lib"
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
printf 'VM_ARCH=%q\nKERNEL_SUITE=%q\nKERNEL_PKG=%q\nKVER=%q\nVMLINUZ=%q\nMODDIR=%q\nexport VM_ARCH KERNEL_SUITE KERNEL_PKG KVER VMLINUZ MODDIR\n' \
	"$VM_ARCH" "$suite" "$KERNEL_PKG" "$KVER" "$VMLINUZ" "$MODDIR"
