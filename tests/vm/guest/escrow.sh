#!/bin/sh
# /usr/local/sbin/vmtest of escrow.sh: three boots of dracut's systemd initrd into a Debian root
# with age, cryptsetup and dmsetup, on the same two disks, escrow to the identity in /root/id.txt.
# vmtest=boot1: escrow on, guard on. Check the escrow decrypts to a 64-byte key, the guard blocks
#   a reboot; write known files to /var/log and keep their checksums on the root disk; create the
#   hold file (the guard lets go), sync, and wait for the host to reset the machine (a crash).
# vmtest=boot2: the hold file is there: setup must touch no disk (status held); then
#   `ephemcrypt recover --identity --mount` and, separately, the stock-tool script of
#   `recover --print-commands` both show boot 1's files with their checksums. Remove the hold.
# vmtest=boot3: setup makes a new volume: recover opens it, and boot 1's files are not in it.
# shellcheck disable=SC2016 # sh -c '...' expands in the guest
# shellcheck source=lib.sh
. /lib/vmtest.sh

state=$(systemctl is-system-running --wait)
boot=$(sed -n 's/.* vmtest=\(boot[0-9]\).*/\1/p' /proc/cmdline)
# The guard (boot 1) is Type=simple: started once forked, its lock taken a moment later.
i=0
while [ "$boot" = boot1 ] && ! systemd-inhibit --list --no-pager | grep -q '^ephemcrypt ' && [ $i -lt 30 ]; do
	sleep 1
	i=$((i + 1))
done
status=$(ephemcrypt status 2>&1)
echo "$status" | sed "s/^/STATUS-$boot /"
status_has() { printf "%s\n" "$status" | grep -q "$1"; }
# files DIR: the checksums of the known files under DIR
files() { (cd "$1" && sha256sum known-*.log 2>/dev/null); }
recover_cleanup() {
	umount /mnt/rec 2>/dev/null
	for m in ephemcrypt-recovered-data ephemcrypt-recovered ephemcrypt-recovered-stripe; do
		dmsetup remove "$m" 2>/dev/null
	done
	return 0
}
mkdir -p /mnt/rec

systemctl --failed --no-pager --plain --no-legend | sed "s/^/FAILED-UNIT-$boot /"
case $boot in
boot1)
	journalctl -b -q --no-pager -u ephemcrypt-guard.service | sed 's/^/GUARD /'
	systemd-inhibit --list --no-pager | sed 's/^/INHIBIT /'
	# shellcheck disable=SC2012 # a listing shown in the log, not parsed
	ls -l /run/systemd/inhibit/ 2>&1 | sed 's/^/INHIBIT-FILES /'
	check boot-running test "$state" = running
	check status-ok status_has '^result: ok'
	check status-escrow status_has '^escrow: on, to age1'
	check status-key-escrowed status_has 'escrowed to 1 recipient: stored, encrypted to it'
	check escrow-file-mode test "$(stat -c %a /run/ephemcrypt/escrow.age)" = 600
	check escrow-is-a-64-byte-key sh -c 'test "$(age -d -i /root/id.txt /run/ephemcrypt/escrow.age | wc -c)" = 64'
	check guard-active status_has '^guard: ephemcrypt-guard.service: active, reboots are blocked'
	# Only with the lock there: without it the reboot would happen. systemctl checks inhibitors
	# for an interactive caller (a terminal); --check-inhibitors=yes does what a terminal does.
	if systemd-inhibit --list --no-pager | grep -q ephemcrypt; then
		check guard-blocks-reboot sh -c '! systemctl --check-inhibitors=yes reboot 2>/run/reboot.err && grep -q "inhibit" /run/reboot.err'
		sed 's/^/REBOOT-REFUSED /' /run/reboot.err
	else
		fail guard-blocks-reboot "no inhibitor lock of ephemcrypt: not trying a reboot"
	fi
	for i in 1 2 3; do head -c 1M /dev/urandom >/var/log/known-$i.log; done
	files /var/log >/root/boot1.sums
	sed 's/^/SUMS /' /root/boot1.sums
	touch /etc/ephemcrypt.hold
	check guard-lets-go-on-hold sh -c 'i=0; while systemd-inhibit --list --no-pager | grep -q ephemcrypt; do
		i=$((i + 1)); [ $i -lt 30 ] || exit 1; sleep 1; done'
	sync
	# recover mounts without replaying the journal (noload: nothing is written to the disks), so
	# what is to be found must be in place, not only in the journal: freezing ext4 checkpoints
	# it (jbd2_journal_flush). Without this the crash could come before the checkpoint and the
	# newest file read back damaged ("Structure needs cleaning"), as seen on an idle host.
	fsfreeze -f /var/log && fsfreeze -u /var/log
	echo 3 >/proc/sys/vm/drop_caches
	echo "VMTEST CRASH-NOW"
	sleep 600
	;;
