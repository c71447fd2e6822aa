#!/usr/bin/env bash
# fuzz/run.sh SECONDS [TARGET...]: run each fuzz target (all by default), one after the other, for
# SECONDS seconds, from its committed seeds (fuzz/seeds/TARGET) and what earlier runs added
# (fuzz/corpus/TARGET, git-ignored, where new inputs go). Exits 1 at the first crash, hang
# (-timeout) or out-of-memory (-rss_limit_mb); libFuzzer saves the input in fuzz/artifacts/TARGET/
# and the whole log is in fuzz/logs/TARGET.log. Installs nothing: it needs cargo-fuzz.
#
# Works on a stable toolchain: RUSTC_BOOTSTRAP=1 (set here unless set already) lets cargo-fuzz use
# the -Z flags it needs (AddressSanitizer, sanitizer coverage). AddressSanitizer is on where it can
# find something: host_sysfs, signature_header and the age targets (age_header, bech32,
# openssh_key) run only safe Rust (file reads, slices, the RustCrypto crates), where it would only
# halve the speed, so they run without it; FUZZ_SANITIZER=address (or none) sets one
# for all. Each sanitizer builds into its own fuzz/target/<sanitizer>/.
set -euo pipefail
cd "$(dirname "$0")"

secs=${1:?usage: fuzz/run.sh SECONDS [TARGET...]}
shift
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(config cmdline size_glob status_json dm_reply signature_header host_sysfs age_header bech32 openssh_key recover_script tpm_response)
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz/run.sh: cargo-fuzz is not installed; install it with: cargo install cargo-fuzz --locked --version 0.13.2" >&2
  exit 1
fi
export RUSTC_BOOTSTRAP=${RUSTC_BOOTSTRAP:-1}
# AddressSanitizer keeps up to 256 MiB of freed memory in quarantine; that would count against
# -rss_limit_mb and end a long run with a false out-of-memory.
export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=32
sanitizer() {
  if [ -n "${FUZZ_SANITIZER:-}" ]; then
    echo "$FUZZ_SANITIZER"
  else
    case $1 in
      host_sysfs | signature_header | age_header | bech32 | openssh_key | recover_script) echo none ;;
      *) echo address ;;
    esac
  fi
}

# The host_sysfs target makes a directory tree per input under here (src/fuzzing.rs).
scratch=$(mktemp -d /dev/shm/ephemcrypt-fuzz.XXXXXX 2>/dev/null || mktemp -d)
trap 'rm -rf "$scratch"' EXIT
export EPHEMCRYPT_FUZZ_TMP=$scratch

# The largest input per target: a configuration or a command line is small; a machine, a status
# file or a device-mapper exchange a few pages; a disk image reaches the btrfs and ISO 9660
# superblocks and the ZFS labels in its head.
max_len() {
  case $1 in
    signature_header) echo 131072 ;;
    host_sysfs | status_json | dm_reply | age_header) echo 16384 ;;
    *) echo 4096 ;;
  esac
}

for t in "${targets[@]}"; do
  [ -d "seeds/$t" ] || { echo "fuzz/run.sh: no target '$t' (no fuzz/seeds/$t)" >&2; exit 2; }
done
for s in $(for t in "${targets[@]}"; do sanitizer "$t"; done | sort -u); do
  cargo fuzz build --sanitizer "$s" --target-dir "target/$s"
done
mkdir -p logs
for t in "${targets[@]}"; do
  s=$(sanitizer "$t")
  mkdir -p "corpus/$t"
  dict=()
  [ -f "dict/$t.dict" ] && dict=("-dict=dict/$t.dict")
  log=logs/$t.log
  echo "== $t: ${secs}s, sanitizer $s (log: fuzz/$log)"
  if ! cargo fuzz run --sanitizer "$s" --target-dir "target/$s" "$t" "corpus/$t" "seeds/$t" -- \
    -max_total_time="$secs" -rss_limit_mb=512 -timeout=10 -max_len="$(max_len "$t")" \
    -print_final_stats=1 ${dict[@]+"${dict[@]}"} >"$log" 2>&1; then
    # What failed and where, without the input's bytes.
    grep -a -E -A12 'panicked at|==[0-9]+==ERROR|ERROR: libFuzzer|^SUMMARY' "$log" | cut -c1-300 | head -n 60
    echo "fuzz/run.sh: $t FAILED: the input is in fuzz/artifacts/$t/ (reproduce: cargo fuzz run $t ARTIFACT)" >&2
    exit 1
  fi
  # The last status line (coverage, corpus) and the totals.
  grep -a -E '^#[0-9]+' "$log" | tail -n 1
  grep -a -E '^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)' "$log" | tr '\n' ' '
  echo
done
echo "fuzz/run.sh: ${#targets[@]} target(s), ${secs}s each: no crash, hang or out-of-memory"
