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

if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
	mapfile -t all < <(git ls-files)
else
	mapfile -t all < <(find . -path ./target -prune -o -path ./.git -prune -o -path ./fuzz/target -prune -o -type f -print | sed 's|^\./||')
fi
files=()
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
done
((${#files[@]})) || { echo "lint-shell: no shell file found" >&2; exit 1; }
rc=0
shellcheck --severity=style "${files[@]}" || rc=1
((rc == 0)) && echo "shellcheck: ${#files[@]} shell files, no finding"
exit $rc
