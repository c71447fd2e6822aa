#!/bin/sh
# install-ephemcrypt.sh PACKAGE [CONFIG]: put ephemcrypt into the image being built, on Amazon Linux
# 2023, Fedora and RHEL (dracut; PACKAGE is the .rpm of `make rpm`) or Debian and Ubuntu
# (initramfs-tools; the .deb of `make deb`). Run as root on the build instance by an image builder
# (docs/recipes/packer, docs/recipes/image-builder), or by hand. It
#   1. checks CONFIG with the package's own binary (`ephemcrypt plan --config`) before anything
#      changes: a bad key fails the build here, naming it, not at every boot of the fleet;
#   2. installs the package with the distribution's tool, then CONFIG as /etc/ephemcrypt.conf (the
#      file it replaces comes back when the configuration fails to plan), and
#      rebuilds the initramfs of every installed kernel (the package's trigger rebuilds only the
#      newest one, and nothing when the same version is installed again with another CONFIG);
#   3. on Ubuntu cloud images, turns off the initrd-less boot (GRUB_FORCE_PARTUUID), where no hook
#      in the initramfs would run;
#   4. tells cloud-init not to mount ephemeral0 (the instance store it knows of) at /mnt, carrying
#      over the other entries of any mounts: list it replaces (cloud-init does not merge lists);
#   5. enables ephemcrypt-check.service, and with METRICS=yes ephemcrypt-metrics.timer;
#   6. checks that every kernel's initramfs holds ephemcrypt, and lists the files of the image that
#      the bind targets will hide (see docs/recipes/README.md).
# Tried in the VM by tests/vm/package-deb.sh (Debian 12, with the Kubernetes configuration).
set -eu
me=install-ephemcrypt.sh
die() { echo "$me: $*" >&2; exit 1; }
pkg=${1:?usage: install-ephemcrypt.sh PACKAGE [CONFIG]}
conf=${2:-}
[ "$(id -u)" = 0 ] || die "run it as root"
[ -f "$pkg" ] || die "$pkg: no such file (the .deb of make deb, or the .rpm of make rpm)"
pkg=$(realpath "$pkg")
case $pkg in
	*.deb) command -v apt-get >/dev/null || die "$pkg: a .deb, but this system has no apt-get" ;;
	*.rpm) command -v dnf >/dev/null || command -v yum >/dev/null || die "$pkg: an .rpm, but this system has neither dnf nor yum" ;;
	*) die "$pkg: expected a .deb or an .rpm" ;;
esac

# The package's binary, taken out of it, checks the configuration before anything changes.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
case $pkg in
	*.deb) dpkg-deb --fsys-tarfile "$pkg" | tar -x -C "$tmp" ./usr/sbin/ephemcrypt ;;
	*.rpm) (cd "$tmp" && rpm2cpio "$pkg" | cpio -i -d --quiet ./usr/sbin/ephemcrypt) ;;
esac
[ -x "$tmp/usr/sbin/ephemcrypt" ] || die "$pkg: no usr/sbin/ephemcrypt in it"
if [ -n "$conf" ]; then
	[ -f "$conf" ] || die "$conf: no such configuration file"
	"$tmp/usr/sbin/ephemcrypt" plan --config "$conf" >/dev/null ||
		die "$conf: not a valid configuration (the error above names the key); nothing was changed"
fi

echo "$me: installing $pkg"
# The package first: when apt or dnf fails, /etc/ephemcrypt.conf is still what it was. Then
# CONFIG, with the file it replaces kept until the configuration is known to be good.
case $pkg in
	*.deb) DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$pkg" ;;
	*.rpm) if command -v dnf >/dev/null; then dnf install -y "$pkg"; else yum install -y "$pkg"; fi ;;
esac
if [ -n "$conf" ]; then
	if [ -e /etc/ephemcrypt.conf ]; then cp -p /etc/ephemcrypt.conf "$tmp/ephemcrypt.conf.before"; fi
	install -m 0644 "$conf" /etc/ephemcrypt.conf
fi
# The configuration as the boot will read it (this machine's command line included).
if ! ephemcrypt plan >/dev/null; then
	if [ -e "$tmp/ephemcrypt.conf.before" ]; then
		cp -p "$tmp/ephemcrypt.conf.before" /etc/ephemcrypt.conf
		die "ephemcrypt plan failed with $conf (the error above names the key): the previous /etc/ephemcrypt.conf is back"
	fi
	die "ephemcrypt plan failed: fix /etc/ephemcrypt.conf (the error above names the key)"
