#!/usr/bin/env bash
# tests/install-deps.sh: what `make test` needs on a fresh Debian 12 machine, installed where
# missing (the first step of make test; .ci/run runs make test). apt-get update runs once, before
# any install, and only when something is missing; the VM tests resolve their kernel after it.
set -euo pipefail
cd "$(dirname "$0")/.."

export DEBIAN_FRONTEND=noninteractive
need=() update=''
# binutils: the static-binary check; keyutils: the keyring probe of make unit; age and
# openssh-client: the escrow's interoperability test and the escrow VM test; mandoc: the man
# pages' lint; shellcheck: make lint's shell lint (tests/lint-shell.sh); lintian, rpm and rpmlint:
# make packages (the .deb and the RPM, linted); the rest: the VM
# tests (VM_PACKAGES in tests/vm/lib.sh, which kernel.sh installs before it resolves the kernel);
# g++: make fuzz-short, whose libfuzzer-sys builds libFuzzer from its C++ source; python3,
# cryptsetup-bin and mdadm: make bench-smoke (bench/report.py and chart.py; dracut's crypt and mdraid
# modules for the image-size comparison; the guest's tools come with its own Debian root); swtpm
# and swtpm-tools: the software TPM of the TPM VM test (tests/vm/tpm.sh).
for pkg in binutils make g++ keyutils age openssh-client mandoc shellcheck lintian rpm rpmlint qemu-system-x86 qemu-system-arm busybox-static cpio kmod \
  zstd xz-utils dmsetup e2fsprogs xfsprogs util-linux dracut-core systemd udev debootstrap \
  python3 cryptsetup-bin mdadm swtpm swtpm-tools; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
[ ${#need[@]} -eq 0 ] || update=1
# The arm64 VM test boots Debian's arm64 kernel with arm64 programs (tests/vm/userland.sh): apt
# must know arm64 packages, from the same update.
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
  dpkg --add-architecture arm64
  update=1
fi
[ -z "$update" ] || apt-get update -qq
# Some machine images come with a newer qemu-utils (a backport) than the archive's qemu-system-*,
# which it Breaks: put qemu-utils at the version qemu-system-x86 will have, so that both install.
extra=()
if [ ${#need[@]} -gt 0 ] && dpkg -s qemu-utils >/dev/null 2>&1; then
  have=$(dpkg-query -W -f='${Version}' qemu-utils)
  want=$(apt-cache policy qemu-system-x86 | sed -n 's/^ *Candidate: //p')
  if [ -n "$want" ] && [ "$want" != "(none)" ] && [ "$have" != "$want" ] &&
    ! dpkg -s qemu-system-x86 >/dev/null 2>&1; then
    echo "install-deps: qemu-utils $have does not go with qemu-system-x86 $want: installing qemu-utils $want" >&2
    need+=("qemu-utils=$want") extra=(--allow-downgrades)
  fi
fi
[ ${#need[@]} -eq 0 ] || apt-get install -y -qq "${extra[@]}" "${need[@]}"
rustup target add x86_64-unknown-linux-musl aarch64-unknown-linux-musl
rustup component add clippy rustfmt
# make fuzz-short runs cargo-fuzz on the stable toolchain (fuzz/README.md).
cargo fuzz --version >/dev/null 2>&1 || cargo install cargo-fuzz --locked --version 0.13.2
