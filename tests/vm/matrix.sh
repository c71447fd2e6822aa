#!/bin/bash
# matrix.sh [SUITE@ARCH | itools@trixie | systemd@trixie ...]: the setup VM test (setup.sh) on
# each Debian cloud kernel ephemcrypt is tested on, one after another (make matrix; not part of
# make test, which runs 6.1 on both architectures and 6.12 on x86_64 through all.sh). Default:
# bullseye@x86_64 (5.10), bookworm@x86_64 (6.1, the host apt's kernel: the one make test boots),
# trixie@x86_64 (6.12), trixie@aarch64 (6.12), then itools@trixie: the initramfs-tools boot
# (boot-initramfs-tools.sh) in a Debian 13 root (initramfs-tools 0.148, systemd 257) with its
# 6.12 kernel, and systemd@trixie: the dracut systemd boot (boot-systemd.sh) in a Debian 13 root
# whose own dracut (dracut-ng 106) builds the image with its systemd 257, on the 6.12 kernel (not
# in make test: one run takes 6-9 minutes under TCG here). Each kernel is resolved and downloaded
# by kernel.sh (KERNEL_SUITE: an apt configuration of its own for that suite). Afterwards a table,
# one row per test: the boot time (setup: the guest's uptime when /init starts its checks;
# initramfs-tools and systemd: systemd-analyze's line), setup's time (the sum of its step
# timings), the dm-crypt target version setup read and the crypt flags it chose, the result; kept
# in .cache/matrix/report.md with each console log.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

kernels=("$@")
((${#kernels[@]})) || kernels=(bullseye@x86_64 bookworm@x86_64 trixie@x86_64 trixie@aarch64 itools@trixie systemd@trixie)
out=$CACHE/matrix
mkdir -p "$out"
report=$out/report.md
{
	echo "| test | kernel | arch | boot | setup | dm-crypt | crypt flags | result | wall |"
	echo "|---|---|---|---|---|---|---|---|---|"
} >"$report.tmp"
failed=0
for k in "${kernels[@]}"; do
	suite=${k%@*} arch=${k#*@} what=setup
	if [[ $suite == itools || $suite == systemd ]]; then
		# itools@SUITE, systemd@SUITE: the initramfs-tools or the dracut systemd boot in that
		# suite's root with its kernel.
		[[ $arch == trixie ]] || die "$k: $suite@trixie"
		what=$suite suite=$arch arch=x86_64
		[[ $what == systemd ]] || what=initramfs-tools
	fi
	[[ $k == *@* && $arch =~ ^(x86_64|aarch64)$ ]] || die "$k: SUITE@ARCH, ARCH x86_64 or aarch64"
	# bookworm: the host's apt sources (the kernel make test runs); another suite: its own.
	[[ $suite == bookworm ]] && suite=''
	log "$what test on $k"
	start=$SECONDS rc=0 kver=''
	# The kernel of this row, resolved once (kernel.sh) and passed to the test.
	if vars=$(env -u KERNEL_PKG -u KVER -u VMLINUZ -u MODDIR KERNEL_SUITE="$suite" VM_ARCH="$arch" \
		"$VM_DIR/kernel.sh" 2>"$out/$k.log"); then
		kver=$(sed -n "s/^KVER=//p" <<<"$vars")
		if [[ $what == setup ]]; then
			(eval "$vars" && bash "$VM_DIR/setup.sh") >>"$out/$k.log" 2>&1 || rc=$?
			log=$CACHE/setup
			[[ $arch == x86_64 ]] || log+=-$arch
			log+=/console.log prefix=STATUS-TEXT
		elif [[ $what == systemd ]]; then
			(eval "$vars" && DEBIAN_SUITE=$suite bash "$VM_DIR/boot-systemd.sh") >>"$out/$k.log" 2>&1 || rc=$?
			log=$CACHE/boot-systemd-$suite/volume.log prefix=REPORT
		else
			(eval "$vars" && DEBIAN_SUITE=$suite bash "$VM_DIR/boot-initramfs-tools.sh") >>"$out/$k.log" 2>&1 || rc=$?
			log=$CACHE/boot-itools-$suite/volume.log prefix=REPORT
		fi
	else
		rc=1 log=/dev/null prefix=none
	fi
	wall=$((SECONDS - start))
	console=$out/$k.console.log
	tr -d '\r' <"$log" >"$console" 2>/dev/null || : >"$console"
	# (the console's first lines start with the firmware's terminal escapes)
	if [[ $what == setup ]]; then
		up=$(sed -n 's/^.*BOOT .*: userspace ready after \([0-9.]*\) s$/\1/p' "$console" | head -n1)
		up=${up:-?} up+=' s'
	else
		up=$(sed -n 's/^REPORT *Startup finished in //p' "$console" | head -n1)
	fi
	setup_ms=$(awk -v p="$prefix" '$1 == p && $3 == "ms" && $2 ~ /^[0-9]+$/ { s += $2 } END { print s + 0 }' "$console")
	dmcrypt=$(grep -o "$prefix .*kernel: dm-crypt [0-9.]*" "$console" | grep -o '[0-9.]*$' | head -n1)
	flags=$(sed -n "s/^$prefix *cipher: .*flags: //p" "$console" | head -n1)
	if ((rc == 0)); then result=PASS; else result="FAIL (rc $rc, $out/$k.log)" && failed=$((failed + 1)); fi
	printf '| %s | %s | %s | %s | %s ms | %s | %s | %s | %s s |\n' "$what" "${kver:-?}" "$arch" "${up:-?}" \
		"$setup_ms" "${dmcrypt:-?}" "${flags:-none}" "$result" "$wall" >>"$report.tmp"
	log "$k: $result in $wall s"
done
mv "$report.tmp" "$report"
cat "$report"
((failed == 0)) || die "$failed test(s) of the matrix failed (logs in $out)"
log "PASS: every test of the matrix"