boot2)
	check boot-running test "$state" = running
	check status-held status_has "^result: held (held by /etc/ephemcrypt.hold in the real root: no disk touched; left alone: volume 'ephemcrypt' "
	check no-mapping-made sh -c '! dmsetup ls | grep -q ephemcrypt'
	check var-log-on-tmpfs test "$(findmnt -n -o FSTYPE /var/log)" = tmpfs
	start=$(date +%s%N)
	ephemcrypt recover --identity /root/id.txt --mount /mnt/rec 2>&1 | sed 's/^/RECOVER /'
	end=$(date +%s%N)
	echo "RECOVER-TIME $(((end - start) / 1000000)) ms"
	check recover-shows-boot1-files sh -c 'test "$(cd /mnt/rec/var/log && sha256sum known-*.log)" = "$(cat /root/boot1.sums)"'
	check recover-read-only sh -c 'findmnt -n -o OPTIONS /mnt/rec | grep -q "^ro,"'
	check recover-crypt-read-only sh -c 'test "$(blockdev --getro /dev/mapper/ephemcrypt-recovered)" = 1'
	recover_cleanup
	ephemcrypt recover --print-commands >/root/recover.sh
	sed 's/^/SCRIPT /' /root/recover.sh
	check script-syntax sh -n /root/recover.sh
	start=$(date +%s%N)
	sh /root/recover.sh /root/id.txt /mnt/rec 2>&1 | sed 's/^/STOCK /'
	end=$(date +%s%N)
	echo "STOCK-TIME $(((end - start) / 1000000)) ms"
	check stock-tools-show-boot1-files sh -c 'test "$(cd /mnt/rec/var/log && sha256sum known-*.log)" = "$(cat /root/boot1.sums)"'
	# The script's key file (mktemp -d in /run or /dev/shm) is gone with its directory.
	check stock-no-key-left sh -c '! ls -d /run/tmp.* /dev/shm/tmp.* 2>/dev/null'
	umount /mnt/rec
	dmsetup remove ephemcrypt-recovered-data
	cryptsetup close ephemcrypt-recovered
	dmsetup remove ephemcrypt-recovered-stripe
	check stock-cleanup sh -c '! dmsetup ls | grep -q recovered'
	rm /etc/ephemcrypt.hold
	sync
	;;
boot3)
	check boot-running test "$state" = running
	check status-ok status_has '^result: ok'
	check disks-taken-back status_has 'used: previous ephemcrypt volume'
	ephemcrypt recover --identity /root/id.txt --mount /mnt/rec 2>&1 | sed 's/^/RECOVER /'
	check new-volume-has-no-boot1-files sh -c 'test -z "$(files /mnt/rec/var/log)"'
	check boot1-files-gone sh -c '! ls /var/log/known-*.log 2>/dev/null'
	recover_cleanup
	;;
*) fail boot "no vmtest=bootN on the command line" ;;
esac
vm_done
