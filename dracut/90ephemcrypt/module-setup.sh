#!/bin/bash
# dracut module for ephemcrypt: encrypt ephemeral disks at boot with a key nobody keeps.
# Included with `dracut --add ephemcrypt` or `add_dracutmodules+=" ephemcrypt "` in dracut.conf.d.

# called by dracut
check() {
    require_binaries ephemcrypt || return 1
    # Only when asked for: an image without ephemeral disks gains nothing from it.
    return 255
}

# called by dracut
depends() {
    # dm: dmsetup and the device-mapper udev rules. They turn the udev flags ephemcrypt passes
    # with each mapping (DM_UDEV_PRIMARY_SOURCE_FLAG) into udev database entries that survive
    # switch_root (11-dm.rules: db_persist). Without them a real root with the dm rules marks
    # the mappings SYSTEMD_READY=0: systemd never sees their devices (tests/vm/boot-systemd.sh).
    echo dm
    return 0
}

# called by dracut
installkernel() {
    # Not only what the build host has loaded: the image boots on machines with local disks.
    # The AES implementations of every architecture ephemcrypt runs on (x86_64: aesni; arm64:
    # aes-ce and aes-neon) with the generic one; instmods passes over those a kernel lacks. af_alg
    # and algif_*: setup asks the kernel's crypto API for the cipher before making the volume.
    hostonly='' instmods dm_mod dm_crypt \
        aes aes_generic aesni_intel aes_ce_blk aes_ce_cipher aes_neon_blk aes_neon_bs \
        xts ecb cbc crypto_simd cryptd af_alg algif_skcipher algif_hash \
        ext4 xfs nvme
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
    # The other file system's mkfs where the build host has it (rd.ephemcrypt.fs= at boot).
    inst_multiple -o mkfs.ext4 mkfs.xfs modprobe /etc/mke2fs.conf
    [[ -f /etc/ephemcrypt.conf ]] && inst_simple /etc/ephemcrypt.conf
    if dracut_module_included "systemd"; then
        inst_simple "$moddir/ephemcrypt.service" "$systemdsystemunitdir/ephemcrypt.service"
        $SYSTEMCTL -q --root "$initdir" add-wants initrd.target ephemcrypt.service
    else
        inst_hook pre-pivot 50 "$moddir/ephemcrypt-hook.sh"
    fi
}
