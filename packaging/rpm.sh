#!/bin/bash
# packaging/rpm.sh ARCH: build dist/ephemcrypt-VERSION-1.ARCH.rpm with rpmbuild from `make install`
# (make rpm), and check it with rpmlint where that is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
arch=${1:-x86_64}
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
top=$(mktemp -d)
trap 'rm -rf "$top"' EXIT
make --no-print-directory -s build ARCH="$arch"
rpmbuild -bb --quiet --target "$arch" --define "_topdir $top" --define "version $version" \
	--define "srcdir $PWD" --define "_build_id_links none" packaging/rpm/ephemcrypt.spec
mkdir -p dist
rpm=dist/ephemcrypt-$version-1.$arch.rpm
cp "$top/RPMS/$arch/ephemcrypt-$version-1.$arch.rpm" "$rpm"
echo "$rpm: $(stat -c %s "$rpm") bytes"
if command -v rpmlint >/dev/null; then
	rpmlint -c packaging/rpm/rpmlint.toml "$rpm"
else
	echo "SKIPPED: rpmlint (not installed)"
fi
