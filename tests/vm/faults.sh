#!/bin/bash
# faults.sh [CASE...]: a fault at every step of setup on a real kernel, and crashes mid-setup.
# Each case is one boot (guest/faults.sh prepares the fault and runs setup in the initramfs;
# guest/faults-root.sh checks from the real root that nothing is left half-made and that the
# status names the step). Faults are real where they can be made from outside (a module or
# program missing from the image, a read-only root disk, a full /run, a mapping name taken, the
# keyring quota spent, a disk detached through qemu's monitor while setup waits, 4096-byte
# blocks); the rest come from EPHEMCRYPT_FAULT in the test build of the binary (cargo feature
# fault-injection: `make fault-build`), which fails the N-th call of an operation before it
# reaches the kernel, or hangs there. Crash cases: setup hangs before a step (or mkfs runs), the
# host resets the machine through qemu's monitor (no clean shutdown), and the next boot on the
# same disks and root (case retake) must take the disks back by their headers and make a fresh
# volume with the binds in place.
# Upgrade: the previous release (PREVIOUS below: no on-disk header yet), built from this
# repository's history, makes its volume; the next boots, with this build, must refuse its disks
# as unrecognised data and leave them byte for byte as they were, take them with force=yes, and
# then take them back by their headers.
# Without arguments every case runs (make vm-faults, about 7 minutes); `quick` runs one case of
# each kind (make test, through all.sh: a disk gone while setup waits, a header, the keyring, the
# crypt table, a taken name, mkfs, the mount point, a bind, a unit, a full /run, continue, halt,
# 4096-byte blocks, and a crash with the boot after it); a summary (case, outcome, failed step,
# seconds) is written to .cache/faults/summary.txt.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
vm_kernel

