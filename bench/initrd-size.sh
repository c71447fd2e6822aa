#!/bin/bash
# bench/initrd-size.sh OUT.json [--full | --smoke]: what ephemcrypt costs a dracut image, against
# dracut's own crypt + mdraid modules (cryptsetup, mdadm and their libraries), the stack users
# would add instead. Every image is built by Debian's dracut for the cloud kernel of kernel.sh, with
# the options of tests/vm/dracut-initrd.sh (no host-only, the same omitted modules and drivers,
# zstd, no early microcode, an empty configuration):
#   stock          nothing added
#   ephemcrypt     tests/vm/dracut-initrd.sh itself (make install's module, --add ephemcrypt)
#   crypt-mdraid   --add "crypt mdraid"
#   ephemcrypt-dm  the module as it was when depends() returned dm (git's dracut/90ephemcrypt/
#                  module-setup.sh at BENCH_DM_REV, default aa5d644), for the record
# each as a shell-init image and, with --full, as a systemd one (dracut-initrd.sh --systemd).
# Sizes: the image file (zstd), the cpio inside it, the file count, and the largest files each
# image adds to stock. Images are cached by their inputs under $VM_CACHE/bench-images.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
. "$repo/tests/vm/lib.sh"
(($# >= 1)) || die "usage: ${0##*/} OUT.json [--full | --smoke]"
json=$1 mode=${2:---full}
vm_kernel
need_pkgs dracut-core cryptsetup-bin mdadm zstd cpio
work=$CACHE/bench-images
mkdir -p "$work"
lock bench-images # one build at a time in $work/tmp
flavours=(shell systemd)
[[ $mode == --full ]] || flavours=(shell)
omit_all=(i18n console-setup lvm mdraid dmraid multipath crypt resume usrmount nvdimm lunmask virtiofs terminfo
	kernel-modules-extra modsign)
rev=${BENCH_DM_REV:-aa5d644}

# build NAME FLAVOUR [MODULES]: an image with MODULES added (dracut's own, or ephemcrypt-dm)
build() {
	local name=$1 flavour=$2 mods=${3:-} key img base=/usr/lib/dracut path="/sbin /bin /usr/sbin /usr/bin" m
	local omit=() add=()
	[[ $flavour == systemd ]] && add=(systemd) || omit=(systemd)
	for m in "${omit_all[@]}"; do [[ " $mods " == *" $m "* ]] || omit+=("$m"); done
	if [[ $mods == ephemcrypt-dm ]]; then
		add+=(ephemcrypt)
	else
		read -ra mm <<<"$mods"
		add+=("${mm[@]}")
	fi
	key=$({
		declare -f build
		echo "$name $flavour $mods $KVER $rev"
		dpkg-query -W
		[[ $mods != ephemcrypt-dm ]] || sha256sum "$repo/target/x86_64-unknown-linux-musl/release/ephemcrypt" \
			"$repo/dracut/90ephemcrypt/ephemcrypt-hook.sh" "$repo/systemd/ephemcrypt.service"
	} | sha256sum | cut -c1-16)
	img=$work/$name-$flavour-$KVER-$key.img
	if [[ ! -s $img ]]; then
		rm -rf "$work/tmp" && mkdir -p "$work/tmp/conf.d"
		: >"$work/tmp/dracut.conf"
		if [[ $mods == ephemcrypt-dm ]]; then
			# dracut's tree with the module of that revision (the host's /usr stays as it is)
			cp -a /usr/lib/dracut "$work/tmp/lib"
			m=$work/tmp/lib/modules.d/90ephemcrypt
			mkdir -p "$m" "$work/tmp/sbin"
			git -C "$repo" show "$rev:dracut/90ephemcrypt/module-setup.sh" >"$m/module-setup.sh"
			cp "$repo/dracut/90ephemcrypt/ephemcrypt-hook.sh" "$m/"
			cp "$repo/systemd/ephemcrypt.service" "$m/"
			cp "$repo/target/x86_64-unknown-linux-musl/release/ephemcrypt" "$work/tmp/sbin/"
			base=$work/tmp/lib path="$work/tmp/sbin $path"
		fi
		log "dracut: $name ($flavour init)"
		DRACUT_PATH=$path dracutbasedir=$base dracut --quiet --force --conf "$work/tmp/dracut.conf" \
			--confdir "$work/tmp/conf.d" --kver "$KVER" --kmoddir "$MODDIR" --no-hostonly --omit "${omit[*]}" \
			--add-drivers "ext4 virtio_blk virtio_pci nvme" --compress zstd --no-early-microcode \
			${add[@]:+--add "${add[*]}"} "$img.tmp" 2>"$work/dracut.log" ||
			{ cat "$work/dracut.log" >&2; die "dracut failed for $name"; }
		mv "$img.tmp" "$img"
		rm -rf "$work/tmp"
	fi
	touch "$img"
	echo "$img"
}

list=()
for f in "${flavours[@]}"; do
	list+=("stock:$f:$(build stock "$f")")
	via=()
	[[ $f == shell ]] || via=(--systemd)
	"$VM_DIR/dracut-initrd.sh" "$work/ephemcrypt-$f.img" "${via[@]}"
	list+=("ephemcrypt:$f:$work/ephemcrypt-$f.img")
	list+=("crypt-mdraid:$f:$(build crypt-mdraid "$f" "crypt mdraid")")
	[[ $mode == --smoke ]] || list+=("ephemcrypt-dm:$f:$(build ephemcrypt-dm "$f" ephemcrypt-dm)")
done
find "$work" -maxdepth 1 -name '*.img' -mtime +7 -delete # unused for a week

# Each image: its size, its cpio's, its files (ls -l as cpio lists them) for the differences.
for e in "${list[@]}"; do
	img=${e#*:*:}
	zstd -dc "$img" | cpio -itv --quiet 2>/dev/null >"${img%.img}.files" || true
done
python3 - "$json" "$rev" "${list[@]}" <<'PY'
import json, os, subprocess, sys
out, rev, entries = sys.argv[1], sys.argv[2], sys.argv[3:]

def files(img):
    sizes = {}
    for line in open(img[:-4] + ".files", errors="replace"):
        f = line.rstrip("\n").split(None, 8)
        if len(f) == 9 and f[0][0] in "-l":
            sizes[f[8].split(" -> ")[0]] = int(f[4])
    return sizes

images = {}
for e in entries:
    name, flavour, img = e.split(":", 2)
    cpio = int(subprocess.run(f"zstd -dc '{img}' | wc -c", shell=True, capture_output=True, text=True).stdout)
    images.setdefault(flavour, {})[name] = {"bytes": os.path.getsize(img), "cpio_bytes": cpio, "files": files(img)}
result = {"dm_revision": rev, "flavours": {}}
for flavour, imgs in images.items():
    stock = imgs["stock"]
    f = {}
    for name, i in imgs.items():
        added = {p: s for p, s in i["files"].items() if p not in stock["files"]}
        top = sorted(added.items(), key=lambda kv: -kv[1])[:12]
        f[name] = {"bytes": i["bytes"], "cpio_bytes": i["cpio_bytes"], "file_count": len(i["files"]),
                   "added_files": len(added), "added_cpio_bytes": sum(added.values()),
                   "largest_added": [[p, s] for p, s in top]}
    result["flavours"][flavour] = f
json.dump(result, open(out, "w"), indent=1)
PY
log "image sizes in $json"
