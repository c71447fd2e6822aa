# ephemcrypt: build, test, install.
#   make build   static musl release binary: target/x86_64-unknown-linux-musl/release/ephemcrypt;
#                ARCH=aarch64 for arm64 (target/aarch64-unknown-linux-musl/...: linked by rust-lld,
#                see .cargo/config.toml; no C cross-toolchain needed)
#   make dist    both binaries, with their SHA-256 sums, in dist/
#   make test    everything CI runs: lints, unit/fixture/fake-kernel tests, the static-binary
#                check and the VM tests (qemu, Debian cloud kernels; installed on first use)
#   make demo    boot a VM through dracut's systemd initrd and show what ephemcrypt did
#   make matrix  the setup VM test on every kernel tested (5.10, 6.1, 6.12 x86_64; 6.12 arm64)
#                and the initramfs-tools boot in a Debian 13 root; not part of make test
#   make bench   ephemcrypt against mdadm + cryptsetup (LUKS, plain) and mdadm + mkfs in one VM:
#                setup time, bytes written, I/O, scale, initramfs size; results and charts in
#                bench/results/ (about 45 minutes; not part of make test, whose bench-smoke runs it small)
ARCH    ?= x86_64
TARGET  := $(ARCH)-unknown-linux-musl
BIN     := target/$(TARGET)/release/ephemcrypt
X86_BIN := target/x86_64-unknown-linux-musl/release/ephemcrypt
ARM_BIN := target/aarch64-unknown-linux-musl/release/ephemcrypt
# The test build with faults on demand (src/fault.rs), for tests/vm/faults.sh; never installed.
FAULT_BIN := target/fault/x86_64-unknown-linux-musl/release/ephemcrypt
SRCS    := Cargo.toml Cargo.lock .cargo/config.toml $(shell find src -name '*.rs')
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
CARGO   ?= cargo

.PHONY: build dist test lint unit check-static vm-test clean toolchain

build: $(BIN)

# clippy and rustfmt, added with rustup where missing (a fresh machine); each musl target is added
# by the rule that builds for it.
toolchain:
	@if command -v rustup >/dev/null; then \
		rustup component list --installed | grep -q '^clippy' || rustup component add clippy; \
		rustup component list --installed | grep -q '^rustfmt' || rustup component add rustfmt; \
	fi

target/%-unknown-linux-musl/release/ephemcrypt: $(SRCS) | toolchain
	@if command -v rustup >/dev/null; then \
		rustup target list --installed | grep -qx '$*-unknown-linux-musl' || rustup target add $*-unknown-linux-musl; \
	fi
	$(CARGO) build --release --locked --target $*-unknown-linux-musl

# Packages, in dist/ (packaging/): a .deb checked by lintian, an RPM checked by rpmlint (where
# they are installed); packaging/arch/PKGBUILD for Arch. ARCH=aarch64 for arm64.
.PHONY: deb rpm
deb: $(BIN)
	bash packaging/deb.sh $(ARCH)
rpm: $(BIN)
	bash packaging/rpm.sh $(ARCH)

# make test: both packages, which must pass their linters; the linters must be there.
.PHONY: packages
packages:
	@for t in lintian rpmbuild rpmlint; do command -v $$t >/dev/null || { echo "make packages: $$t is not installed (apt-get install lintian rpm rpmlint)" >&2; exit 1; }; done
	$(MAKE) --no-print-directory deb rpm

.PHONY: fault-build
fault-build: $(FAULT_BIN)
$(FAULT_BIN): $(X86_BIN)
	$(CARGO) build --release --locked --target x86_64-unknown-linux-musl --features fault-injection --target-dir target/fault

dist: $(X86_BIN) $(ARM_BIN)
	rm -rf dist && mkdir dist
	cp $(X86_BIN) dist/ephemcrypt-$(VERSION)-x86_64
	cp $(ARM_BIN) dist/ephemcrypt-$(VERSION)-aarch64
	cd dist && sha256sum ephemcrypt-$(VERSION)-* >SHA256SUMS
	@cat dist/SHA256SUMS

# deps: what the rest needs on a fresh machine (tests/install-deps.sh), installed first.
.PHONY: deps
deps:
	bash tests/install-deps.sh

test: deps
	$(MAKE) --no-print-directory lint unit fuzz-short check-static packages vm-test bench-smoke

