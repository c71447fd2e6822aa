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
    # Nothing: not even dm, which brings every md and dm module (=drivers/md), dmsetup, its
    # hooks and the persistent-storage rules. What ephemcrypt needs of udev comes in install()
    # below: a rule of its own.
    return 0
}

# called by dracut
installkernel() {
    local mods
    # The kernel modules `ephemcrypt needs` names for the image's configuration and this kernel
    # (ephemcrypt(8): needs); not only what the build host has loaded: the image boots on
    # machines with local disks.
    if ! mods=$("$(find_binary ephemcrypt)" needs --modules --kver "$kernel" --moddir "$srcmods"); then
        dfatal "ephemcrypt: no module list for kernel $kernel (see above)"
        exit 1
    fi
    [[ -n $mods ]] || return 0
    local -a list
    mapfile -t list <<< "$mods"
    if ! hostonly='' instmods -c "${list[@]}"; then
        dfatal "ephemcrypt: cannot add the modules ephemcrypt needs: ${list[*]}"
        exit 1
    fi
}

# called by dracut
install() {
    local bin needs prog files f
    bin=$(find_binary ephemcrypt)
    inst_binary "$bin" /usr/sbin/ephemcrypt
    # The programs setup runs with the image's configuration (mkfs for its `fs`) and the files
    # it reads, as `ephemcrypt needs` names them: without them every boot would end degraded,
    # so the build stops (dracut ignores install()'s status: exit), saying which.
    if ! needs=$("$bin" needs) || ! files=$("$bin" needs --files); then
        dfatal "ephemcrypt: /etc/ephemcrypt.conf is not valid (see above)"
        exit 1
    fi
    for prog in $needs; do
        if ! inst_binary "$prog"; then
            dfatal "ephemcrypt: the configured file system needs '$prog', which this host does not have: install it and build again"
            exit 1
        fi
    done
    for f in $files; do
        inst_simple "$f"
    done
    inst_multiple -o modprobe
    # ephemcrypt's own udev rule, not the device-mapper rules and dmsetup: it names the
    # /dev/mapper links of ephemcrypt's mappings (udev owns /dev/mapper; systemd's device units
    # come from it) and keeps the udev flag the real root's dm rules look for in udev's database
    # across switch_root, without which they mark the mappings SYSTEMD_READY=0
    # (tests/vm/boot-systemd.sh). See 09-ephemcrypt.rules.
    inst_rules "$moddir/09-ephemcrypt.rules"
    if dracut_module_included "systemd"; then
        inst_simple "$moddir/ephemcrypt.service" "$systemdsystemunitdir/ephemcrypt.service"
        $SYSTEMCTL -q --root "$initdir" add-wants initrd.target ephemcrypt.service
    else
        inst_hook pre-pivot 50 "$moddir/ephemcrypt-hook.sh"
    fi
}