fi
# Every installed kernel's image, with this configuration.
if command -v update-initramfs >/dev/null; then
	update-initramfs -u -k all
elif command -v dracut >/dev/null; then
	dracut -f --regenerate-all
else
	die "neither update-initramfs nor dracut is installed: nothing would put ephemcrypt into the initramfs"
fi

# Ubuntu's cloud kernels boot without their initramfs unless told otherwise (docs/install.md, Debian, Ubuntu).
if [ -e /etc/default/grub.d/40-force-partuuid.cfg ]; then
	echo 'GRUB_FORCE_PARTUUID=' >/etc/default/grub.d/99-ephemcrypt-initrd.cfg
	update-grub
	if grep -q initrdless /boot/grub/grub.cfg; then
		die "/boot/grub/grub.cfg still has an initrd-less boot entry: see /etc/default/grub.d/"
	fi
	echo "$me: turned off the initrd-less boot (GRUB_FORCE_PARTUUID)"
fi
# cloud-init mounts the instance store it finds in the metadata (ephemeral0) at /mnt: on a disk
# ephemcrypt took, that mount fails at every boot. Clear that default. cloud-init does not merge
# lists across its configuration files: the last file's `mounts:` replaces the others' whole (its
# built-in defaults, such as swap, still apply to devices the list does not name). So a `mounts:`
# of another file is carried over into ours, where it can be read as YAML lines after the key;
# anything else is said plainly.
if [ -d /etc/cloud/cloud.cfg.d ]; then
	cfg=/etc/cloud/cloud.cfg.d/99-ephemcrypt.cfg
	others=$(grep -l '^mounts:' /etc/cloud/cloud.cfg /etc/cloud/cloud.cfg.d/*.cfg 2>/dev/null | grep -vx "$cfg" || true)
	{
		echo '# ephemcrypt encrypts the instance store at boot: no plaintext mount of it.'
		echo '# This list replaces the mounts: of every other cloud-init file (cloud-init does not merge lists).'
		echo 'mounts:'
		echo '  - [ ephemeral0, null ]'
		for f in $others; do
			echo "  # from $f:"
			# The list items that follow its `mounts:` key, except its own ephemeral0 entry.
			sed -n '/^mounts:/,/^[^ #-]/{/^ *- /p}' "$f" | grep -v 'ephemeral0' || true
		done
	} >"$cfg.new"
	mv "$cfg.new" "$cfg"
	for f in $others; do
		echo "$me: note: $f sets cloud-init's mounts:, which $cfg replaces; its entries were copied there (check them)"
	done
fi

# ephemcrypt-check.service comes enabled with the package (a vendor link): nothing to do.
[ "${METRICS:-no}" != yes ] || systemctl enable ephemcrypt-metrics.timer

# Every installed kernel's image must hold the binary: the next boot runs it.
found=0
for k in /lib/modules/*/; do
	k=$(basename "$k")
	if [ -e "/boot/initrd.img-$k" ] && command -v lsinitramfs >/dev/null; then
		list="lsinitramfs /boot/initrd.img-$k"
	elif [ -e "/boot/initramfs-$k.img" ] && command -v lsinitrd >/dev/null; then
		list="lsinitrd /boot/initramfs-$k.img"
	else
		continue
	fi
	$list | grep -Eq '(^| )usr/s?bin/ephemcrypt$' || die "$list: ephemcrypt is not in this kernel's initramfs"
	echo "$me: ${list#* } holds ephemcrypt"
	found=$((found + 1))
done
[ "$found" -gt 0 ] || die "found no initramfs image under /boot to check"

# What the image holds under the mount point and the bind targets is hidden at boot (the volume gets
# their directories, not their files).
# (From the plan's binds, or from its failure policy's tmpfs mounts when this machine has no disk to
# take: the same targets.)
ephemcrypt plan | sed -n 's/.* \/sysroot\([^ ]*\)\( (M, U, G: .*\)\{0,1\}$/\1/p' | sort -u | while read -r target; do
	n=$(find "$target" -xdev -type f 2>/dev/null | wc -l)
	[ "$n" -eq 0 ] || echo "$me: note: $target holds $n file(s) in this image; at boot the volume hides them"
done
echo "$me: done; the next boot encrypts (ephemcrypt status, journalctl -u ephemcrypt-check)"
