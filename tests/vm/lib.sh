# shellcheck shell=bash
# Shared helpers for the tests/vm scripts (sourced, never run).
VM_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck disable=SC2034 # used by the scripts that source this file
CACHE=${VM_CACHE:-$VM_DIR/.cache}

log() { printf '%s: %s\n' "${0##*/}" "$*" >&2; }
die() { log "error: $*"; exit 1; }
# lock NAME: hold an exclusive lock on .cache/.NAME.lock until the script exits.
lock() { mkdir -p "$CACHE" && exec 9>"$CACHE/.$1.lock" && flock 9; }

# Every Debian package the VM tests use, installed together before anything is resolved from the
# apt lists (see kernel.sh): an apt-get update between building an image and booting it would
# change which kernel the lists name.
# shellcheck disable=SC2034 # used by kernel.sh
VM_PACKAGES=(qemu-system-x86 qemu-system-arm busybox-static cpio kmod zstd xz-utils dmsetup keyutils e2fsprogs
	xfsprogs util-linux dracut-core systemd udev debootstrap)

# vm_kernel: resolve the Debian cloud kernel once for this run (kernel.sh) and export KERNEL_PKG,
# KVER, VMLINUZ and MODDIR, so that every image this run builds and every VM it boots use that
# kernel. Scripts started from here inherit it and resolve nothing.
vm_kernel() {
	local vars
	vars=$("$VM_DIR/kernel.sh") || die "no kernel"
	eval "$vars"
}

# need_pkgs PKG...: apt-get install the Debian packages that are not installed yet.
need_pkgs() {
	local p missing=()
	for p; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
	done
	((${#missing[@]})) || return 0
	log "installing ${missing[*]}"
	apt_lists "${missing[0]}"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o DPkg::Lock::Timeout=1800 \
		--no-install-recommends "${missing[@]}" >&2
}

# foreign_arch SUFFIX: with SUFFIX :arm64, make apt fetch arm64 packages too (an update follows
# where its lists are missing: apt_lists).
foreign_arch() {
	[[ -n ${1:-} ]] || return 0
	dpkg --print-foreign-architectures | grep -qx "${1#:}" && return 0
	log "adding the ${1#:} architecture to apt"
	dpkg --add-architecture "${1#:}"
}

# elf_libs ROOT TRIPLET FILE...: the shared libraries and the loader that the ELF files FILE...
# (paths inside ROOT) need, recursively, as paths inside ROOT, one per line; "MISSING soname" for
# one ROOT lacks. For another architecture's programs, where ldd cannot run them.
elf_libs() {
	local root=$1 triplet=$2 f so d p
	shift 2
	local queue=("$@")
	local -A seen=()
	while ((${#queue[@]})); do
		f=${queue[0]} queue=("${queue[@]:1}")
		p=$(readelf -lW "$root$f" 2>/dev/null | sed -n 's/.*program interpreter: \(.*\)]/\1/p')
		if [[ -n $p && -z ${seen[$p]:-} ]]; then seen[$p]=1 && echo "$p"; fi
		for so in $(readelf -dW "$root$f" 2>/dev/null | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p'); do
			p=''
			for d in "/lib/$triplet" "/usr/lib/$triplet" /lib /usr/lib; do
				if [[ -e $root$d/$so ]]; then p=$d/$so && break; fi
			done
			if [[ -z $p ]]; then echo "MISSING $so" && continue; fi
			[[ -z ${seen[$p]:-} ]] || continue
			seen[$p]=1
			echo "$p"
			queue+=("$p")
		done
	done
}

# apt_lists PKG: run apt-get update when apt knows nothing about PKG (e.g. empty lists).
apt_lists() {
	apt-cache show "$1" >/dev/null 2>&1 && return 0
	log "apt-cache does not know $1: apt-get update"
	apt-get update -q -o DPkg::Lock::Timeout=1800 >&2
}