# The fuzz glue (src/fuzzing.rs, compiled only under cfg(fuzzing), which cargo fuzz sets) and the
# fuzz targets (fuzz/, a workspace of its own) get clippy too, each build in a target directory of
# its own so that the ordinary one is not rebuilt; the fuzz crate's check builds libFuzzer (g++).
# tests/lint-shell.sh: shellcheck over every shell file (by name and by shebang); fails when
# shellcheck is not installed (tests/install-deps.sh installs it).
# The cast lints are denied in Cargo.toml: each remaining `as` carries an #[allow] saying why.
lint: toolchain
	$(CARGO) fmt --all -- --check
	@if command -v mandoc >/dev/null; then mandoc -Tlint -W warning doc/ephemcrypt.8 doc/ephemcrypt.conf.5; \
	else echo "SKIPPED: mandoc -Tlint of doc/ (mandoc is not installed)"; fi
	$(CARGO) clippy --locked --all-targets -- -D warnings
	$(CARGO) clippy --locked --lib --features fault-injection -- -D warnings
	RUSTFLAGS='--cfg fuzzing' $(CARGO) clippy --locked --all-targets --target-dir target/clippy-fuzzing -- -D warnings
	cd fuzz && RUSTFLAGS='--cfg fuzzing' $(CARGO) clippy --locked --bins --target-dir target/clippy -- -D warnings
	bash tests/lint-shell.sh

# Tests that need a kernel feature a machine may lack are #[ignore]d and run here where it is there;
# elsewhere they are reported as skipped, with the reason.
unit:
	$(CARGO) test --locked
	$(CARGO) test --locked --lib --features fault-injection -- fault::
	@if command -v keyctl >/dev/null && keyctl add logon ephemcrypt-probe:make x @p >/dev/null 2>&1; then \
		$(CARGO) test --locked --lib -- --ignored logon_key; \
	else echo "SKIPPED: key::tests::logon_key_lifecycle (no kernel keyring here: keyctl add logon failed)"; fi
	@if command -v age >/dev/null && command -v age-keygen >/dev/null && command -v ssh-keygen >/dev/null; then \
		$(CARGO) test --locked --lib -- --ignored stock_age_interoperates; \
	else echo "SKIPPED: age::tests::stock_age_interoperates (needs age, age-keygen and ssh-keygen)"; fi
	@if python3 -c 'import os, tempfile; t = tempfile.TemporaryDirectory(); os.setxattr(t.name, "security.selinux", b"x")' 2>/dev/null; then \
		$(CARGO) test --locked --lib -- --ignored new_directories_take_their_parents_label; \
	else echo "SKIPPED: system::tests::new_directories_take_their_parents_label (no security.* xattrs in $${TMPDIR:-/tmp})"; fi
	@if [ "$$(id -u)" = 0 ]; then $(CARGO) test --locked --lib -- --ignored mapper_entries_are_links; \
	else echo "SKIPPED: system::tests::mapper_entries_are_links_udev_can_take_over (makes block device nodes: root only)"; fi

# A binary for an initramfs must not need a dynamic loader or shared libraries; a release binary
# has no fault injection. Both architectures.
check-static: $(X86_BIN) $(ARM_BIN)
	@for b in $^; do \
		if readelf -lW $$b | grep -q 'INTERP'; then echo "$$b is dynamically linked" >&2; exit 1; fi; \
		if readelf -dW $$b | grep -q 'NEEDED'; then echo "$$b needs shared libraries" >&2; exit 1; fi; \
		if grep -aq EPHEMCRYPT_FAULT $$b; then echo "$$b was built with the fault-injection feature" >&2; exit 1; fi; \
		echo "$$b: static, $$(readelf -hW $$b | sed -n 's/ *Machine: *//p'), $$(stat -c %s $$b) bytes"; \
	done

# Real kernel, real dm-crypt: qemu (TCG) boots a Debian cloud kernel with throwaway NVMe disks.
# mkinitcpio.sh: the mkinitcpio hooks as installed, checked against mkinitcpio's functions, then
# booted by an init that does what mkinitcpio's does.
# boot-dracut.sh: initramfs images from Debian's dracut (shell init) into a busybox real root.
# boot-systemd.sh: Debian's dracut with systemd in the initrd into a Debian 12 systemd root.
# guard.sh: guard = yes in that chain: a reboot at a terminal that checks inhibitors (root's needs
# --check-inhibitors=yes before systemd 257) is refused, the ACPI power button
# (qemu's system_powerdown, a cloud's stop) powers the machine off cleanly within 60 s; the
# sandboxed check and metrics units as shipped in systemd/.
# tests/vm/all.sh resolves the Debian kernel once for the whole run (every apt-get update comes
# before that), so every image is built for the kernel that boots it.
vm-test: $(X86_BIN) $(ARM_BIN) $(FAULT_BIN)
	bash tests/vm/all.sh

