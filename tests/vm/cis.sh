#!/bin/bash
# cis.sh [run.sh options...]: a CIS partition layout, booted as boot-systemd.sh boots (Debian's
# dracut with its systemd module, a Debian 12 systemd root on /dev/vda, NVMe disks EPH-A and
# EPH-B for the volume). The root's fstab separates /var (/dev/vdb, nodev,nosuid), /var/log
# (/dev/vdc, nodev,nosuid,noexec) and /var/log/audit (/dev/vdd, nodev,nosuid,noexec), and /tmp is
# a tmpfs (nodev,nosuid,noexec), as CIS benchmarks want. After multi-user.target
# guest/cis.sh checks that every bind target (/var/log, /tmp and /var/tmp, which mounts of the
# fstab would hide and units bind in the real root, and /home, bound in the initramfs) is on the
# volume with the fstab's options, that /var/log/audit is its own persistent file system (the documented default),
# writes a marker to /var/log (logger, journalctl --flush, a file) and prints it; the host then
# looks for that marker in plaintext on every disk image (root, /var, /var/log, /var/log/audit):
# it must be on none. Last, the guest mounts a tmpfs over /var/tmp (a late mount that hides a
# bind target) and `ephemcrypt status` must say degraded, naming /var/tmp and the tmpfs.
# SELinux is enforcing (the reference policy, selinux-policy-default; the root and the separate
# disks labelled at build time, as a hardened image is built; rsyslog and auditd as the confined
# daemons): the guest also checks that `restorecon -Rn` finds nothing to change on the volume's
# mount point and every bind target, that journald's persistent journal and rsyslog's syslog are
# written on the volume, and that no AVC denial involves the volume, its mappings or ephemcrypt.
# Under TCG on a loaded host udev can take minutes to announce the disks: systemd waits up to
# 900 s for them, not 90.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
vm_kernel
bin=$VM_DIR/../../target/x86_64-unknown-linux-musl/release/ephemcrypt
[[ -x $bin ]] || die "no $bin: run 'make build' first"
out=$CACHE/cis.$$
mkdir -p "$out"
trap 'rm -rf "$out"' EXIT
t=$SECONDS
"$VM_DIR/dracut-initrd.sh" "$out/initrd.img" --systemd
log "initramfs ready in $((SECONDS - t)) s"

cat >"$out/fstab" <<-'FSTAB'
	/dev/vda / ext4 errors=remount-ro 0 1
	/dev/vdb /var ext4 nodev,nosuid 0 2
	/dev/vdc /var/log ext4 nodev,nosuid,noexec 0 2
	/dev/vdd /var/log/audit ext4 nodev,nosuid,noexec 0 2
	tmpfs /tmp tmpfs nodev,nosuid,noexec,mode=1777 0 0
FSTAB
# The check unit as the package installs it (not enabled: the guest starts it).
DEBIAN_SELINUX=enforcing DEBIAN_EXTRA=rsyslog "$VM_DIR/rootfs-debian.sh" "$out/root.img" "$VM_DIR/guest/cis.sh" "$bin:/usr/sbin/ephemcrypt" "$out/fstab:/etc/fstab" \
	"$VM_DIR/../../systemd/ephemcrypt-check.service:/etc/systemd/system/ephemcrypt-check.service"
# The root's /var onto its own disk, its /var/log onto another and /var/log/audit onto a third,
# with their labels (cp -a keeps security.selinux; mkfs.ext4 -d too); the mount points stay
# empty on the disks below them.
mkdir -p "$out/mnt"
mount -o loop,ro "$out/root.img" "$out/mnt"
cp -a "$out/mnt/var" "$out/var" || { umount "$out/mnt" && die "copying /var out of $out/root.img failed"; }
umount "$out/mnt"
# like FROM TO: TO gets FROM's owner, mode and security label (a mount point's root as the
# directory it replaces)
like() {
	python3 - "$@" <<-'PY'
		import os, sys
		a, b = sys.argv[1:]
		st = os.lstat(a)
		os.chown(b, st.st_uid, st.st_gid)
		os.chmod(b, st.st_mode & 0o7777)
		os.setxattr(b, "security.selinux", os.getxattr(a, "security.selinux"))
	PY
}
mkdir "$out/log" "$out/audit"
like "$out/var/log" "$out/log"
like "$out/var/log/audit" "$out/audit"
find "$out/var/log/audit" -mindepth 1 -maxdepth 1 -exec mv -t "$out/audit" {} +
find "$out/var/log" -mindepth 1 -maxdepth 1 ! -name audit -exec mv -t "$out/log" {} +
mkdir "$out/log/audit"
like "$out/var/log/audit" "$out/log/audit"
rmdir "$out/var/log/audit"
mkfs.ext4 -q -F -L var -d "$out/var" "$out/var.img" 512M
mkfs.ext4 -q -F -L log -d "$out/log" "$out/log.img" 256M
mkfs.ext4 -q -F -L audit -d "$out/audit" "$out/audit.img" 64M
rm -rf "${out:?}/var" "${out:?}/log" "${out:?}/audit"
# mkfs made each lost+found, unlabelled: labelled as the policy says, as an image builder's
# relabel after mkfs would.
for img in var log audit; do
	debugfs -w -R "ea_set /lost+found security.selinux system_u:object_r:lost_found_t:s0" "$out/$img.img" 2>/dev/null
done

rc=0
"$VM_DIR/run.sh" --initrd "$out/initrd.img" --log "$out/cis.log" --timeout 1200 --virtio "$out/root.img" \
	--virtio "$out/var.img" --virtio "$out/log.img" --virtio "$out/audit.img" \
	--disk "$out/a.raw:EPH-A:1G" --disk "$out/b.raw:EPH-B:1G" \
	--append "root=/dev/vda ro rd.ephemcrypt.devices=serial:EPH-* rd.ephemcrypt.swap=64M rd.ephemcrypt.expect=2" \
	--append "rd.ephemcrypt.bind=/var/log,/tmp,/var/tmp,/home security=selinux selinux=1 enforcing=1" \
	--append "systemd.mask=serial-getty@ttyS0.service systemd.default_device_timeout_sec=900" "$@" || rc=$?
# The console log and the report are kept (the disk images are not).
mkdir -p "$CACHE/cis"
console=$CACHE/cis/console.log report=$CACHE/cis/report.txt
cp "$out/cis.log" "$console"
tr -d '\r' <"$console" | sed -n 's/^REPORT //p' >"$report"
# The marker the guest wrote to /var/log: on no disk in plaintext (the NVMe disks hold only
# ciphertext: they are searched too).
marker=$(tr -d '\r' <"$console" | grep -ao 'MARKER EPHMARK-[0-9a-f-]*' | head -n1 | cut -d' ' -f2)
if [[ -z $marker ]]; then
	echo "HOST FAIL marker: the guest printed no marker" && rc=1
else
	for img in root var log audit a b; do
		f=$out/$img.img
		[[ -f $f ]] || f=$out/$img.raw
		if grep -aq "$marker" "$f"; then
			echo "HOST FAIL marker-not-on-$img: $marker found in plaintext on $img" && rc=1
		else
			echo "HOST PASS marker-not-on-$img"
		fi
	done
fi
((rc == 0)) || die "CIS layout test failed (console log $console, report $report)"
log "PASS: CIS layout (report in $report)"
