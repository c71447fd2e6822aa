#!/bin/bash
# all.sh: every VM test, in one run with one kernel. The Debian cloud kernel is resolved once here
# (kernel.sh: every apt-get update comes before that) and passed on to each test, so every image
# is built for the kernel that boots it.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
vm_kernel
for t in setup faults mkinitcpio boot-dracut boot-systemd boot-initramfs-tools; do
	start=$SECONDS
	bash "$VM_DIR/$t.sh"
	log "$t.sh passed in $((SECONDS - start)) s"
done