# setup killed (SIGKILL, SIGABRT) before any mapping, after the crypt mapping and after the mount,
# in every boot chain (dracut shell and systemd, a systemd initrd without emergency.service,
# mkinitcpio busybox, initramfs-tools), and on-failure=halt in each (tests/vm/death.sh all): the
# policy must still hold. make test runs one case per chain (through tests/vm/all.sh).
.PHONY: vm-death
vm-death: $(X86_BIN) $(FAULT_BIN)
	bash tests/vm/death.sh all

# The whole fault matrix (tests/vm/faults.sh: a fault at every step, crashes and the boots after
# them, the upgrade from the release without headers), about 7 minutes; make test runs one case
# of each kind (faults.sh quick, through tests/vm/all.sh), the unit tests fail every call.
.PHONY: vm-faults
vm-faults: $(X86_BIN) $(FAULT_BIN)
	bash tests/vm/faults.sh

# The package's path (tests/vm/package-deb.sh): apt-get install of the .deb in a Debian 12 root
# through docs/recipes/install-ephemcrypt.sh, its trigger's initramfs, and a boot of that image.
# About 11 minutes under TCG (two initramfs rebuilds in the guest): outside make test, whose
# `packages` builds both packages and runs lintian and rpmlint on them.
.PHONY: vm-packages
vm-packages: $(X86_BIN)
	bash tests/vm/package-deb.sh

# The kernel matrix (tests/vm/matrix.sh): the setup VM test on each kernel generation ephemcrypt
# is tested on, Debian's cloud kernels 5.10 (bullseye), 6.1 (bookworm) and 6.12 (trixie) on x86_64
# and 6.12 on arm64, then the initramfs-tools boot in a Debian 13 root (initramfs-tools 0.148,
# systemd 257) with its kernel, with a table of boot and setup times, the dm-crypt version and the
# flags chosen (.cache/matrix/report.md). Not part of `make test`, which runs 6.1 on both
# architectures and 6.12 on x86_64 (setup@trixie in tests/vm/all.sh). About 25 minutes here.
.PHONY: matrix
matrix: $(X86_BIN) $(ARM_BIN)
	bash tests/vm/matrix.sh

# Twenty boots in a row of the whole boot chain on the same disks (tests/vm/soak.sh): every boot
# ok, a new key each time, nothing left in the keyring; the summary gives each boot's setup time.
# SOAK_BOOTS=N for another count. Not part of `make test`: about 20 s per boot.
SOAK_BOOTS ?= 20
.PHONY: soak
soak: $(X86_BIN)
	bash tests/vm/soak.sh $(SOAK_BOOTS)

# Benchmarks (bench/run.sh; how they work is in its header): one VM (TCG) with a Debian root
# holding mdadm, cryptsetup, fio and xfsprogs and throwaway NVMe disks on sparse files, then dracut
# image sizes (bench/initrd-size.sh); bench/report.py and bench/chart.py write results and charts.
#   make bench        the full run: repetitions, 16 disks, sizes 1 GiB..16 TiB, about 45 minutes;
#                     results in bench/results/
#   make bench-smoke  one repetition on two 1 GiB disks, a few variants (part of make test): fails
#                     unless every part measured something; results in $$VM_CACHE/bench-smoke/results
#   make bench-speed  issue 22's setup-time ratios alone: ephemcrypt, mdadm + cryptsetup plain + ext4
#                     and mdadm + ext4 on 2, 8 and 16 x 1 GiB, 2 x 1 TiB, 8 x 7.5 TiB; bench/results/speed/
#                     (about 20 minutes; BENCH_BIN=FILE measures another binary, a before)
#   make bench-boot   time to multi-user.target without ephemcrypt, with it, and with a crypt + mdraid
#                     shell hook instead (bench/boot-time.sh); bench/results/boot-time.md
.PHONY: bench bench-smoke bench-speed bench-boot
bench-boot: $(X86_BIN)
	bash bench/boot-time.sh
bench-speed: $(X86_BIN)
	bash bench/run.sh --speed
bench: $(X86_BIN)
	bash bench/run.sh
bench-smoke: $(X86_BIN)
	bash bench/run.sh --smoke

clean:
	$(CARGO) clean
	rm -rf tests/vm/.cache dist

.PHONY: demo
# The whole boot chain in a VM: Debian's dracut with its systemd module, two throwaway disks
# encrypted and one refused, then a Debian 12 systemd root; shows what ephemcrypt did, read from
# inside the guest. Installs what it needs (the musl target; Debian packages on first use).
demo:
	@$(MAKE) --no-print-directory build
	@bash tests/vm/boot-systemd.sh --demo

