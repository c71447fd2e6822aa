#!/bin/bash
# cis.sh [run.sh options...]: a CIS partition layout, booted as boot-systemd.sh boots (Debian's
# dracut with its systemd module, a Debian 12 systemd root on /dev/vda, NVMe disks EPH-A and
# EPH-B for the volume). The root's fstab separates /var (/dev/vdb, nodev,nosuid), /var/log
# (/dev/vdc, nodev,nosuid,noexec) and /var/log/audit (/dev/vdd, nodev,nosuid,noexec), and /tmp is
# a tmpfs (nodev,nosuid,noexec), as CIS benchmarks want. After multi-user.target
# guest/cis.sh checks that every bind target (/var/log, /tmp, /var/tmp) is on the volume with the
# fstab's options, that /var/log/audit is its own persistent file system (the documented default),
# writes a marker to /var/log (logger, journalctl --flush, a file) and prints it; the host then
# looks for that marker in plaintext on every disk image (root, /var, /var/log, /var/log/audit):
# it must be on none. Last, the guest mounts a tmpfs over /var/tmp (a late mount that hides a
# bind target) and `ephemcrypt status` must say degraded, naming /var/tmp and the tmpfs.
# SELinux stays off here (issue 20's SELinux item comes later). Under TCG on a loaded host udev
# can take minutes to announce the disks: systemd waits up to 900 s for them, not 90.
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
"$VM_DIR/rootfs-debian.sh" "$out/root.img" "$VM_DIR/guest/cis.sh" "$bin:/usr/sbin/ephemcrypt" "$out/fstab:/etc/fstab" \
	"$VM_DIR/../../systemd/ephemcrypt-check.service:/etc/systemd/system/ephemcrypt-check.service"
# The root's /var onto its own disk, its /var/log onto another (with an empty audit directory
# for the third); the mount points stay empty on the disks below them.
debugfs -R "rdump /var $out" "$out/root.img" >/dev/null 2>&1
mkdir -p "$out/log" "$out/audit"
mv "$out/var/log"/* "$out/log/"
mkdir -p "$out/log/audit"
mkfs.ext4 -q -F -L var -d "$out/var" "$out/var.img" 512M
mkfs.ext4 -q -F -L log -d "$out/log" "$out/log.img" 256M
mkfs.ext4 -q -F -L audit -d "$out/audit" "$out/audit.img" 64M
rm -rf "$out/var" "$out/log" "$out/audit"

rc=0
"$VM_DIR/run.sh" --initrd "$out/initrd.img" --log "$out/cis.log" --timeout 1200 --virtio "$out/root.img" \
	--virtio "$out/var.img" --virtio "$out/log.img" --virtio "$out/audit.img" \
	--disk "$out/a.raw:EPH-A:1G" --disk "$out/b.raw:EPH-B:1G" \
	--append "root=/dev/vda ro rd.ephemcrypt.devices=serial:EPH-* rd.ephemcrypt.swap=64M rd.ephemcrypt.expect=2" \
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