bin=${EPHEMCRYPT_FAULT_BIN:-$VM_DIR/../../target/fault/x86_64-unknown-linux-musl/release/ephemcrypt}
[[ -x $bin ]] || die "no $bin: run 'make fault-build' first"
grep -aq EPHEMCRYPT_FAULT "$bin" || die "$bin is not a fault-injection build ('make fault-build')"
out=$CACHE/faults
mkdir -p "$out"
rm -f "$out"/*.raw "$out"/*.img "$out"/*.log "$out/summary.txt"

MATRIX=(wait-detach header stripe-create stripe-load random-key crypt-module key-quota crypt-load crypt-resume
	name-taken swap-node data-create swap-signature swapon mkfs-missing mkfs-fails remount-rw mount-point-file
	mount-fs-missing bind skeleton remount-ro remove-busy unit status-full continue halt sector-size)
CRASHES=(crash-headers crash-crypt crash-mkfs crash-binds crash-status)
UPGRADE=(upgrade-prev upgrade-next upgrade-force upgrade-after)
QUICK=(wait-detach header key-quota crypt-load name-taken mkfs-fails mount-point-file bind unit status-full
	continue halt sector-size crash-mkfs)
cases=("$@")
((${#cases[@]})) || cases=("${MATRIX[@]}" "${CRASHES[@]}" "${UPGRADE[@]}")
[[ ${cases[*]} != quick ]] || cases=("${QUICK[@]}")

# The previous release: the last one without the on-disk header (v0 volumes: the stripe from
# sector 0 of each disk). Built once from git history into the cache.
PREVIOUS=ffe5c6357168dc1f5d4b5115354b8ce3ca3a981f
prev=$CACHE/previous/ephemcrypt-${PREVIOUS:0:12}
repo=$VM_DIR/../..
if [[ ! -x $prev ]]; then
	git -C "$repo" cat-file -e "$PREVIOUS^{commit}" 2>/dev/null ||
		die "the previous release $PREVIOUS is not in this clone's history (a shallow clone? git fetch --unshallow)"
	log "building the previous release ${PREVIOUS:0:12} for the upgrade cases"
	src=$(mktemp -d "$CACHE/previous-src.XXXXXX")
	git -C "$repo" archive "$PREVIOUS" | tar -x -C "$src"
	(cd "$src" && cargo build --release --locked --quiet --target x86_64-unknown-linux-musl \
		--target-dir "$CACHE/previous/target") || die "cannot build the previous release"
	mkdir -p "$(dirname "$prev")"
	cp "$CACHE/previous/target/x86_64-unknown-linux-musl/release/ephemcrypt" "$prev"
	rm -rf "$src"
fi

"$VM_DIR/mkinitrd.sh" "$out/initrd.img" "$VM_DIR/guest/faults.sh" "$bin:/bin/ephemcrypt" "$prev:/bin/ephemcrypt-prev"
# The real roots: busybox, the checks at /sbin/vmcheck, no /mnt/ephemcrypt (setup makes it on the
# read-only root), /etc/hostname a file; the second looks like a systemd root whose fstab mounts
# /var from its own disk (setup writes units for it).
echo ephemcrypt-vm >"$out/hostname"
check=$VM_DIR/guest/faults-root.sh
ROOT_MOUNT_POINT=no "$VM_DIR/rootfs-busybox.sh" "$out/root.base" "$check" "$check:/sbin/vmcheck" \
	"$out/hostname:/etc/hostname"
printf '/dev/vda / ext4 ro 0 1\n/dev/vdb /var ext4 defaults 0 2\n' >"$out/fstab"
ROOT_MOUNT_POINT=no ROOT_INIT_LINK=/lib/systemd/systemd "$VM_DIR/rootfs-busybox.sh" "$out/root-systemd.base" \
	"$check" "$check:/sbin/vmcheck" "$out/hostname:/etc/hostname" "$out/fstab:/etc/fstab"

fails=0
# boot CASE ROOT RUN.SH-ARGS...: one boot of CASE on a copy of ROOT (kept as root-CASE.img)
boot() {
	local c=$1 root=$2 start=$SECONDS rc=0 step
	shift 2
	"$VM_DIR/run.sh" --initrd "$out/initrd.img" --log "$out/$c.log" --timeout 300 --virtio "$root" \
		--append "vmtest.case=${c%%-after-*}" "$@" || rc=$?
	# The status' failed step and reason, as the checks read them.
	step=$(tr -d '\r' <"$out/$c.log" | sed -n 's/^STATUS *"failed_step": "\(.*\)",$/\1/p' | head -n1)
	printf '%-17s %-5s %4ss  %s\n' "$c" "$([[ $rc == 0 ]] && echo PASS || echo FAIL)" $((SECONDS - start)) \
		"${step:--}" >>"$out/summary.txt"
	((rc == 0)) || fails=$((fails + 1))
}
disks=(--disk "$out/a.raw:EPH-A:256M" --disk "$out/b.raw:EPH-B:256M")
for c in "${cases[@]}"; do
	base=$out/root.base
	args=("${disks[@]}")
	case $c in
	upgrade-*)
		[[ $c != upgrade-prev ]] || rm -f "$out"/u[ab].raw
		args=(--disk "$out/ua.raw:EPH-A:256M" --disk "$out/ub.raw:EPH-B:256M")
		[[ $c == upgrade-prev || -f $out/ua.raw ]] || die "$c needs upgrade-prev before it in the same run"
		[[ $c != upgrade-next ]] || sums=$(cat "$out"/u[ab].raw | md5sum) ;;
	wait-detach) args+=(--monitor 'VMTEST STAGE setup|device_del disk1') ;;
	unit) base=$out/root-systemd.base ;;
	sector-size)
		rm -f "$out"/[ab]4k.raw
		args=(--disk "$out/a4k.raw:EPH-A:256M:4096" --disk "$out/b4k.raw:EPH-B:256M:4096") ;;
	crash-mkfs) args+=(--monitor 'VMTEST STAGE mkfs running|system_reset') ;;
	crash-*) args+=(--monitor 'FAULT injected: hang|system_reset') ;;
	esac
	cp --sparse=always "$base" "$out/root-$c.img"
	boot "$c" "$out/root-$c.img" "${args[@]}"
	case $c in
	sector-size) # refused by the plan: nothing was written to the disks
		for d in a4k b4k; do
			if cmp -s -n 1048576 "$out/$d.raw" /dev/zero; then echo "HOST PASS untouched-$d"; else
				echo "HOST FAIL untouched-$d: the plan refused the disk, but its first MiB is not zero"
				fails=$((fails + 1))
			fi
		done ;;
	crash-*) boot "retake-after-$c" "$out/root-$c.img" "${disks[@]}" ;;
	upgrade-next) # refused: not a byte changed
		if [[ $(cat "$out"/u[ab].raw | md5sum) == "$sums" ]]; then echo "HOST PASS upgrade-disks-untouched"; else
			echo "HOST FAIL upgrade-disks-untouched: the disks of the previous release's volume changed"
			fails=$((fails + 1))
		fi ;;
	esac
	rm -f "$out/root-$c.img"
done
log "summary ($out/summary.txt):"
cat "$out/summary.txt" >&2
((fails == 0)) || die "$fails fault case(s) failed (console logs in $out)"
log "PASS: ${#cases[@]} fault and crash cases"
