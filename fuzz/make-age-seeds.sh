#!/usr/bin/env bash
# fuzz/make-age-seeds.sh: writes the seeds of the age targets (age_header, bech32, openssh_key)
# into fuzz/seeds/<target>/ with the stock tools: age, age-keygen, ssh-keygen (Debian: age,
# openssh-client). Files are encrypted to the fixed identities of src/fuzzing.rs (the unit tests'
# keys) so that the targets can decrypt them; fresh keys of the tools' own add variety. The seeds
# are committed (the found-* ones, inputs fuzzing found, are kept); keys made here are thrown away. The input formats are those of src/fuzzing.rs
# (byte 0 chooses a mode).
set -euo pipefail
cd "$(dirname "$0")"
for t in age ssh-keygen age-keygen; do
  command -v "$t" >/dev/null || { echo "make-age-seeds.sh: needs $t" >&2; exit 1; }
done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
AGE_R=age1q7arm3ec8pulumstfqfq7k3canfn4gc3ycau906rhz9tff2xw4tqeymzxx
SSH_R='ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEDtZYB1SrNclIo2BKjCjyHh61gzoYi48kmQuTJSwarX test'
echo "$SSH_R" >"$work/fixed.pub"
age-keygen -o "$work/other.txt" 2>/dev/null
ssh-keygen -q -t ed25519 -N '' -C fuzz -f "$work/other_ssh"
OTHER_R=$(age-keygen -y "$work/other.txt")
head -c 64 /dev/urandom >"$work/key"

# Inputs found by fuzzing (found-*) stay: they are regression seeds.
for t in age_header bech32 openssh_key; do
  mkdir -p "seeds/$t"
  find "seeds/$t" -maxdepth 1 -type f ! -name 'found-*' -delete
done
# seed TARGET NAME MODE-BYTE(hex, or '' for none) FILE
seed() {
  { [ -z "$3" ] || printf '%b' "\\x$3"; cat "$4"; } >"seeds/$1/$2"
}

# age_header, mode 0: files as the stock age writes them.
age -r "$AGE_R" -o "$work/x25519.age" "$work/key"
age -R "$work/fixed.pub" -o "$work/ssh.age" "$work/key"
age -r "$AGE_R" -R "$work/fixed.pub" -r "$OTHER_R" -o "$work/three.age" "$work/key"
age -a -r "$AGE_R" -R "$work/fixed.pub" -o "$work/both.armored" "$work/key"
age -r "$OTHER_R" -R "$work/other_ssh.pub" -o "$work/others.age" "$work/key"
head -c 100000 /dev/urandom | age -r "$AGE_R" -o "$work/two-chunks.age"
for f in x25519.age ssh.age three.age both.armored others.age; do
  seed age_header "stock-${f%.*}-${f#*.}" 00 "$work/$f"
done
head -c 16000 "$work/two-chunks.age" >"$work/two-chunks-cut.age"
seed age_header stock-two-chunks-cut 00 "$work/two-chunks-cut.age"
# mode 1: a payload behind a valid header (a 16-byte nonce and a 64-byte chunk with its tag).
tail -c 96 "$work/x25519.age" >"$work/payload"
seed age_header payload 01 "$work/payload"
# mode 2: a plaintext, to the age recipient (00), the ssh one (01) or both (02).
for w in 00 01 02; do
  { printf '%b' "\\x$w"; cat "$work/key"; } >"$work/plain-$w"
  seed age_header "plaintext-to-$w" 02 "$work/plain-$w"
done

# bech32: recipients, identity files, Bech32 and base64 strings.
printf '%s' "$AGE_R" >"$work/r"; seed bech32 recipient '' "$work/r"
printf '%s' "$OTHER_R" | tr '[:lower:]' '[:upper:]' >"$work/r"; seed bech32 recipient-upper '' "$work/r"
seed bech32 identity-file '' "$work/other.txt"
grep AGE-SECRET "$work/other.txt" >"$work/r"; seed bech32 identity-line '' "$work/r"
age-keygen 2>/dev/null >"$work/r"; age-keygen 2>/dev/null | grep AGE-SECRET >>"$work/r"; seed bech32 identities-two '' "$work/r"
printf 'abcdef1qpzry9x8gf2tvdw0s3jn54khce6mua7lmqqqxw' >"$work/r"; seed bech32 bip173 '' "$work/r"
printf 'age1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq5cu47z' >"$work/r"; seed bech32 low-order-zero '' "$work/r"
printf 'Zm9vYmFy' >"$work/r"; seed bech32 base64 '' "$work/r"
printf '%s' "$SSH_R" >"$work/r"; seed bech32 ssh-public '' "$work/r"

# openssh_key: 0 a private key file, 1 its binary form, 2 a public key line, 3 its blob.
seed openssh_key private-other 00 "$work/other_ssh"
sed '1d;$d' "$work/other_ssh" | tr -d '\n' | base64 -d >"$work/bin"; seed openssh_key private-other-binary 01 "$work/bin"
seed openssh_key public-other 02 "$work/other_ssh.pub"
cut -d' ' -f2 "$work/other_ssh.pub" | base64 -d >"$work/blob"; seed openssh_key public-other-blob 03 "$work/blob"
seed openssh_key public-fixed 02 "$work/fixed.pub"
for t in age_header bech32 openssh_key; do
  echo "$t: $(find "seeds/$t" -maxdepth 1 -type f | wc -l) seeds, $(cat seeds/"$t"/* | wc -c) bytes" >&2
done
