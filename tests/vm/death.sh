#!/bin/bash
# death.sh [all | CASE...]: setup killed mid-way in every boot chain; the policy must still hold.
# The fault-injection build (make fault-build) kills itself with a signal before a named change
# (ephemcrypt.fault=OP@OBJECT=SIGKILL|SIGABRT on the kernel command line: the boot chains pass no
# environment; src/fault.rs); the chain's hook must run the second invocation (setup --died),
# which undoes what the dead run left and applies on-failure. Cases are CHAIN-SIGNAL-MOMENT:
#   CHAIN   dracut (shell init), sd (dracut's systemd initrd), sdnoem (the same image without
#           emergency.service), mkinitcpio (busybox init, as mkinitcpio.sh boots it), itools
#           (initramfs-tools, the image update-initramfs builds in a Debian root)
#   SIGNAL  kill (SIGKILL) or abrt (SIGABRT, what a panic does in a release build)
#   MOMENT  mapping (before any mapping: the stripe's create), crypt (right after the crypt
#           mapping: the swap slice's create), mount (after the mount and swapon: the first bind)
# under the default policy (tmpfs): the busybox real root (guest/death-root.sh) must find tmpfs
# on /var/log, /tmp and /var/tmp, no mapping, swap or mount of the dead run, the mount point it
# made gone, and the status saying setup was killed, by which signal, at which step. And
# CHAIN-halt (SIGKILL after the crypt mapping, on-failure=halt): the machine powers off before
# switch_root in every chain (the shell hooks; the systemd unit's FailureAction=). And
# CHAIN-twice (SIGKILL after the crypt mapping, and the second invocation killed too, at its
# first mapping removal: ephemcrypt.fault-after-death=): the same, whatever the policy.
# Without arguments: one case per chain (make test, through all.sh); 'all': every case (make
# vm-death). Summary in .cache/death/summary.txt.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
vm_kernel

