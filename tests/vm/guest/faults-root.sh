#!/bin/sh
# /sbin/vmcheck of the fault matrix's real root (tests/vm/faults.sh): run as PID 1 right after
# switch_root (or, with on-failure=halt, from the initramfs with R=/sysroot). Reads what the case
# expects from /run/vmtest.expect (guest/faults.sh) and checks, from the real root, that setup
# left nothing half-made: no mapping, swap, mount or keyring entry of ephemcrypt, no mount point
# it made, the root read-only as before, each bind target covered per the failure policy, and
# the status naming the failed step. After a crash (case retake): the disks taken back by their
# headers, a fresh volume with the binds on it.
# shellcheck disable=SC2016 # sh -c '...' expands in the guest
# shellcheck source=lib.sh
. /lib/vmtest.sh
R=${R:-}
. /run/vmtest.expect
# guest/faults.sh writes every one of them (empty or not): a missing one is a broken test
: "${case?}" "${result?}" "${step?}" "${reason?}" "${rc_want?}" "${rc?}" "${foreign?}" "${policy?}"
: "${taken?}" "${refused?}" "${headers?}" "${untouched?}"
export R foreign
echo "VMTEST STAGE check ($case, in ${R:-the real root})"
sed 's/^/SETUP /' /run/setup.log
[ ! -e /run/ephemcrypt/status.json ] || sed 's/^/STATUS /' /run/ephemcrypt/status.json
status=/run/ephemcrypt/status.json

dm_names() { cat /sys/block/dm-*/dm/name 2>/dev/null; }
dm_major=$(awk '$2 == "device-mapper" { print $1 }' /proc/devices)
# fstype_of PATH: the file system type of the mount on exactly PATH (nothing: not a mount point)
fstype_of() { awk -v p="$1" '$5 == p { for (i = 7; $i != "-"; i++); t = $(i + 1) } END { print t }' /proc/self/mountinfo; }
# source_of PATH: major:minor of the mount on exactly PATH
source_of() { awk -v p="$1" '$5 == p { s = $3 } END { print s }' /proc/self/mountinfo; }
on_mapping() { case $(source_of "$1") in "$dm_major":*) return 0 ;; *) return 1 ;; esac; }

check setup-exit-code test "$rc" = "$rc_want"
if [ "$result" = ok ]; then
	check status-result grep -q "\"result\": \"$result\"" $status
	[ -z "$taken" ] || check disks-taken sh -c "test \"\$(grep -c '\"reason\": \"$taken' $status)\" = 2"
	[ "$headers" = no ] || check headers-rewritten sh -c 'for d in /dev/nvme0n1 /dev/nvme1n1; do head -c 4096 $d | md5sum; done | cmp -s - /run/headers.before && exit 1 || exit 0'
	check volume-mounted on_mapping "$R/mnt/ephemcrypt"
	for t in /var/log /tmp /var/tmp; do check "bind-$t" on_mapping "$R$t"; done
	check volume-fresh sh -c "test \"\$(ls $R/var/log | wc -l)\" = 0"
	check swap-on-volume swap_on ephemcrypt-swap
	check writable sh -c "echo x >$R/var/log/probe && test -s $R/mnt/ephemcrypt/var/log/probe"
	vm_done
fi

if [ -n "$foreign" ]; then
	check foreign-mapping-kept sh -c 'cat /sys/block/dm-*/dm/name | grep -qx "$foreign"'
fi
check no-mapping-left sh -c 'test -z "$(cat /sys/block/dm-*/dm/name 2>/dev/null | grep "^ephemcrypt" | grep -vx "${foreign:-none}")"'
check no-swap-left sh -c '! grep -q "^/dev/dm-\|^/dev/mapper/" /proc/swaps'
check no-mount-of-a-mapping sh -c "! awk '{ print \$3 }' /proc/self/mountinfo | grep -q '^$dm_major:'"
check no-keyring-entry sh -c '! grep -q ephemcrypt /proc/keys'
check no-mount-point-left test ! -e "$R/mnt/ephemcrypt"
check root-read-only sh -c "awk -v p='${R:-/}' '\$5 == p { o = \$6 } END { exit !(o ~ /^ro/) }' /proc/self/mountinfo"
# The failure policy: tmpfs over each bind target; continue and halt leave them alone (halt
# stops the boot instead). A systemd root whose fstab mounts /var gets tmpfs units for /var/log
# and /var/tmp instead (an initramfs tmpfs there would be hidden): when even those cannot be
# written, the status must say so.
for t in /var/log /tmp /var/tmp; do
	case $policy:$case:$t in
	tmpfs:unit:/var/*) check "status-says-$t-uncovered" grep -qF "on-failure: unit $(echo "${t#/}" | tr / -).mount: " $status ;;
	tmpfs:*) check "tmpfs-on-$t" test "$(fstype_of "$R$t")" = tmpfs ;;
	continue:* | halt:*) check "left-alone-$t" test -z "$(fstype_of "$R$t")" ;;
	esac
done
if [ "$case" = status-full ]; then
	check status-not-written test ! -e $status
	check console-names-the-step grep -qF "step '$step" /run/setup.log
	check console-names-the-error grep -qF "$reason" /run/setup.log
	vm_done
fi
check status-result grep -q "\"result\": \"$result\"" $status
if [ -n "$step" ]; then
	check status-names-the-step grep -qF "\"failed_step\": \"$step" $status
else
	check status-no-failed-step sh -c "! grep -q '\"failed_step\": \"' $status"
fi
check status-gives-the-reason sh -c "grep '\"reason\": ' $status | head -n1 | grep -qF '$reason'"
check status-no-disk-used sh -c "! grep -q '\"use\": true' $status"
# Refused before any step: the disks' first blocks are as they were.
[ -z "$untouched" ] || check disks-untouched sh -c 'for d in /dev/nvme0n1 /dev/nvme1n1; do head -c 4096 $d | md5sum; done | cmp -s - /run/headers.before'
[ -z "$refused" ] || check disks-refused sh -c "test \"\$(grep -c '\"reason\": \"$refused' $status)\" = 2"
vm_done