.PHONY: plan-demo
# What ephemcrypt decides on fixture machines: disks used and refused, with reasons, and the steps.
plan-demo:
	$(CARGO) build --locked --quiet
	@for t in aws refusals; do echo "== ephemcrypt plan --host tests/fixtures/$$t"; target/debug/ephemcrypt plan --host tests/fixtures/$$t; echo; done

# --- install -------------------------------------------------------------------------------
# make install [DESTDIR=...] [PREFIX=/usr]: the binary, the dracut module, the mkinitcpio hooks,
# the initramfs-tools hook and boot script (Debian, Ubuntu: update-initramfs -u then includes
# ephemcrypt), the udev rule (udev/09-ephemcrypt.rules: the /dev/mapper links), the systemd unit
# (used by systemd initrds only: it is conditioned on /etc/initrd-release), the real root's units (ephemcrypt-check.service, enabled by a vendor link
# in multi-user.target.wants: it must run wherever ephemcrypt is installed, setup or no setup, to
# report a boot where setup did not run; `systemctl mask ephemcrypt-check.service` turns it off; the
# metrics service and timer, not enabled), the man pages and an example configuration. The boot
# hooks are not enabled: see docs/install.md for each distribution (the packages of `make deb` and
# `make rpm` enable them).
PREFIX      ?= /usr
DESTDIR     ?=
# node_exporter's textfile directory, where ephemcrypt-metrics.service writes ephemcrypt.prom: by
# default the one Debian's and Ubuntu's prometheus-node-exporter and Fedora's and EPEL's
# golang-github-prometheus-node-exporter read and make (make deb and make rpm pass it too); Arch's
# package passes node_exporter's upstream example, /var/lib/node_exporter/textfile_collector (its
# node_exporter has no textfile directory until one is configured). Written into the unit at install.
TEXTFILE_DIR ?= /var/lib/prometheus/node-exporter
SBINDIR     := $(PREFIX)/sbin
DRACUTDIR   := $(PREFIX)/lib/dracut/modules.d/90ephemcrypt
INITCPIODIR := $(PREFIX)/lib/initcpio
ITOOLSDIR   := $(PREFIX)/share/initramfs-tools
UNITDIR     := $(PREFIX)/lib/systemd/system
UDEVDIR     := $(PREFIX)/lib/udev/rules.d
DOCDIR      := $(PREFIX)/share/doc/ephemcrypt
MANDIR      := $(PREFIX)/share/man
INSTALLED   := $(SBINDIR)/ephemcrypt $(MANDIR)/man8/ephemcrypt.8 $(MANDIR)/man5/ephemcrypt.conf.5 \
	$(DRACUTDIR)/module-setup.sh $(DRACUTDIR)/ephemcrypt-hook.sh $(DRACUTDIR)/ephemcrypt.service \
	$(DRACUTDIR)/09-ephemcrypt.rules $(UDEVDIR)/09-ephemcrypt.rules \
	$(INITCPIODIR)/install/ephemcrypt $(INITCPIODIR)/install/sd-ephemcrypt $(INITCPIODIR)/hooks/ephemcrypt \
	$(ITOOLSDIR)/hooks/ephemcrypt $(ITOOLSDIR)/scripts/local-bottom/ephemcrypt \
	$(UNITDIR)/ephemcrypt.service $(UNITDIR)/ephemcrypt-check.service \
	$(UNITDIR)/multi-user.target.wants/ephemcrypt-check.service \
	$(UNITDIR)/ephemcrypt-metrics.service $(UNITDIR)/ephemcrypt-metrics.timer \
	$(DOCDIR)/ephemcrypt.conf.example $(DOCDIR)/dracut.conf.d-ephemcrypt.conf

