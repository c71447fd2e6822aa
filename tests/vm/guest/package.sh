#!/bin/sh
# /usr/local/sbin/vmtest of package-deb.sh, in a Debian 12 root with the cloud kernel and
# initramfs-tools installed, as a user has it.
# vmtest=install: what an image builder runs (docs/recipes/install-ephemcrypt.sh) with the
#   Kubernetes node configuration (docs/recipes/kubernetes/ephemcrypt.conf, its disks chosen by
#   serial here): `apt-get install ./ephemcrypt_*.deb`, whose trigger must rebuild the initramfs
#   with ephemcrypt in it; man pages work. The image holds a file in /var/lib/containerd, as an
#   image with baked container images does.
# vmtest=boot: the next boot, with the image the package made: the volume is in place, the
#   kubelet's and containerd's directories on it (the baked file hidden, as docs/recipes says), the
#   metrics written.
# shellcheck disable=SC2016 # sh -c '...' expands in the guest
# shellcheck source=lib.sh
. /lib/vmtest.sh
echo "VMTEST STAGE start"
state=$(systemctl is-system-running --wait)
if grep -q ' vmtest=install' /proc/cmdline; then
	sed -e 's/^devices = .*/devices = serial:EPH-*/' /root/kubernetes.conf >/root/node.conf
	echo 'expect = 2' >>/root/node.conf
	mkdir -p /var/lib/kubelet /var/lib/containerd/io.containerd.content.v1.content
	echo "a baked image" >/var/lib/containerd/io.containerd.content.v1.content/baked
	METRICS=yes sh /root/install-ephemcrypt.sh /root/ephemcrypt_*.deb /root/node.conf >/root/install.log 2>&1
	echo "rc=$?" >>/root/install.log
	sed 's/^/INSTALL /' /root/install.log
	check recipe-succeeded grep -qx 'rc=0' /root/install.log
	check package-installed sh -c 'dpkg -s ephemcrypt | grep -q "^Status: install ok installed"'
	check trigger-rebuilt-initramfs sh -c 'lsinitramfs /boot/initrd.img-$(uname -r) | grep -q "^usr/sbin/ephemcrypt$"'
	check image-has-the-configuration sh -c 'lsinitramfs /boot/initrd.img-$(uname -r) | grep -q "^etc/ephemcrypt.conf$"'
	check recipe-notes-baked-files grep -q '/var/lib/containerd holds 1 file(s) in this image' /root/install.log
	check units-enabled systemctl is-enabled -q ephemcrypt-check.service ephemcrypt-metrics.timer
	check man-ephemcrypt sh -c 'MANWIDTH=80 man ephemcrypt 2>/dev/null | grep -q "encrypt a machine.s ephemeral disks"'
	check man-ephemcrypt.conf sh -c 'MANWIDTH=80 man 5 ephemcrypt.conf 2>/dev/null | grep -q "on-failure"'
	check status-says-not-run-yet sh -c 'ephemcrypt status; test $? = 3'
	check a-bad-configuration-fails-the-recipe sh -c 'echo "swap = lots" >/root/bad.conf
		! sh /root/install-ephemcrypt.sh /root/ephemcrypt_*.deb /root/bad.conf >/root/bad.log 2>&1 &&
		grep -q "swap" /root/bad.log && grep -q "nothing was changed" /root/bad.log &&
		cmp /etc/ephemcrypt.conf /root/node.conf'
	sync
	vm_done
	exit
fi
status=$(ephemcrypt status 2>&1)
echo "$status" | sed 's/^/STATUS /'
check boot-running test "$state" = running
check status-ok sh -c 'echo "$1" | grep -q "^result: ok"' _ "$status"
for m in /var/log /tmp /var/tmp /var/lib/kubelet /var/lib/containerd; do check "on-volume-$m" on_volume "$m"; done
check kubelet-capacity-is-the-volume sh -c 'test "$(stat -f -c %b /var/lib/kubelet)" = "$(stat -f -c %b /mnt/ephemcrypt)"'
check baked-file-hidden-dirs-kept sh -c '! test -e /var/lib/containerd/io.containerd.content.v1.content/baked &&
	test -d /var/lib/containerd/io.containerd.content.v1.content'
check no-swap sh -c 'test -z "$(swapon --noheadings --show=NAME)"'
check check-unit-ok sh -c 'journalctl -b -q -o cat -u ephemcrypt-check.service | grep -q "ephemcrypt: ok: 2 disk(s) encrypted"'
# The textfile directory is node_exporter's package's (not installed here); the sandboxed unit
# may write only there and makes no directory.
mkdir -p /var/lib/prometheus/node-exporter
systemctl start ephemcrypt-metrics.service
sed 's/^/METRICS /' /var/lib/prometheus/node-exporter/ephemcrypt.prom
check metrics-written grep -qx 'ephemcrypt_setup_result{result="ok"} 1' /var/lib/prometheus/node-exporter/ephemcrypt.prom
check metrics-volume-bytes grep -q '^ephemcrypt_volume_bytes [1-9]' /var/lib/prometheus/node-exporter/ephemcrypt.prom
vm_done
