# ephemcrypt: build, test, install.
#   make build   static musl release binary: target/x86_64-unknown-linux-musl/release/ephemcrypt
#   make test    everything CI runs: lints, unit/fixture/fake-kernel tests, the static-binary
#                check and the VM tests (qemu, Debian cloud kernel; installed on first use)
TARGET  := x86_64-unknown-linux-musl
BIN     := target/$(TARGET)/release/ephemcrypt
CARGO   ?= cargo

.PHONY: build test lint unit check-static vm-test clean

build: $(BIN)

$(BIN): Cargo.toml Cargo.lock $(shell find src -name '*.rs')
	$(CARGO) build --release --locked --target $(TARGET)

test: lint unit check-static vm-test

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

unit:
	$(CARGO) test --locked

# A binary for an initramfs must not need a dynamic loader or shared libraries.
check-static: $(BIN)
	@if readelf -lW $(BIN) | grep -q 'INTERP'; then echo "$(BIN) is dynamically linked" >&2; exit 1; fi
	@if readelf -dW $(BIN) | grep -q 'NEEDED'; then echo "$(BIN) needs shared libraries" >&2; exit 1; fi
	@echo "$(BIN): static, $$(stat -c %s $(BIN)) bytes"

# Real kernel, real dm-crypt: qemu (TCG) boots a Debian cloud kernel with throwaway NVMe disks.
vm-test: $(BIN)
	bash tests/vm/setup.sh

clean:
	$(CARGO) clean
	rm -rf tests/vm/.cache

.PHONY: plan-demo
# What ephemcrypt decides on fixture machines: disks used and refused, with reasons, and the steps.
plan-demo:
	$(CARGO) build --locked --quiet
	@for t in aws refusals; do echo "== ephemcrypt plan --host tests/fixtures/$$t"; target/debug/ephemcrypt plan --host tests/fixtures/$$t; echo; done
