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
