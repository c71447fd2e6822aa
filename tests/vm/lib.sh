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
VM_PACKAGES=(qemu-system-x86 busybox-static cpio kmod zstd xz-utils dmsetup keyutils e2fsprogs xfsprogs
	util-linux dracut-core systemd udev debootstrap)

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

# apt_lists PKG: run apt-get update when apt knows nothing about PKG (e.g. empty lists).
apt_lists() {
	apt-cache show "$1" >/dev/null 2>&1 && return 0
	log "apt-cache does not know $1: apt-get update"
	apt-get update -q -o DPkg::Lock::Timeout=1800 >&2
}
