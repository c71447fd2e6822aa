#!/bin/sh
# /init of the FIPS-mode and lockdown VM test (tests/vm/fips.sh): three blank 1 GiB NVMe disks,
# EPH-A, EPH-B and EPH-C; the new root is a tmpfs.
#   fips=1 on the command line: the kernel runs in FIPS mode. A cipher it refuses there
#     (twofish-xts-plain64, on EPH-A) is refused by plan and setup before anything is written,
#     naming FIPS mode and the cipher; so are key-bits 384 and escrow without escrow-fips = allow
#     (plan). Then setup with the default cipher on EPH-B and EPH-C: ok, tables as planned, swap
#     and mounts in place.
#   lockdown=confidentiality: the kernel is locked down; setup on EPH-B and EPH-C as above, and
#     the kernel logs no lockdown denial while it runs.
# shellcheck disable=SC2016 # sh -c '...' expands in the guest
# shellcheck source=lib.sh
. /lib/vmtest.sh
vm_init
vm_wait_dev /dev/nvme0n1 /dev/nvme1n1 /dev/nvme2n1
mount -t securityfs securityfs /sys/kernel/security

mkdir -p /sysroot
mount -t tmpfs -o mode=755 newroot /sysroot
mkdir -p /sysroot/var/log /sysroot/tmp /sysroot/var/tmp /sysroot/etc
chmod 1777 /sysroot/tmp /sysroot/var/tmp

node_of() { for d in /sys/block/nvme*; do grep -q "^$1 *$" "$d/device/serial" && echo "/dev/${d##*/}"; done; }
# zero_mib NODE: the first MiB of NODE (the header's reserved area) reads as zeros
zero_mib() { test "$(head -c 1048576 "$1" | tr -d '\000' | wc -c)" = 0; }
recipient=age1q7arm3ec8pulumstfqfq7k3canfn4gc3ycau906rhz9tff2xw4tqeymzxx

echo "fips_enabled=$(cat /proc/sys/crypto/fips_enabled) lockdown=$(cat /sys/kernel/security/lockdown)"
printf 'devices = serial:EPH-B, serial:EPH-C\nexpect = 2\nswap = 64M\n' >/run/ok.conf

