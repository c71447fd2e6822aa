#!/bin/sh
# /init of the mkinitcpio boot test (tests/vm/mkinitcpio.sh), in the steps of mkinitcpio's busybox
# init: API file systems, the real root mounted read-only (no 'rw' on the command line) at
# /sysroot with /new_root linking to it (mkinitcpio 42 and later), the late hooks with
# init_functions' msg/err/launch_interactive_shell, then util-linux switch_root with an empty
# environment. The image holds what install/ephemcrypt added, at mkinitcpio's paths.
# shellcheck source=lib.sh
. /lib/vmtest.sh
vm_init # mount_setup, and the drivers udev would load
mkdir -p /run/initramfs /sysroot
ln -s sysroot /new_root

msg() { [ "${quiet:-}" = y ] || echo "$@"; }
err() { echo "ERROR: $*"; }
# The hook never asks for a rescue shell: on-failure=halt powers the machine off.
launch_interactive_shell() { fail latehook "the hook asked for a rescue shell"; }
grep -qw quiet /proc/cmdline && quiet=y

vm_wait_dev /dev/vda
check mount-root mount -t ext4 -o ro /dev/vda /sysroot
# run_hookfunctions: source each executable /hooks/NAME, then call its function
check hook-executable test -x /hooks/ephemcrypt
. /hooks/ephemcrypt
export PATH=/usr/local/sbin:/usr/local/bin:/usr/bin # as mkinitcpio's init sets it
t0=$(cut -d' ' -f1 /proc/uptime)
run_latehook
echo "VMTEST TIME latehook=${t0}..$(cut -d' ' -f1 /proc/uptime)"
exec env -i TERM=linux /usr/bin/switch_root /sysroot /sbin/init
