#!/bin/bash
# smoke.sh [run.sh options...]: self-test of the harness. Builds an initrd around guest/smoke.sh
# and boots it with two fresh 512 MiB NVMe disks (serials SMOKE-A, SMOKE-B) and a virtio disk.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
vm_kernel # once for the whole script: its images and its boots use the same kernel

out=$CACHE/smoke
mkdir -p "$out"
rm -f "$out"/*.raw
t=$SECONDS
"$VM_DIR/mkinitrd.sh" "$out/initrd.img" "$VM_DIR/guest/smoke.sh"
log "initrd built in $((SECONDS - t)) s"
exec "$VM_DIR/run.sh" --initrd "$out/initrd.img" --log "$out/console.log" \
	--disk "$out/a.raw:SMOKE-A:512M" --disk "$out/b.raw:SMOKE-B:512M" --virtio "$out/v.raw:64M" "$@"
