#!/bin/bash
# all.sh: every VM test, in one run with one kernel per architecture. The Debian cloud kernels
# (x86_64, and arm64 for the arm64 setup test) are resolved once here (kernel.sh: every apt-get
# update comes before that) and passed on to each test, so every image is built for the kernel
# that boots it. `faults@quick`: one fault case of each kind (all of them: make vm-faults).
# `setup@trixie`: the setup test on trixie's 6.12 kernel (every kernel: make matrix);
# `boot-initramfs-tools@trixie`: the initramfs-tools boot in a Debian 13 root (initramfs-tools
# 0.148, systemd 257) on that kernel, the representative of the newer userspace (the dracut-ng
# boot, systemd@trixie, takes 7-8 minutes: make matrix).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
arm64=$(env -u KERNEL_PKG -u KVER -u VMLINUZ -u MODDIR VM_ARCH=aarch64 "$VM_DIR/kernel.sh") || die "no arm64 kernel"
# setup@trixie: the setup test on Debian 13's 6.12 cloud kernel, the representative of the kernel
# matrix (make matrix: 5.10, 6.1, 6.12 x86_64 and 6.12 arm64).
trixie=$(env -u KERNEL_PKG -u KVER -u VMLINUZ -u MODDIR KERNEL_SUITE=trixie VM_ARCH=x86_64 "$VM_DIR/kernel.sh") ||
	die "no trixie kernel"
VM_ARCH=x86_64 vm_kernel
for t in setup setup@trixie fips faults@quick death mkinitcpio boot-dracut boot-systemd cis boot-initramfs-tools \
	boot-initramfs-tools@trixie escrow guard tpm setup@aarch64; do
	start=$SECONDS
	if [[ $t == *@aarch64 ]]; then
		(eval "$arm64" && bash "$VM_DIR/${t%@*}.sh")
	elif [[ $t == *@trixie ]]; then
		(eval "$trixie" && DEBIAN_SUITE=trixie bash "$VM_DIR/${t%@*}.sh")
	elif [[ $t == *@* ]]; then
		bash "$VM_DIR/${t%@*}.sh" "${t#*@}" # an argument: faults@quick is faults.sh quick
	else
		bash "$VM_DIR/$t.sh"
	fi
	log "$t passed in $((SECONDS - start)) s"
done