.PHONY: install uninstall
install: $(BIN)
	install -Dm755 $(BIN) $(DESTDIR)$(SBINDIR)/ephemcrypt
	install -Dm755 dracut/90ephemcrypt/module-setup.sh $(DESTDIR)$(DRACUTDIR)/module-setup.sh
	install -Dm755 dracut/90ephemcrypt/ephemcrypt-hook.sh $(DESTDIR)$(DRACUTDIR)/ephemcrypt-hook.sh
	install -Dm644 systemd/ephemcrypt.service $(DESTDIR)$(DRACUTDIR)/ephemcrypt.service
	install -Dm644 udev/09-ephemcrypt.rules $(DESTDIR)$(DRACUTDIR)/09-ephemcrypt.rules
	install -Dm644 udev/09-ephemcrypt.rules $(DESTDIR)$(UDEVDIR)/09-ephemcrypt.rules
	install -Dm644 mkinitcpio/install/ephemcrypt $(DESTDIR)$(INITCPIODIR)/install/ephemcrypt
	install -Dm644 mkinitcpio/install/sd-ephemcrypt $(DESTDIR)$(INITCPIODIR)/install/sd-ephemcrypt
	install -Dm644 mkinitcpio/hooks/ephemcrypt $(DESTDIR)$(INITCPIODIR)/hooks/ephemcrypt
	install -Dm755 initramfs-tools/hooks/ephemcrypt $(DESTDIR)$(ITOOLSDIR)/hooks/ephemcrypt
	install -Dm755 initramfs-tools/scripts/local-bottom/ephemcrypt $(DESTDIR)$(ITOOLSDIR)/scripts/local-bottom/ephemcrypt
	install -Dm644 systemd/ephemcrypt.service $(DESTDIR)$(UNITDIR)/ephemcrypt.service
	install -Dm644 systemd/ephemcrypt-check.service $(DESTDIR)$(UNITDIR)/ephemcrypt-check.service
	install -d $(DESTDIR)$(UNITDIR)/multi-user.target.wants
	ln -sfn ../ephemcrypt-check.service $(DESTDIR)$(UNITDIR)/multi-user.target.wants/ephemcrypt-check.service
	@case '$(TEXTFILE_DIR)' in /*[!/]) ;; *) echo 'TEXTFILE_DIR=$(TEXTFILE_DIR): an absolute directory' >&2; exit 1;; esac
	@case '$(TEXTFILE_DIR)' in *[!A-Za-z0-9/._-]*) echo 'TEXTFILE_DIR=$(TEXTFILE_DIR): letters, digits, / . _ - only' >&2; exit 1;; esac
	install -Dm644 systemd/ephemcrypt-metrics.service $(DESTDIR)$(UNITDIR)/ephemcrypt-metrics.service
	sed -i 's|/var/lib/prometheus/node-exporter|$(TEXTFILE_DIR)|g' $(DESTDIR)$(UNITDIR)/ephemcrypt-metrics.service
	install -Dm644 systemd/ephemcrypt-metrics.timer $(DESTDIR)$(UNITDIR)/ephemcrypt-metrics.timer
	install -Dm644 doc/ephemcrypt.8 $(DESTDIR)$(MANDIR)/man8/ephemcrypt.8
	install -Dm644 doc/ephemcrypt.conf.5 $(DESTDIR)$(MANDIR)/man5/ephemcrypt.conf.5
	install -Dm644 ephemcrypt.conf.example $(DESTDIR)$(DOCDIR)/ephemcrypt.conf.example
	install -Dm644 dracut/ephemcrypt.conf $(DESTDIR)$(DOCDIR)/dracut.conf.d-ephemcrypt.conf

uninstall:
	rm -f $(addprefix $(DESTDIR),$(INSTALLED))
	-rmdir $(DESTDIR)$(DRACUTDIR) $(DESTDIR)$(DOCDIR) $(DESTDIR)$(UNITDIR)/multi-user.target.wants 2>/dev/null

# --- fuzzing -------------------------------------------------------------------------------
# Coverage-guided fuzzing (cargo-fuzz, libFuzzer) of every parser: the configuration file, the
# kernel command line, sizes and globs, a whole host tree (sysfs, /proc, /dev), the signature probe
# and the on-disk header, the status file and JSON, the device-mapper replies. See fuzz/README.md.
# Each target runs FUZZ_SECONDS seconds from its seeds (fuzz/seeds/), one after the other, and the
# run fails on any crash, hang (-timeout=10) or out-of-memory (-rss_limit_mb=512); the input is
# then in fuzz/artifacts/TARGET/. Installs nothing: needs cargo-fuzz (cargo install cargo-fuzz
# --locked --version 0.13.2); works on a stable toolchain (fuzz/run.sh sets RUSTC_BOOTSTRAP=1).
#   make fuzz          the long run: FUZZ_SECONDS (default 600) per target, about 75 minutes
#   make fuzz-short    part of make test: FUZZ_SHORT_SECONDS (default 10) per target, about 3.5
#                      minutes with the first build (.ci/run installs cargo-fuzz)
FUZZ_SECONDS       ?= 600
FUZZ_SHORT_SECONDS ?= 10

.PHONY: fuzz fuzz-short
fuzz:
	bash fuzz/run.sh $(FUZZ_SECONDS)

fuzz-short:
	bash fuzz/run.sh $(FUZZ_SHORT_SECONDS)