repo=$VM_DIR/../..
bin=${EPHEMCRYPT_FAULT_BIN:-$repo/target/fault/x86_64-unknown-linux-musl/release/ephemcrypt}
rel=$repo/target/x86_64-unknown-linux-musl/release/ephemcrypt
[[ -x $bin ]] || die "no $bin: run 'make fault-build' first"
grep -aq EPHEMCRYPT_FAULT "$bin" || die "$bin is not a fault-injection build ('make fault-build')"
[[ -x $rel ]] || die "no $rel: run 'make build' first"
out=$CACHE/death
mkdir -p "$out"
rm -f "$out"/*.log "$out"/*.raw "$out/summary.txt"

CHAINS=(dracut sd sdnoem mkinitcpio itools)
REPRESENTATIVES=(dracut-kill-crypt sd-abrt-mount sdnoem-kill-mount sdnoem-halt mkinitcpio-abrt-mapping itools-kill-mount)
cases=("$@")
if ((${#cases[@]} == 0)); then
	cases=("${REPRESENTATIVES[@]}")
elif [[ ${cases[*]} == all ]]; then
	cases=()
	for c in "${CHAINS[@]}"; do
		for s in kill abrt; do for m in mapping crypt mount; do cases+=("$c-$s-$m"); done; done
		cases+=("$c-halt" "$c-twice")
	done
fi

# The images, each built once, when a case needs it.
declare -A built=()
# with_bin IMG: append a cpio archive holding the fault build at usr/sbin/ephemcrypt (the kernel
# unpacks concatenated archives in order: the later file wins), after zero padding to 4 bytes.
with_bin() {
	local s
	s=$(mktemp -d "$CACHE/death-bin.XXXXXX")
	install -D -m755 "$bin" "$s/usr/sbin/ephemcrypt"
	truncate -s %4 "$1"
	(cd "$s" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) >>"$1"
	rm -rf "$s"
}
image() {
	local chain=$1 s mnt dest
	[[ -z ${built[$chain]:-} ]] || return 0
	case $chain in
	dracut)
		"$VM_DIR/dracut-initrd.sh" "$out/dracut.img"
		with_bin "$out/dracut.img" ;;
	sd)
		"$VM_DIR/dracut-initrd.sh" "$out/sd.img" --systemd
		with_bin "$out/sd.img" ;;
	sdnoem)
		# dracut's systemd image without emergency.service (a minimal custom image): unpacked,
		# the unit deleted, packed again.
		image sd
		"$VM_DIR/dracut-initrd.sh" "$out/sd-stock.img" --systemd
		s=$(mktemp -d "$CACHE/death-sdnoem.XXXXXX")
		(cd "$s" && zstd -dc "$out/sd-stock.img" | cpio -idm --quiet)
		find "$s" -name 'emergency.service' -print -delete | sed 's/^/removed: /' >&2
		! find "$s" -name 'emergency.service' | grep -q . || die "emergency.service still in the image"
		(cd "$s" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet | zstd -q -T0) >"$out/sdnoem.img"
		rm -rf "$s" "$out/sd-stock.img"
		with_bin "$out/sdnoem.img" ;;
	mkinitcpio)
		# As mkinitcpio.sh boots it: its init (guest/mkinitcpio-init.sh), the busybox flavour's
		# runtime hook and the binary at mkinitcpio's paths (sbin is /usr/bin there).
		dest=$out/dest
		rm -rf "$dest"
		make --no-print-directory -s -C "$repo" install DESTDIR="$dest" >&2
		# add_runscript installs the runtime hook executable (mkinitcpio's init skips others).
		install -m755 "$dest/usr/lib/initcpio/hooks/ephemcrypt" "$out/hook-ephemcrypt"
		"$VM_DIR/mkinitrd.sh" "$out/mkinitcpio.img" "$VM_DIR/guest/mkinitcpio-init.sh" \
			"$bin:/usr/bin/ephemcrypt" "$out/hook-ephemcrypt:/hooks/ephemcrypt" \
			/usr/sbin/switch_root:/usr/bin/switch_root /sbin/mke2fs:/usr/bin/mkfs.ext4 ;;
	itools)
		# update-initramfs in a Debian root with the kernel, as boot-initramfs-tools.sh builds it.
		DEBIAN_KERNEL=yes "$VM_DIR/rootfs-debian.sh" "$out/itools-root.img" "$VM_DIR/guest/death-root.sh"
		mnt=$(mktemp -d "$CACHE/death-itools.XXXXXX")
		mount -o loop "$out/itools-root.img" "$mnt"
		make --no-print-directory -s -C "$repo" install DESTDIR="$mnt" PREFIX=/usr >&2
		mount --bind /proc "$mnt/proc" && mount --bind /sys "$mnt/sys" && mount --bind /dev "$mnt/dev"
		chroot "$mnt" update-initramfs -u -k "$KVER" >"$out/itools-build.log" 2>&1 || s=failed
		cp "$mnt/boot/initrd.img-$KVER" "$out/itools.img" || s=failed
		umount "$mnt/proc" "$mnt/sys" "$mnt/dev" "$mnt"
		rmdir "$mnt"
		rm -f "$out/itools-root.img"
		[[ ${s:-} != failed ]] || die "update-initramfs failed: see $out/itools-build.log"
		zstd -t -q "$out/itools.img" 2>/dev/null || die "$out/itools.img is not one zstd archive (early microcode?)"
		with_bin "$out/itools.img" ;;
	esac
	built[$chain]=1
}

# The real root: busybox, the checks as /sbin/init, without /mnt/ephemcrypt (setup makes it on
# the read-only root, so the dead run leaves a directory and a remount to undo).
ROOT_MOUNT_POINT=no "$VM_DIR/rootfs-busybox.sh" "$out/root.base" "$VM_DIR/guest/death-root.sh" "$rel:/usr/sbin/ephemcrypt"

fails=0
for c in "${cases[@]}"; do
	IFS=- read -r chain sig moment <<<"$c"
	[[ " ${CHAINS[*]} " == *" $chain "* ]] || die "unknown chain in case $c"
	image "$chain"
	policy=tmpfs
	after=''
	if [[ $sig == halt ]]; then policy=halt sig=kill moment=crypt; fi
	if [[ $sig == twice ]]; then policy=stop sig=kill moment=crypt after='device-mapper%20remove=SIGKILL'; fi
	case $sig in kill) n=9 signal=SIGKILL ;; abrt) n=6 signal=SIGABRT ;; *) die "unknown signal in case $c" ;; esac
	case $moment in
	mapping) fault="device-mapper%20create@ephemcrypt-stripe=$signal" word="mapping ephemcrypt-stripe" ;;
	crypt) fault="device-mapper%20create@ephemcrypt-swap=$signal" word="mapping ephemcrypt-swap" ;;
	mount) fault="bind-mount@/var/log=$signal" word="var/log" ;;
	*) die "unknown moment in case $c" ;;
	esac
	cp --sparse=always "$out/root.base" "$out/root-$c.img"
	args=(--initrd "$out/$chain.img" --log "$out/$c.log" --timeout 420 --virtio "$out/root-$c.img"
		--disk "$out/$c-a.raw:EPH-A:1G" --disk "$out/$c-b.raw:EPH-B:1G"
		--append "root=/dev/vda ro rd.shell=0 rd.ephemcrypt.devices=serial:EPH-* rd.ephemcrypt.expect=2"
		--append "rd.ephemcrypt.swap=64M rd.ephemcrypt.on-failure=${policy/stop/tmpfs} ephemcrypt.fault=$fault"
		--append "${after:+ephemcrypt.fault-after-death=$after}")
	start=$SECONDS result=PASS
	if [[ $policy == tmpfs ]]; then
		"$VM_DIR/run.sh" "${args[@]}" --append "vmtest.death=$n:${word// /%20}" >"$out/$c.run" 2>&1 || result=FAIL
	else
		# The boot must stop before switch_root: the real root never reports. The machine
		# halts, panics (qemu exits), or sits in a shell: the monitor resets it then.
		# Every chain powers the machine off (qemu exits); a stop that does not (a shell) is reset.
		args+=(--monitor 'emergency mode|system_reset' --monitor 'Refusing to continue|system_reset')
		"$VM_DIR/run.sh" "${args[@]}" --timeout 300 >"$out/$c.run" 2>&1 || true
		log=$(tr -d '\r' <"$out/$c.log")
		if grep -aq 'VMTEST PASS real-root' <<<"$log"; then
			result=FAIL && echo "$c: the real root ran" >>"$out/$c.run"
		elif ! grep -aq 'setup killed by signal 9 (SIGKILL)' <<<"$log"; then
			result=FAIL && echo "$c: no 'setup killed by signal 9' from the second invocation" >>"$out/$c.run"
		elif ! grep -aq 'reboot: Power down' <<<"$log"; then
			result=FAIL && echo "$c: the machine did not power off" >>"$out/$c.run"
		fi
	fi
	# Word splitting of the fault in the unit's command line (%20) must not hide the case: the
	# fault fired.
	grep -aq "FAULT injected: $signal" "$out/$c.log" || { result=FAIL && echo "$c: the fault did not fire" >>"$out/$c.run"; }
	[[ $result == PASS ]] || { fails=$((fails + 1)); cat "$out/$c.run" >&2; }
	printf '%-26s %-4s %4ss\n' "$c" "$result" $((SECONDS - start)) | tee -a "$out/summary.txt" >&2
	rm -f "$out/root-$c.img" "$out/$c"-[ab].raw
done
log "summary ($out/summary.txt):"
cat "$out/summary.txt" >&2
((fails == 0)) || die "$fails death case(s) failed (console logs in $out)"
log "PASS: ${#cases[@]} death cases"