# setup_ok: plan and setup with /run/ok.conf (the default cipher) on EPH-B and EPH-C: setup did
# what the plan printed, with swap and every mount in place.
setup_ok() {
	ephemcrypt plan --config /run/ok.conf --newroot /sysroot >/run/plan.txt
	check plan-exit-0 test $? = 0
	sed 's/^/PLAN /' /run/plan.txt
	ephemcrypt setup --config /run/ok.conf --newroot /sysroot 2>/run/setup.log
	rc=$?
	cat /run/setup.log
	check setup-exit-0 test $rc = 0
	check status-ok grep -q '"result": "ok"' /run/ephemcrypt/status.json
	check crypt-default-cipher sh -c 'dmsetup table ephemcrypt | grep -q " crypt aes-xts-plain64 :64:logon:ephemcrypt:ephemcrypt:[^ ]* 0 .* sector_size:4096$"'
	# Each mapping's table is the planned one, placeholders filled in (as in guest/setup.sh).
	awk '/^ *[0-9]+\. create mapping /{ name = $4; next }
		/^ *[0-9]+\. / { name = "" }
		name != "" && /^        [0-9]/ { sub(/^ +/, ""); print name " " $0 }' /run/plan.txt >/run/planned
	check plan-has-four-mappings test "$(cut -d' ' -f1 /run/planned | sort -u | wc -l)" = 4
	key=$(dmsetup table ephemcrypt | awk '{ print $5 }')
	while read -r name line; do
		want=$(echo "$line" | sed "s|KEY|$key|")
		for m in $(echo "$line" | grep -o '/dev/mapper/[^ ]*'); do
			want=$(echo "$want" | sed "s|$m|$(dm_dev "${m#/dev/mapper/}")|")
		done
		check "table-as-planned-$name" test "$(dmsetup table "$name")" = "$want"
	done </run/planned
	check swap-active swap_on ephemcrypt-swap
	check fs-mounted sh -c 'grep -q "^/dev/mapper/ephemcrypt-data /sysroot/mnt/ephemcrypt ext4 rw,nosuid,nodev" /proc/mounts'
	for t in /sysroot/var/log /sysroot/tmp /sysroot/var/tmp; do
		check "bind-$t" sh -c "grep -q '^/dev/mapper/ephemcrypt-data $t ext4 ' /proc/mounts"
	done
	check headers-written sh -c "head -c 16 $(node_of EPH-B) | grep -aq EPHEMCRYPT && head -c 16 $(node_of EPH-C) | grep -aq EPHEMCRYPT"
	ephemcrypt status | sed 's/^/STATUS-TEXT /'
}

if grep -qw fips=1 /proc/cmdline; then
	check fips-enabled test "$(cat /proc/sys/crypto/fips_enabled)" = 1
	a=$(node_of EPH-A)
	# What the kernel itself refuses in FIPS mode, on a table load (writes nothing to the disk).
	k=$(head -c 64 /dev/urandom | od -An -v -tx1 | tr -d ' \n')
	half=$(head -c 32 /dev/urandom | od -An -v -tx1 | tr -d ' \n')
	check kernel-refuses-twofish sh -c "! dmsetup create fipsprobe --table '0 2048 crypt twofish-xts-plain64 $k 0 $a 0' 2>/dev/null"
	check kernel-says-disabled-due-to-fips sh -c 'dmesg | grep -q "alg: xts(twofish) .* is disabled due to FIPS"'
	check kernel-refuses-equal-xts-halves sh -c "! dmsetup create fipsprobe --table '0 2048 crypt aes-xts-plain64 $half$half 0 $a 0' 2>/dev/null"
	check kernel-takes-aes-xts sh -c "dmsetup create fipsprobe --table '0 2048 crypt aes-xts-plain64 $k 0 $a 0' && dmsetup remove fipsprobe"
	dmsetup remove fipsprobe 2>/dev/null

	# A cipher the kernel refuses in FIPS mode: plan says so, setup writes nothing.
	printf 'devices = serial:EPH-A\nexpect = 1\ncipher = twofish-xts-plain64\n' >/run/refused.conf
	ephemcrypt plan --config /run/refused.conf --newroot /sysroot >/run/refused-plan.txt
	sed 's/^/PLAN-REFUSED /' /run/refused-plan.txt
	check plan-refuses-naming-fips-and-cipher grep -q '^result: invalid (the kernel runs in FIPS mode (/proc/sys/crypto/fips_enabled is 1) and refuses cipher twofish-xts-plain64 with key-bits 512: twofish is not a FIPS-approved cipher' /run/refused-plan.txt
	check plan-refused-has-no-steps sh -c '! grep -q "^steps:" /run/refused-plan.txt'
	ephemcrypt setup --config /run/refused.conf --newroot /sysroot 2>/run/refused-setup.log
	rc=$?
	cat /run/refused-setup.log
	check refused-setup-exit-0-by-the-policy test $rc = 0
	check refused-status-degraded grep -q '"result": "degraded"' /run/ephemcrypt/status.json
	check refused-status-names-fips-and-cipher grep -q 'the kernel runs in FIPS mode .* refuses cipher twofish-xts-plain64' /run/ephemcrypt/status.json
	check refused-no-mapping sh -c '! dmsetup ls | grep -q ephemcrypt'
	check refused-nothing-written zero_mib "$a"
	check refused-tmpfs-policy sh -c 'grep -q "^tmpfs /sysroot/var/log tmpfs " /proc/mounts'
	sed 's/^/STATUS-REFUSED /' /run/ephemcrypt/status.json
	umount /sysroot/var/log /sysroot/tmp /sysroot/var/tmp

	# Not approved for XTS: AES-192 (key-bits 384), which this 6.1 kernel would still take.
	printf 'devices = serial:EPH-A\nkey-bits = 384\n' >/run/xts384.conf
	check plan-refuses-xts-384 sh -c 'ephemcrypt plan --config /run/xts384.conf | grep -q "^result: invalid (.*FIPS mode.* key-bits 384: xts with a 384-bit key (AES-192) is not FIPS-approved"'
	# Escrow: refused unless escrow-fips = allow; then the plan says it is not FIPS-approved.
	printf 'devices = serial:EPH-A\nescrow = %s\n' "$recipient" >/run/escrow.conf
	check plan-refuses-escrow sh -c 'ephemcrypt plan --config /run/escrow.conf | grep -q "^result: invalid (.*FIPS mode.* and .escrow. is set"'
	echo 'escrow-fips = allow' >>/run/escrow.conf
	check plan-allows-escrow sh -c 'ephemcrypt plan --config /run/escrow.conf | grep -q "^FIPS mode: the escrow.s X25519 and ChaCha20-Poly1305 are not FIPS-approved"'
	check refused-runs-left-EPH-A-alone zero_mib "$a"

	setup_ok
	check plan-says-fips grep -q "^FIPS mode: the kernel's approved aes-xts-plain64 encrypts the disks" /run/plan.txt
	check plan-json-fips-mode sh -c 'ephemcrypt plan --json --config /run/ok.conf | grep -q "\"fips_mode\": true"'
fi

if grep -qw lockdown=confidentiality /proc/cmdline; then
	check lockdown-confidentiality grep -q '\[confidentiality\]' /sys/kernel/security/lockdown
	denials=$(dmesg | grep -c 'Lockdown: ')
	setup_ok
	dmesg | grep 'Lockdown: ' | tail -n +$((denials + 1)) | sed 's/^/LOCKDOWN-DENIAL /'
	check no-lockdown-denial-during-setup test "$(dmesg | grep -c 'Lockdown: ')" = "$denials"
fi

swapoff -a
umount /sysroot/var/log /sysroot/tmp /sysroot/var/tmp /sysroot/mnt/ephemcrypt
sync
vm_done
