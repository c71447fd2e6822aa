#!/bin/bash
# rootfs-busybox.sh OUT.img INIT_SCRIPT [FILE:DEST ...]
# A small real root for boot-chain tests: an ext4 image (made with mkfs.ext4 -d, no mounting)
# holding busybox with its applets, /sbin/init = INIT_SCRIPT, /lib/vmtest.sh (guest helpers),
# the directories a real root has (/var/log, /tmp 1777, /var/tmp 1777, /mnt/ephemcrypt, /run)
# and each FILE at DEST (e.g. the ephemcrypt binary, for `ephemcrypt status` after boot).
# Env: ROOT_MOUNT_POINT=no leaves out /mnt/ephemcrypt (setup must make it); ROOT_INIT_LINK=TARGET
# makes /sbin/init a symbolic link to TARGET (e.g. /lib/systemd/systemd: a root that looks like
# systemd's to setup).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

(($# >= 2)) || die "usage: ${0##*/} OUT.img INIT_SCRIPT [FILE:DEST ...]"
out=$1 init=$2
shift 2
need_pkgs busybox-static e2fsprogs
stage=$(mktemp -d "$CACHE/rootfs.XXXXXX")
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,run,etc,root,lib,var/log,var/tmp,tmp,mnt}
[[ ${ROOT_MOUNT_POINT:-} == no ]] || mkdir "$stage/mnt/ephemcrypt"
chmod 1777 "$stage/tmp" "$stage/var/tmp"
cp /bin/busybox "$stage/bin/busybox"
/bin/busybox --list-full | while read -r f; do [[ -e $stage/$f ]] || ln -s /bin/busybox "$stage/$f"; done
rm -f "$stage/sbin/init"
install -m755 "$init" "$stage/sbin/init"
[[ -z ${ROOT_INIT_LINK:-} ]] || ln -sf "$ROOT_INIT_LINK" "$stage/sbin/init"
install -m644 "$VM_DIR/guest/lib.sh" "$stage/lib/vmtest.sh"
echo "a log line from the image, hidden once /var/log is bound" >"$stage/var/log/image.log"
printf 'NAME=busybox-root\n' >"$stage/etc/os-release"
for pair; do
	[[ $pair == *:/* ]] || die "expected FILE:/DEST, got $pair"
	install -D -m755 "${pair%:/*}" "$stage/${pair##*:/}"
done
rm -f "$out"
mkfs.ext4 -q -F -L busybox-root -d "$stage" "$out" 64M
