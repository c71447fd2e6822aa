#!/bin/bash
# dracut module for ephemcrypt: encrypt ephemeral disks at boot with a key nobody keeps.
# Included with `dracut --add ephemcrypt` or `add_dracutmodules+=" ephemcrypt "` in dracut.conf.d.
# shellcheck disable=SC2154 # initdir, moddir, systemdsystemunitdir, SYSTEMCTL: dracut sets them

# called by dracut
check() {
    require_binaries ephemcrypt || return 1
    # Only when asked for: an image without ephemeral disks gains nothing from it.
    return 255
}

# called by dracut
depends() {
    # Nothing: not even dm, which brings every md and dm module (=drivers/md), its hooks and the
    # persistent-storage rules. What ephemcrypt needs of device-mapper's udev side comes in
    # install() below.
    return 0
}

# _ephemcrypt_conf KEY DEFAULT: KEY's value in the image's /etc/ephemcrypt.conf (unquoted), or DEFAULT
_ephemcrypt_conf() {
    local v
    v=$(sed -n "s/^[[:space:]]*$1[[:space:]]*=[[:space:]]*//p" /etc/ephemcrypt.conf 2> /dev/null | tail -n 1)
    v=${v%"${v##*[![:space:]]}"}
    v=${v#[\"\']} && v=${v%[\"\']}
    echo "${v:-$2}"
}

# called by dracut
installkernel() {
    local cipher mode iv fs
    # Not only what the build host has loaded: the image boots on machines with local disks.
    # dm-crypt (dm_mod has the striped and linear targets), the NVMe driver, af_alg and algif_*
    # (setup asks the kernel's crypto API for the cipher before making the volume).
    hostonly='' instmods dm_mod dm_crypt nvme af_alg algif_skcipher algif_hash
    # The configured cipher (cipher-mode-iv), through the kernel's crypto-* module aliases: every
    # implementation of it this kernel has. For aes, also the implementations of every
    # architecture ephemcrypt runs on by name (x86_64: aesni; arm64: aes-ce and aes-neon) with the
    # generic one; instmods passes over those a kernel lacks.
    cipher=$(_ephemcrypt_conf cipher aes-xts-plain64)
    mode=${cipher#*-} && iv=${mode#*-} && mode=${mode%%-*}
    hostonly='' instmods "crypto-${cipher%%-*}" "crypto-$mode" "crypto-$mode(${cipher%%-*})" cryptd crypto_simd
    case $iv in
        essiv:*) hostonly='' instmods crypto-essiv "crypto-${iv#essiv:}" ;;
    esac
    # The templates the modes are made of, for any cipher (xts runs over ecb(cipher)); the
    # crypto-MODE(CIPHER) alias above does not name them on every kernel.
    hostonly='' instmods xts ecb cbc
    if [[ ${cipher%%-*} == aes ]]; then
        hostonly='' instmods aes aes_generic aesni_intel aes_ce_blk aes_ce_cipher aes_neon_blk aes_neon_bs
    fi
    # The configured file system's module (none for fs = none).
    fs=$(_ephemcrypt_conf fs ext4)
    [[ $fs == none ]] || hostonly='' instmods "$fs"
}

# called by dracut
install() {
    local needs prog
    inst_binary "$(find_binary ephemcrypt)" /usr/sbin/ephemcrypt
    # The programs setup runs with the image's configuration (mkfs for its `fs`), which
    # `ephemcrypt needs` reads from /etc/ephemcrypt.conf: without them every boot would end
    # degraded, so the build stops (dracut ignores install()'s status: exit), saying which.
    if ! needs=$("$(find_binary ephemcrypt)" needs); then
        dfatal "ephemcrypt: /etc/ephemcrypt.conf is not valid (see above)"
        exit 1
    fi
    for prog in $needs; do
        if ! inst_binary "$prog"; then
            dfatal "ephemcrypt: the configured file system needs '$prog', which this host does not have: install it and build again"
            exit 1
        fi
    done
    inst_multiple -o modprobe /etc/mke2fs.conf
    [[ -f /etc/ephemcrypt.conf ]] && inst_simple /etc/ephemcrypt.conf
    # The device-mapper udev rules ephemcrypt relies on, and dmsetup, which they run: the base
    # rules (10-dm.rules upstream and on Fedora, 55-dm.rules on Debian) decode the udev flags
    # ephemcrypt passes with each mapping (DM_UDEV_PRIMARY_SOURCE_FLAG, in DM_COOKIE) and
    # 11-dm.rules (db_persist, the rule of dracut's dm module) keeps them in udev's database
    # across switch_root. Without them a real root with the dm rules marks the mappings
    # SYSTEMD_READY=0 and systemd never sees their devices (tests/vm/boot-systemd.sh).
    if ! inst_multiple dmsetup; then
        dfatal "ephemcrypt: dmsetup is missing on this host (the device-mapper udev rules run it): install it (dmsetup, or device-mapper) and build again"
        exit 1
    fi
    inst_rules 10-dm.rules 55-dm.rules
    inst_dir /etc/udev/rules.d
    printf '%s\n' 'SUBSYSTEM!="block", GOTO="dm_end"' 'KERNEL!="dm-[0-9]*", GOTO="dm_end"' \
        'ACTION!="add|change", GOTO="dm_end"' 'OPTIONS+="db_persist"' 'LABEL="dm_end"' \
        > "$initdir/etc/udev/rules.d/11-dm.rules"
    if dracut_module_included "systemd"; then
        inst_simple "$moddir/ephemcrypt.service" "$systemdsystemunitdir/ephemcrypt.service"
        $SYSTEMCTL -q --root "$initdir" add-wants initrd.target ephemcrypt.service
    else
        inst_hook pre-pivot 50 "$moddir/ephemcrypt-hook.sh"
    fi
}
