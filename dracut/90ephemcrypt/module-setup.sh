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
    hostonly='' instmods dm_mod dm_crypt \
        aes aes_generic aesni_intel xts ecb cbc crypto_simd cryptd \
        ext4 xfs nvme
}

# called by dracut
install() {
    inst_binary "$(command -v ephemcrypt)" /usr/sbin/ephemcrypt
    inst_multiple -o mkfs.ext4 mke2fs mkfs.xfs modprobe /etc/mke2fs.conf
    [[ -f /etc/ephemcrypt.conf ]] && inst_simple /etc/ephemcrypt.conf
    if dracut_module_included "systemd"; then
        inst_simple "$moddir/ephemcrypt.service" "$systemdsystemunitdir/ephemcrypt.service"
        $SYSTEMCTL -q --root "$initdir" add-wants initrd.target ephemcrypt.service
    else
        inst_hook pre-pivot 50 "$moddir/ephemcrypt-hook.sh"
    fi
}
