#!/usr/bin/env bash
# tests/lint-shell.sh: shellcheck over every shell file of the repository (make lint). A shell
# file is a tracked file named *.sh, one whose first line is a shebang of sh, bash, dash, ash or
# busybox, or one that names its shell in a `# shellcheck shell=` directive in its first lines
# (files sourced without a shebang: packaging/arch/PKGBUILD). Every finding fails, notes too: an
# exception is a `# shellcheck disable=SCnnnn # why` on the line it is about.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v shellcheck >/dev/null || {
	echo "make lint: shellcheck is not installed (apt-get install shellcheck; tests/install-deps.sh does)" >&2
	exit 1
}

# Hooks that source their boot environment's library (/lib/dracut-lib.sh, initramfs-tools'
# hook-functions and /scripts/functions): a file this machine does not have, which shellcheck
# cannot follow (SC1091, a note). Those three files are being rewritten on another branch (issue
# 21, item 1): this list goes once they carry `# shellcheck source=/dev/null` on those lines.
boot_env=(dracut/90ephemcrypt/ephemcrypt-hook.sh initramfs-tools/hooks/ephemcrypt
	initramfs-tools/scripts/local-bottom/ephemcrypt)

if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
	mapfile -t all < <(git ls-files)
else
	mapfile -t all < <(find . -path ./target -prune -o -path ./.git -prune -o -path ./fuzz/target -prune -o -type f -print | sed 's|^\./||')
fi
files=() plain=() env=()
for f in "${all[@]}"; do
	[[ -f $f ]] || continue
	case $f in
	*.sh) ;;
	*.rs | *.md | *.json | *.svg | *.py | fuzz/seeds/* | fuzz/dict/* | tests/fixtures/*) continue ;;
	*)
		head -n1 "$f" | grep -qE '^#! ?(/usr)?(/bin/|/usr/bin/env )(ba|da|a)?sh( |$)|^#!.*/busybox sh' ||
			head -n5 "$f" | grep -qE '^# shellcheck shell=(sh|bash|dash|ksh)' || continue
		;;
	esac
	files+=("$f")
	if [[ " ${boot_env[*]} " == *" $f "* ]]; then env+=("$f"); else plain+=("$f"); fi
done
((${#files[@]})) || { echo "lint-shell: no shell file found" >&2; exit 1; }
rc=0
shellcheck --severity=style "${plain[@]}" || rc=1
((${#env[@]} == 0)) || shellcheck --severity=style --exclude=SC1091 "${env[@]}" || rc=1
((rc == 0)) && echo "shellcheck: ${#files[@]} shell files, no finding"
exit $rc
