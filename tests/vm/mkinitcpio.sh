#!/bin/bash
# mkinitcpio.sh [run.sh options...]: the mkinitcpio hooks as `make install` installs them
# (mkinitcpio itself is not packaged for Debian).
#  1. build: install/ephemcrypt and install/sd-ephemcrypt are sourced with stand-ins for
#     mkinitcpio's add_* functions that fail on any module (not in the cached Debian kernel,
#     unless optional with a '?' suffix), binary, file, runtime hook or unit that does not exist,
#     and copy what they add into an image tree laid out as mkinitcpio's (/usr/sbin, /sbin and
#     /bin are /usr/bin). build() and help() run for both; the sd flavour must hook its unit
#     into initrd.target.
#  2. boot: the busybox flavour's image tree, in an initramfs whose /init does what mkinitcpio's
#     init does (guest/mkinitcpio-init.sh), boots a busybox real root that checks the volume
#     (guest/mkinitcpio-root.sh). Disks: two throwaway 1G NVMe, chosen on the command line.
#  3. boot with systemd as the initramfs' init: the sd flavour's image tree over Debian's systemd
#     (see below), into a Debian 12 systemd root (guest/mkinitcpio-sd.sh).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

out=$CACHE/mkinitcpio dest=$CACHE/mkinitcpio/dest
rm -rf "$out"
mkdir -p "$out"
make --no-print-directory -s -C "$VM_DIR/../.." install DESTDIR="$dest" >&2
vm_kernel
declare -A kmods # every module of the kernel, loadable or built in, by name with '_'
while read -r m; do
	m=${m%%:*} m=${m##*/} m=${m%.ko*}
	kmods[${m//-/_}]=1
done < <(cat "$MODDIR"/modules.{dep,builtin})
# canon PATH: where a path of an image really is in mkinitcpio's layout (usr-merged, sbin in bin)
canon() {
	case $1 in
	/bin/* | /sbin/* | /usr/sbin/*) echo "/usr/bin/${1#*bin/}" ;;
	/lib/* | /lib64/* | /usr/lib64/*) echo "/usr/lib/${1#*lib*/}" ;;
	*) echo "$1" ;;
	esac
}

# build_image HOOK IMG: run install/HOOK's build() and help() with the stand-ins; IMG gets what
# they add. Fails on anything missing. mkinitcpio.conf's variables come from the environment.
# shellcheck disable=SC2317 # the stand-ins are called by the hook
build_image() (
	local hook=$1 BUILDROOT=$2 errors=0
	# shellcheck disable=SC2034 # mkinitcpio's, read by the hook
	local KERNELVERSION=$KVER
	# shellcheck disable=SC2030 # this build's PATH only (a subshell)
	PATH=$dest/usr/sbin:$dest/usr/bin:$PATH # where make install put ephemcrypt
	# The hook's `ephemcrypt needs --modules --kver` reads /lib/modules/KVER: the cached kernel's
	# here (and the test's configuration, where one is set).
	# shellcheck disable=SC2317 # called by the hook
	ephemcrypt() {
		local a=("$@")
		[[ " $* " != *" --modules "* ]] || a+=(--moddir "$MODDIR")
		command ephemcrypt "${a[@]}" ${conf:+--config "$conf"}
	}
	mkdir -p "$BUILDROOT"
	: >"$BUILDROOT.modules" # what the hook adds with add_module, one a line
	miss() { echo "MISSING in $hook: $*" >&2; errors=$((errors + 1)); return 1; }
	# resolve PATH: that path of the installed system, from make install's tree or this host
	resolve() { if [[ -e $dest$1 ]]; then echo "$dest$1"; elif [[ -e $1 ]]; then echo "$1"; else return 1; fi; }
	put() { install -D -m "${3:-$(stat -Lc %a "$1")}" "$1" "$BUILDROOT$(canon "$2")"; }
	map() { local r=0 a; for a in "${@:2}"; do "$1" "$a" || r=1; done; return "$r"; }
	add_module() {
		local m=${1%\?}
		[[ $m != \?* ]] || { miss "module $1: optional is a '?' suffix (xfs?), not a prefix"; return 1; }
		m=${m%.ko*} m=${m//-/_}
		[[ -n ${kmods[$m]:-} || $1 == *\? ]] || miss "module $1 (not in $KVER)"
		echo "$m" >>"$BUILDROOT.modules"
	}
	add_all_modules() {
		local OPTIND=1 f list
		local -a filters=()
		while getopts f: f; do filters+=("$OPTARG"); done
		shift $((OPTIND - 1))
		list=$(find "$MODDIR" -name '*.ko*' | grep -E "$@")
		for f in "${filters[@]}"; do list=$(grep -Ev "$f" <<<"$list"); done
		[[ -n $list ]] || miss "no module matches $*"
	}
	add_checked_modules() { add_all_modules "$@"; } # as without the autodetect hook
	add_binary() {
		local src
		if [[ $1 == /* ]]; then src=$(resolve "$1"); else src=$(type -P "$1"); fi || { miss "binary $1"; return 1; }
		put "$src" "${2:-${src#"$dest"}}" "${3:-}"
	}
	add_file() {
		local src
		src=$(resolve "$1") || { miss "file $1"; return 1; }
		put "$src" "${2:-$1}" "${3:-}"
	}
	add_dir() { mkdir -p "$BUILDROOT$1"; }
	error() { # mkinitcpio's: printf-style, counted as an error of the build
		# shellcheck disable=SC2059 # the format is the caller's
		printf "ERROR in $hook: $1\n" "${@:2}" >&2
		errors=$((errors + 1))
	}
	die() { # mkinitcpio's: the error, then the build stops (no image written)
		error "$@"
		exit 1
	}
	add_symlink() {
		local link
		link=$BUILDROOT$(canon "$1")
		mkdir -p "${link%/*}" && ln -sfn "${2:-$(readlink "$1")}" "$link"
	}
	add_runscript() { # the runtime hook named as the install hook that calls this
		local name=${BASH_SOURCE[1]##*/} src
		src=$(resolve "/usr/lib/initcpio/hooks/$name") || { miss "runtime hook hooks/$name"; return 1; }
		grep -q '^run_[a-z]*hook()' "$src" || miss "hooks/$name defines no run_*hook function"
		put "$src" "/hooks/$name" 755
	}
	add_udev_rule() { # a path, or a name looked up in udev's rules directories (as mkinitcpio's)
		local src=$1 d
		if [[ $1 != /* ]]; then
			src=''
			for d in /usr/lib/udev/rules.d /lib/udev/rules.d; do
				src=$(resolve "$d/$1") && break
			done
		else
			src=$(resolve "$1")
		fi
		[[ -n $src ]] || { miss "udev rule $1"; return 1; }
		put "$src" "/usr/lib/udev/rules.d/${1##*/}" 644
	}
	add_systemd_unit() { # as install/systemd's: Requires=/OnFailure= units and Exec* binaries too
		local dir unit='' key values
		for dir in /etc/systemd/system /usr/lib/systemd/system /lib/systemd/system; do
			unit=$(resolve "$dir/$1") && break
		done
		[[ -n $unit ]] || { miss "systemd unit $1"; return 1; }
		put "$unit" "$dir/$1"
		while IFS='=' read -r key values; do
			read -ra values <<<"$values"
			case $key in
			Requires | OnFailure) map add_systemd_unit "${values[@]}" ;;
			Exec*) [[ ${values[0]} == -* ]] || { values[0]=${values[0]#!!} && add_binary "${values[0]#[@!:+]}"; } ;;
			esac
		done <"$unit"
	}

	set +eu # mkinitcpio runs hooks without errexit and nounset, and counts add_* failures
	# shellcheck source=/dev/null
	. "$dest/usr/lib/initcpio/install/$hook"
	build
	set -eu
	[[ -n $(help) ]] || miss "help() printed nothing"
	((errors == 0)) || die "install/$hook: $errors missing item(s), see above"
	log "install/$hook: build() and help() ok, image tree $BUILDROOT:"
	(cd "$BUILDROOT" && find . ! -type d | sed 's/^\./    /' | sort >&2)
)

# The configured file system's mkfs missing on the build host: the build fails, naming it.
mkdir -p "$out/conf"
echo "fs = xfs" >"$out/conf/ephemcrypt.conf"
# shellcheck disable=SC2031 # PATH is this host's here
if (conf=$out/conf/ephemcrypt.conf PATH=$(tr ':' '\n' <<<"$PATH" | grep -v sbin | paste -sd:) build_image ephemcrypt "$out/image-noxfs") \
	2>"$out/noxfs.err"; then
	die "install/ephemcrypt built an image for fs=xfs without mkfs.xfs"
fi
grep -q "ephemcrypt needs 'mkfs.xfs'" "$out/noxfs.err" || die "the failed build did not name mkfs.xfs: $(cat "$out/noxfs.err")"
log "install/ephemcrypt: without mkfs.xfs for fs=xfs the build fails, naming it"
conf='' build_image ephemcrypt "$out/image"
conf='' build_image sd-ephemcrypt "$out/image-sd"
# The modules each hook added are the ones the binary names for the kernel, no more and no fewer.
want=$("$dest/usr/sbin/ephemcrypt" needs --modules --kver "$KVER" --moddir "$MODDIR")
if ! grep -qx dm_crypt <<<"$want" || ! grep -qx xts <<<"$want"; then
	die "ephemcrypt needs --modules: no dm_crypt or xts: $want"
fi
for img in image image-sd; do
	[[ $(sort "$out/$img.modules") == $(sort <<<"$want") ]] ||
		die "$img: the hook added modules $(paste -sd' ' "$out/$img.modules"), the binary names $(paste -sd' ' <<<"$want")"
done
log "both hooks add the modules ephemcrypt needs --modules names: $(paste -sd' ' <<<"$want")"
sd=$out/image-sd units=/usr/lib/systemd/system
link=$(readlink "$sd$units/initrd.target.wants/ephemcrypt.service") || die "sd-ephemcrypt: initrd.target wants nothing"
[[ $link == /* ]] || link=$units/initrd.target.wants/$link
[[ $sd$link -ef $sd$units/ephemcrypt.service ]] || die "sd-ephemcrypt: initrd.target.wants/ephemcrypt.service -> $link, not the unit"
# The program, without systemd's prefixes (`-`: its failure does not fail the unit; mkinitcpio's
# add_systemd_unit adds no binary for such a line, so install/sd-ephemcrypt adds it itself).
exe=$(sed -n 's/^ExecStart=[-@+!:]*\([^ ]*\).*/\1/p' "$sd$units/ephemcrypt.service")
[[ -x $sd$(canon "$exe") ]] || die "sd-ephemcrypt: the unit runs $exe, which is not in the image"
log "sd-ephemcrypt: initrd.target wants ephemcrypt.service, which runs $exe (in the image)"
# udev owns /dev/mapper: both flavours add ephemcrypt's rule, and neither dmsetup nor the
# device-mapper rules (10-dm.rules, ...) that once came with them.
for img in image image-sd; do
	[[ -f $out/$img/usr/lib/udev/rules.d/09-ephemcrypt.rules ]] || die "$img: no 09-ephemcrypt.rules in the image"
	! compgen -G "$out/$img/usr/*/dmsetup" >/dev/null || die "$img: dmsetup in the image"
	! compgen -G "$out/$img/usr/lib/udev/rules.d/*-dm*.rules" >/dev/null || die "$img: device-mapper rules in the image"
done
log "both hooks add 09-ephemcrypt.rules, neither dmsetup nor the dm rules"

# The boot test: the busybox flavour's files at their image paths, plus the util-linux
# switch_root of mkinitcpio's base hook (it moves /dev, /proc, /sys and /run to the new root).
extras=(/usr/sbin/switch_root:/usr/bin/switch_root)
while IFS= read -r f; do extras+=("$f:${f#"$out/image"}"); done < <(find "$out/image" -type f)
"$VM_DIR/mkinitrd.sh" "$out/initrd.img" "$VM_DIR/guest/mkinitcpio-init.sh" "${extras[@]}"
"$VM_DIR/rootfs-busybox.sh" "$out/root.img" "$VM_DIR/guest/mkinitcpio-root.sh" "$dest/usr/sbin/ephemcrypt:/usr/sbin/ephemcrypt"
"$VM_DIR/run.sh" --initrd "$out/initrd.img" --log "$out/console.log" --timeout 600 --virtio "$out/root.img" \
	--disk "$out/a.raw:EPH-A:1G" --disk "$out/b.raw:EPH-B:1G" \
	--append "rd.ephemcrypt.devices=serial:EPH-* rd.ephemcrypt.expect=2 rd.ephemcrypt.wait=30 rd.ephemcrypt.swap=64M" "$@"
times=$(tr -d '\r' <"$out/console.log" | sed -n 's/^VMTEST \(TIME\|DONE\) //p' | tr '\n' ' ')
# on-failure=halt with a disk short: the hook powers the machine off (qemu exits), no rescue
# shell; the boot never reaches the real root.
rm -f "$out"/*.raw
"$VM_DIR/run.sh" --initrd "$out/initrd.img" --log "$out/halt.log" --timeout 600 --virtio "$out/root.img" \
	--disk "$out/a.raw:EPH-A:1G" \
	--append "rd.ephemcrypt.devices=serial:EPH-* rd.ephemcrypt.expect=2 rd.ephemcrypt.wait=1 rd.ephemcrypt.on-failure=halt" "$@" ||
	true # no VMTEST DONE: the machine powered off
! grep -aq 'VMTEST PASS pid-1' "$out/halt.log" || die "halt: the real root ran"
! grep -aq 'VMTEST FAIL' "$out/halt.log" || die "halt: $(grep -a -m1 'VMTEST FAIL' "$out/halt.log")"
if ! grep -aq 'powering the machine off' "$out/halt.log" || ! grep -aq 'reboot: Power down' "$out/halt.log"; then
	die "halt: the machine did not power off (see $out/halt.log)"
fi
log "halt: the hook powered the machine off; the real root never ran"

# The boot test with systemd as the initramfs' init, as Arch's default HOOKS build it (systemd ...
# sd-ephemcrypt): what install/sd-ephemcrypt added (image-sd: the binary, mkfs, the udev rule,
# the unit and its initrd.target.wants link, the modules it named) over a systemd initramfs of
# Debian's own systemd and udev in place of mkinitcpio's base and systemd hooks (built by
# Debian's dracut: its systemd module, no ephemcrypt module), in mkinitcpio's layout (/usr/sbin
# is /usr/bin). It boots the Debian 12 systemd root of the other boot tests, with ephemcrypt and
# its udev rule installed there as a package would; guest/mkinitcpio-sd.sh checks, after
# multi-user.target, the volume, binds and swap as units, that ephemcrypt.service finished
# before initrd-fs.target was reached (and so before the switch), and that no udev of the boot
# logged a /dev/mapper link it could not make.
sd_base() { # sd_base IMG: the systemd initramfs (cached by its inputs)
	local mods key omit=(i18n console-setup lvm mdraid dmraid multipath crypt resume usrmount nvdimm lunmask
		virtiofs terminfo kernel-modules-extra modsign dm ephemcrypt)
	mods=$(paste -sd' ' "$out/image-sd.modules")
	key=$({ declare -f sd_base; echo "$KVER $mods"; dpkg-query -W; } | sha256sum | cut -c1-16)
	mkdir -p "$CACHE/mkinitcpio-sd"
	lock mkinitcpio-sd
	local img=$CACHE/mkinitcpio-sd/base-$KVER-$key.img
	if [[ ! -s $img ]]; then
		log "building the systemd base of the sd-ephemcrypt image (dracut --add systemd)"
		mkdir -p "$out/sd-conf.d" && : >"$out/sd-dracut.conf"
		DRACUT_PATH="/sbin /bin /usr/sbin /usr/bin" dracut --quiet --force --conf "$out/sd-dracut.conf" \
			--confdir "$out/sd-conf.d" --kver "$KVER" --kmoddir "$MODDIR" --no-hostonly --omit "${omit[*]}" \
			--add systemd --add-drivers "ext4 virtio_blk virtio_pci nvme $mods" --compress zstd \
			--no-early-microcode "$img.$$" 2>"$out/sd-dracut.log" || { cat "$out/sd-dracut.log" >&2; die "dracut failed"; }
		mv "$img.$$" "$img"
		find "$CACHE/mkinitcpio-sd" -name 'base-*.img' -mtime +7 -delete
	fi
	cp "$img" "$1"
}
need_pkgs dracut-core systemd udev zstd cpio
sd_base "$out/sd-base.img"
tree=$out/sd-tree
rm -rf "$tree" && mkdir -p "$tree"
(cd "$tree" && zstd -dc "$out/sd-base.img" | cpio -id --quiet)
# mkinitcpio's layout: one bin directory
for f in "$tree"/usr/sbin/*; do [[ -e $tree/usr/bin/${f##*/} ]] || mv "$f" "$tree/usr/bin/"; done
rm -rf "$tree/usr/sbin" && ln -s bin "$tree/usr/sbin"
cp -a "$out/image-sd/." "$tree/"
# The libraries of the programs the hook added (mkinitcpio's add_binary adds them itself).
while IFS= read -r f; do
	ldd "$f" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'
done < <(find "$out/image-sd" -type f -perm -u+x) | sort -u | while IFS= read -r l; do
	[[ -e $tree$l ]] || install -D -m 755 "$l" "$tree$l"
done
(cd "$tree" && find . -mindepth 1 -print0 | LC_ALL=C sort -z | cpio --null -o -H newc -R 0:0 --quiet | zstd -q -T0) \
	>"$out/initrd-sd.img"
rm -rf "$tree" "$out"/*.raw
"$VM_DIR/rootfs-debian.sh" "$out/root-sd.img" "$VM_DIR/guest/mkinitcpio-sd.sh" \
	"$dest/usr/sbin/ephemcrypt:/usr/sbin/ephemcrypt" \
	"$dest/usr/lib/udev/rules.d/09-ephemcrypt.rules:/usr/lib/udev/rules.d/09-ephemcrypt.rules"
"$VM_DIR/run.sh" --initrd "$out/initrd-sd.img" --log "$out/sd.log" --timeout 900 --virtio "$out/root-sd.img" \
	--disk "$out/a.raw:EPH-A:1G" --disk "$out/b.raw:EPH-B:1G" \
	--append "root=/dev/vda ro rd.ephemcrypt.devices=serial:EPH-* rd.ephemcrypt.expect=2 rd.ephemcrypt.swap=64M" \
	--append "systemd.mask=serial-getty@ttyS0.service" "$@" || die "sd-ephemcrypt boot failed (see $out/sd.log)"
rm -f "$out"/*.raw "$out/root-sd.img"
log "PASS: mkinitcpio hooks; boot times (guest uptime, s): $times"
