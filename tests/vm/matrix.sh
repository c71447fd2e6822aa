#!/bin/bash
# matrix.sh [SUITE@ARCH...]: the setup VM test (setup.sh) on each Debian cloud kernel ephemcrypt is
# tested on, one after another (make matrix; not part of make test, which runs 6.1 on both
# architectures and 6.12 on x86_64 through all.sh). Default: bullseye@x86_64 (5.10),
# bookworm@x86_64 (6.1, the host apt's kernel: the one make test boots), trixie@x86_64 (6.12),
# trixie@aarch64 (6.12). Each kernel is resolved and downloaded by kernel.sh (KERNEL_SUITE: an apt
# configuration of its own for that suite). Afterwards a table per kernel: the time to userspace
# (the guest's uptime when /init starts its checks), setup's time (the sum of its step timings),
# the dm-crypt target version setup read and the crypt flags it chose, the test's result; kept in
# .cache/matrix/report.md with each console log beside it.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

kernels=("$@")
((${#kernels[@]})) || kernels=(bullseye@x86_64 bookworm@x86_64 trixie@x86_64 trixie@aarch64)
out=$CACHE/matrix
mkdir -p "$out"
report=$out/report.md
{
	echo "| kernel | arch | userspace after | setup | dm-crypt | crypt flags | test | wall |"
	echo "|---|---|---|---|---|---|---|---|"
} >"$report.tmp"
failed=0
for k in "${kernels[@]}"; do
	suite=${k%@*} arch=${k#*@}
	[[ $k == *@* && $arch =~ ^(x86_64|aarch64)$ ]] || die "$k: SUITE@ARCH, ARCH x86_64 or aarch64"
	# bookworm: the host's apt sources (the kernel make test runs); another suite: its own.
	[[ $suite == bookworm ]] && suite=''
	log "setup test on $k"
	start=$SECONDS rc=0
	env -u KERNEL_PKG -u KVER -u VMLINUZ -u MODDIR KERNEL_SUITE="$suite" VM_ARCH="$arch" \
		bash "$VM_DIR/setup.sh" >"$out/$k.log" 2>&1 || rc=$?
	wall=$((SECONDS - start))
	dir=$CACHE/setup
	[[ $arch == x86_64 ]] || dir+=-$arch
	console=$out/$k.console.log
	tr -d '\r' <"$dir/console.log" >"$console" 2>/dev/null || : >"$console"
	# (the console's first lines start with the firmware's terminal escapes)
	kver=$(sed -n 's/^.*BOOT \([^ ]*\) [a-z0-9_]*: userspace ready after .*/\1/p' "$console" | head -n1)
	up=$(sed -n 's/^.*BOOT .*: userspace ready after \([0-9.]*\) s$/\1/p' "$console" | head -n1)
	setup_ms=$(awk '$1 == "STATUS-TEXT" && $3 == "ms" { s += $2 } END { print s + 0 }' "$console")
	dmcrypt=$(grep -o 'STATUS-TEXT .*kernel: dm-crypt [0-9.]*' "$console" | grep -o '[0-9.]*$' | head -n1)
	flags=$(sed -n 's/^STATUS-TEXT cipher: .*flags: //p' "$console" | head -n1)
	if ((rc == 0)); then result=PASS; else result="FAIL (rc $rc, $out/$k.log)" && failed=$((failed + 1)); fi
	printf '| %s | %s | %s s | %s ms | %s | %s | %s | %s s |\n' "${kver:-?}" "$arch" "${up:-?}" "$setup_ms" \
		"${dmcrypt:-?}" "${flags:-none}" "$result" "$wall" >>"$report.tmp"
	log "$k: $result in $wall s"
done
mv "$report.tmp" "$report"
cat "$report"
((failed == 0)) || die "$failed kernel(s) failed (logs in $out)"
log "PASS: setup on every kernel of the matrix"
