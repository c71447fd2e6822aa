#!/bin/bash
# packaging/deb.sh ARCH: build dist/ephemcrypt_VERSION_DEBARCH.deb from `make install` (make deb).
# Binary, man pages, the initramfs-tools hook and boot script (update-initramfs then puts
# ephemcrypt into every image), the dracut module (enabled by a dracut.conf.d snippet for systems
# that build with dracut), the units and the example configuration. A dpkg trigger on
# update-initramfs rebuilds the images once the package is in place, as Debian's packages that
# ship initramfs hooks do. Checked with lintian when it is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
arch=${1:-x86_64}
case $arch in x86_64) debarch=amd64 ;; aarch64) debarch=arm64 ;; *) echo "ARCH $arch: x86_64 or aarch64" >&2; exit 2 ;; esac
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root=$stage/root
# node_exporter's textfile directory: prometheus-node-exporter's (Debian, Ubuntu).
make --no-print-directory -s install ARCH="$arch" DESTDIR="$root" PREFIX=/usr TEXTFILE_DIR=/var/lib/prometheus/node-exporter
# mkinitcpio is Arch's: not on Debian. The initrd's unit is in the dracut module already (a copy in
# the real root's unit directory is only for mkinitcpio's sd-ephemcrypt).
rm -rf "$root/usr/lib/initcpio" "$root/usr/lib/systemd/system/ephemcrypt.service"
install -Dm644 dracut/ephemcrypt.conf "$root/usr/lib/dracut/dracut.conf.d/50-ephemcrypt.conf"
rm "$root/usr/share/doc/ephemcrypt/dracut.conf.d-ephemcrypt.conf"
gzip -9n "$root/usr/share/man/man8/ephemcrypt.8" "$root/usr/share/man/man5/ephemcrypt.conf.5"
install -Dm644 packaging/debian/copyright "$root/usr/share/doc/ephemcrypt/copyright"
# A native package (no Debian revision): changelog.gz.
sed "s/@VERSION@/$version/" packaging/debian/changelog | gzip -9n >"$root/usr/share/doc/ephemcrypt/changelog.gz"
install -Dm644 packaging/debian/lintian-overrides "$root/usr/share/lintian/overrides/ephemcrypt"
chmod -R go-w "$root"
mkdir "$root/DEBIAN"
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$debarch/" -e "s/@SIZE@/$size/" packaging/debian/control >"$root/DEBIAN/control"
install -m644 packaging/debian/triggers "$root/DEBIAN/triggers"
(cd "$root" && find usr -type f -print0 | LC_ALL=C sort -z | xargs -0 md5sum >DEBIAN/md5sums)
mkdir -p dist
deb=dist/ephemcrypt_${version}_${debarch}.deb
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "$deb: $(stat -c %s "$deb") bytes"
if command -v lintian >/dev/null; then
	lintian --fail-on error,warning "$deb"
	echo "lintian: no errors"
else
	echo "SKIPPED: lintian (not installed)"
fi
