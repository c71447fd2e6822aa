#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets into fuzz/seeds/<target>/ from the fixture machines
in tests/fixtures/, the shipped example configuration and the examples of the unit tests. The seeds
are committed; run this after changing it (or the fixtures) and review the diff.

    python3 fuzz/make-seeds.py

The input formats are those of src/fuzzing.rs.
"""

import json
import os
import shutil
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
SEEDS = os.path.join(HERE, "seeds")
FIXTURES = os.path.join(REPO, "tests", "fixtures")

seeds = {}


def seed(target, name, data):
    if isinstance(data, str):
        data = data.encode()
    seeds.setdefault(target, {})[name] = data


# ---- config and cmdline ----------------------------------------------------------------------

example = open(os.path.join(REPO, "ephemcrypt.conf.example")).read()
seed("config", "example-commented", example)
seed("config", "example-uncommented", "".join(l[1:] + "\n" if l.startswith("#") and " = " in l else l + "\n"
                                              for l in example.splitlines()))
for t in sorted(os.listdir(FIXTURES)):
    p = os.path.join(FIXTURES, t, "etc", "ephemcrypt.conf")
    if os.path.exists(p):
        seed("config", "fixture-" + t, open(p, "rb").read())
seed("config", "every-key",
     "# a comment\n\n  devices = aws, model:Foo*, serial:S?1, path:/dev/disk/by-id/nvme-*\n"
     "exclude = serial:BAD\nforce = yes\nmin-size = 512M\nexpect = 2\nwait = 30\n"
     "cipher = aes-cbc-essiv:sha256\nkey-bits = 256\nsector-size = 512\ndiscard = true\n"
     "workqueues = kernel\nchunk = 1M\nswap = 10%\nfs = xfs\nmount = /data\n"
     "bind = /var/log, /srv/cache\non-failure = halt\nname = eph_0\n")
seed("config", "escrow-hold-guard",
     "escrow = age1q7arm3ec8pulumstfqfq7k3canfn4gc3ycau906rhz9tff2xw4tqeymzxx, "
     "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEDtZYB1SrNclIo2BKjCjyHh61gzoYi48kmQuTJSwarX ops@example\n"
     "hold = yes\nguard = yes\n")
seed("config", "swap-size-no-fs", "swap = 4G\nfs = none\nbind =\n")
seed("config", "quoted", 'devices = "gcp,azure"\nexclude = \non-failure = continue\n')
seed("config", "conflicts", "cipher = aes-cbc-essiv:sha256\nmount = /var\n")
seed("config", "bad-values", "# first line\ncipher = aes-xts-plain\nchunk = 3K\nbind = /var/log,/var\n")
seed("config", "syntax", "devices aws\n= aws\ncolour = blue\n")
seed("config", "file-and-cmdline",
     b"devices = aws\nfs = xfs\nswap = 1G\n\0BOOT_IMAGE=/vmlinuz rd.ephemcrypt.fs=ext4 "
     b'rd.ephemcrypt.devices="serial:A B,gcp" quiet')
seed("config", "disabled", b"sector-size = 4096\nchunk = 4K\n\0rd.ephemcrypt=0")

for t in sorted(os.listdir(FIXTURES)):
    p = os.path.join(FIXTURES, t, "proc", "cmdline")
    if os.path.exists(p):
        seed("cmdline", "fixture-" + t, open(p, "rb").read())
seed("cmdline", "override", 'BOOT_IMAGE=/vmlinuz rd.ephemcrypt.fs=ext4 rd.ephemcrypt.devices="serial:A B,gcp" quiet')
seed("cmdline", "last-wins", "rd.ephemcrypt.expect=1 rd.ephemcrypt.expect=3")
seed("cmdline", "disable", "rd.ephemcrypt=0 rd.ephemcrypt=1 rd.ephemcrypt=0")
seed("cmdline", "not-ours", "rd.ephemcryptx=1 rd.luks=0 ephemcrypt.fs=bad")
seed("cmdline", "not-utf8", b"root=/dev/sda splash=\xff\xfe rd.ephemcrypt.name=eph\xe9 rd.ephemcrypt.swap=4G")
seed("cmdline", "every-key",
     "rd.ephemcrypt.devices=aws,path:/dev/disk/by-id/nvme-* rd.ephemcrypt.exclude=serial:X "
     "rd.ephemcrypt.force=no rd.ephemcrypt.min-size=1GiB rd.ephemcrypt.wait=0 rd.ephemcrypt.cipher=serpent-xts-plain64 "
     "rd.ephemcrypt.key-bits=512 rd.ephemcrypt.sector-size=auto rd.ephemcrypt.discard=on "
     "rd.ephemcrypt.workqueues=bypass rd.ephemcrypt.chunk=256K rd.ephemcrypt.swap=50% rd.ephemcrypt.fs=ext4 "
     'rd.ephemcrypt.mount=/mnt/e rd.ephemcrypt.bind="/var/log,/tmp" rd.ephemcrypt.on-failure=tmpfs '
     "rd.ephemcrypt.name=e-1")
seed("cmdline", "escrow",
     'rd.ephemcrypt.escrow="age1q7arm3ec8pulumstfqfq7k3canfn4gc3ycau906rhz9tff2xw4tqeymzxx,'
     'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEDtZYB1SrNclIo2BKjCjyHh61gzoYi48kmQuTJSwarX" '
     "rd.ephemcrypt.hold=no rd.ephemcrypt.guard=yes")
# Found by fuzzing (cmdline): a quoted value with three line breaks; the round trip through a
# file, which has no form for it, ran on it because the rendering lacked three keys.
seed("cmdline", "quoted-line-breaks",
     b'rd.ephemcrypt.devices=aws,path:/dev/drevicaswe=s\xd2\x8fath:/dev/disk/by*idsemed.eph" rr=d.ephempheemcr'
     b"\n\no.\0\0\0\0\0\0\0\nm\xc2\xa0\xc2\xa0\xc2\xa0\xc2\xa0rprd.ephemcrypt=ta90is+/bq-id/nvmvphe.devices=aws,"
     b"path:/dev/disk/by-id/nvmv/ihk/by-ink=256")

# ---- size_glob ---------------------------------------------------------------------------------

for i, s in enumerate([b"4096", b"4K", b"2m", b"1GiB", b"3T", b"1GB", b"99999999999999999999T", b" 16777215T ",
                       b"259:3\n", b"4294967295:4294967295", b"/data\\040disk\\011x\\134", b"\\999\\04"]):
    seed("size_glob", "value-%02d" % i, s)
for i, (p, t) in enumerate([(b"Amazon*", b"Amazon EC2 NVMe Instance Storage"), (b"S?1", b"SX1"),
                            (b"/dev/nvme[1-3]n1", b"/dev/nvme2n1"), (b"/dev/nvme[!1-3]n1", b"/dev/nvme4n1"),
                            (b"a[b", b"a[b"), (b"*a*b*", b"xxaxxbxx"), (b"[]]x[^a-c]", b"]xd"),
                            (b"*a*a*a*a*a*a*a*a*a*a*a*b", b"a" * 64), (b"*[[[[[[[[[[[[[[[[b", b"[" * 40)]):
    seed("size_glob", "glob-%02d" % i, p + b"\0" + t)
# The timeout fuzzing found (config.rs, unclosed_brackets_do_not_blow_up): 19 s before the fix.
seed("size_glob", "glob-unclosed-brackets", b"*" + b"[" * 1365 + b"x\0" + b"[" * 2729)

# ---- host_sysfs --------------------------------------------------------------------------------


def chunks(data, base):
    """Write commands for the non-zero runs of `data` (at disk offset `base`)."""
    runs = []
    i = 0
    while i < len(data):
        if data[i] == 0:
            i += 1
            continue
        j = i
        while j < len(data) and any(data[j:j + 64]):
            j += 1
        while j > i and data[j - 1] == 0:
            j -= 1
        runs.append((base + i, data[i:j]))
        i = j
    out = []
    for off, run in runs:
        # No line of an entry's content may start with '%' (that starts the next entry): write such
        # a '%' behind another byte, then that byte again.
        start = 0
        for k in range(len(run)):
            if run[k:k + 1] == b"%" and (k == 0 or run[k - 1:k] == b"\n"):
                if k > start:
                    out.append((off + start, run[start:k]))
                before = run[k - 1:k] if k > 0 else b"\0"
                if off + k > 0:
                    out.append((off + k - 1, b"\0%"))
                    out.append((off + k - 1, before))
                start = k + 1
        if start < len(run):
            out.append((off + start, run[start:]))
    return out


def host_entries(root):
    """The entries of a fixture machine: files, directories, links; images as their non-zero runs."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel = os.path.relpath(dirpath, root)
        for d in list(dirnames):
            full = os.path.join(dirpath, d)
            r = os.path.normpath(os.path.join(rel, d))
            if os.path.islink(full):
                out.append(b"%l " + r.encode() + b" " + os.readlink(full).encode() + b"\n")
                dirnames.remove(d)
            elif not os.listdir(full):
                out.append(b"%d " + r.encode() + b"\n")
        for f in sorted(filenames):
            full = os.path.join(dirpath, f)
            r = os.path.normpath(os.path.join(rel, f)).encode()
            if os.path.islink(full):
                out.append(b"%l " + r + b" " + os.readlink(full).encode() + b"\n")
                continue
            data = open(full, "rb").read()
            if r.startswith(b"dev/"):
                size = len(data)
                if sum(1 for b in data[:4096] if b) > 2048:
                    data = data[:1024]  # random data: a little of it shows the same
                for off, c in chunks(data, 0):
                    out.append(b"%w " + r + b" " + str(off).encode() + b"\n" + c + b"\n")
                out.append(b"%s " + r + b" " + str(size).encode() + b"\n")
            else:
                out.append(b"%f " + r + b"\n" + data + b"\n")
    return out


for t in sorted(os.listdir(FIXTURES)):
    if os.path.isdir(os.path.join(FIXTURES, t)):
        seed("host_sysfs", "fixture-" + t, b"".join(host_entries(os.path.join(FIXTURES, t))))

aws = b"".join(host_entries(os.path.join(FIXTURES, "aws")))
newroot = (b"%f proc/self/mountinfo\n"
           b"22 1 0:21 / / rw,relatime shared:1 - rootfs rootfs rw\n"
           b"40 22 259:1 / /sysroot ro,nosuid,nodev,relatime - xfs /dev/nvme0n1p1 rw,lazytime\n"
           b"41 40 0:40 / /sysroot/data\\040disk rw,noatime shared:7 master:8 - tmpfs none rw\n\n"
           b"%d sysroot/var/log\n%d sysroot/var/tmp\n%d sysroot/mnt\n"
           b"%l sysroot/sbin/init ../lib/systemd/systemd\n"
           b"%f sysroot/etc/fstab\n# a CIS image\nUUID=1 / xfs defaults 0 1\nUUID=2 /var xfs nodev 0 2\n"
           b"UUID=3 /var/log/audit xfs defaults 0 2\ntmpfs /tmp tmpfs nosuid,nodev 0 0\nUUID=4 none swap sw 0 0\n\n")
# What fuzzing found (host.rs, one_device_number_on_two_entries_refuses_both): both were taken.
seed("host_sysfs", "aws-one-device-number-twice", aws.replace(b"259:4", b"259:3"))
# (host.rs, entries_not_named_in_utf8_are_refused_unread): the three read as one disk, taken thrice.
good = b"%f sys/block/{}/dev\n8:0\n\n%f sys/block/{}/size\n20971520\n\n%f sys/block/{}/device/model\nTest good\n\n"
seed("host_sysfs", "names-not-utf8", b"%f proc/cmdline\nrd.ephemcrypt.devices=model:Test*\n\n%f proc/mounts\n\n"
     + b"".join(good.replace(b"{}", n) for n in (b"sd\xef\xbf\xbd", b"sd\xff", b"sd\xfe")) + b"%s dev/sd\xef\xbf\xbd 0\n")
seed("host_sysfs", "aws-newroot", aws + newroot)
seed("host_sysfs", "aws-newroot-not-systemd",
     aws + newroot.replace(b"%l sysroot/sbin/init ../lib/systemd/systemd\n", b"%f sysroot/sbin/init\n#!/bin/sh\n\n"))
seed("host_sysfs", "aws-config-cmdline-d",
     aws + b"%f etc/ephemcrypt.conf\nswap = 10%\nfs = xfs\nchunk = 1M\nexclude = path:/dev/disk/by-id/nvme-gone\n\n"
     b"%f etc/cmdline.d/90-ephemcrypt.conf\nrd.ephemcrypt.expect=2 rd.ephemcrypt.wait=0\n\n")
seed("host_sysfs", "aws-force-ours",
     aws + b"%f etc/ephemcrypt.conf\nforce = yes\nsector-size = 512\nworkqueues = kernel\ndiscard = yes\n\n"
     b"%f proc/swaps\nFilename\tType\tSize\tUsed\tPriority\n/dev/nvme0n1p128 partition 8 0 -2\n\n")

status_doc = {
    "result": "degraded", "reason": "a reason with \"quotes\" and \u00fcn\u00efcode", "version": "0.1.0",
    "failed_step": "mkfs ext4 on /dev/mapper/ephemcrypt",
    "disks": [{"name": "nvme1n1", "path": "/dev/nvme1n1", "dev": "259:1", "model": "Amazon EC2 NVMe Instance Storage",
               "serial": "AWS1", "size_bytes": 1769 << 30, "use": True, "reason": ""},
              {"name": "sdb", "path": "/dev/sdb", "dev": "8:16", "model": "", "serial": "", "size_bytes": 1 << 30,
               "use": False, "reason": "carries a signature: \"ext4\"\n"}],
    "cipher": "aes-xts-plain64", "key_bits": 512, "sector_size": 4096,
    "flags": ["no_read_workqueue", "sector_size:4096"], "fs": "ext4",
    "mappings": [{"name": "ephemcrypt", "dev": "253:0", "live": None},
                 {"name": "ephemcrypt-swap", "dev": "253:2", "live": True},
                 {"name": "ephemcrypt-data", "dev": "253:1", "live": False}],
    "key": "kernel keyring (logon), never stored", "swap": "/dev/mapper/ephemcrypt-swap", "mount": "/mnt/ephemcrypt",
    "binds": ["/var/log", "/tmp"], "tmpfs": ["/var/tmp"], "units": ["var-log.mount"], "already_active": True,
    "steps": [{"step": "mapping ephemcrypt", "ms": 12}],
}
status_text = json.dumps(status_doc, indent=2, ensure_ascii=False).encode() + b"\n"
seed("host_sysfs", "aws-status", aws + b"%f run/ephemcrypt/status.json\n" + status_text + b"\n"
     + b"%d sys/class/misc/device-mapper\n%f dev/mapper/control\n\n")

# ---- signature_header --------------------------------------------------------------------------


def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    return crc ^ 0xFFFFFFFF


def header(member=1, members=2, damaged=False, escrow=(0, 0), fields=()):
    """A valid header (1 MiB on each member after the reserved MiB: it fits a 3 MiB disk image);
    `fields` puts (offset, length, bytes) over it before the checksum: a forged header."""
    b = bytearray(4096)
    b[0:16] = b"EPHEMCRYPT\0HDR\x01\x02"
    struct.pack_into("<II", b, 16, 1, 4096)
    b[24:40] = bytes([0x5E]) * 16
    b[40:56] = bytes([0xB0]) * 16
    struct.pack_into("<QIIQQQQIIQQQQ", b, 56, 1795000000, member, members, 2048, 512, 2048, 2048 * members, 512,
                     4096, 0, 1024, 1024, 2048 * members - 1024)
    b[144:148] = b"ext4"
    b[152:167] = b"aes-xts-plain64"
    b[184:194] = b"ephemcrypt"
    for i in range(members):
        s = b"AWS%02d" % i
        b[256 + 48 * i:256 + 48 * i + len(s)] = s
    struct.pack_into("<II", b, 248, *escrow)
    for off, length, data in fields:
        b[off:off + length] = data[:length].ljust(length, b"\0")
    struct.pack_into("<I", b, 4092, crc32c(bytes(b[:4092])))
    if damaged:
        b[300] ^= 1
    return bytes(b)


def disk(size, head=b"", tail=b"", tail_at=(1 << 64) - 1):
    return b"\0" + struct.pack("<QIQ", size, len(head), tail_at) + head + tail


def img(*pieces):
    """Bytes with each (offset, data) piece in place, zeros between."""
    b = bytearray(max(off + len(data) for off, data in pieces))
    for off, data in pieces:
        b[off:off + len(data)] = data
    return bytes(b)


MIB = 1 << 20
seed("signature_header", "disk-blank-10m", disk(10 * MIB))
seed("signature_header", "disk-ours", disk(3 * MIB, header()))
seed("signature_header", "disk-ours-damaged", disk(3 * MIB, header(damaged=True)))
seed("signature_header", "disk-tiny", b"\0" + b"\x00" * 8 + b"\x01")
seed("signature_header", "disk-ext4", disk(10 * MIB + 7 * 512, img((0x418, b"\x02\0\0\0"), (0x438, b"\x53\xef"),
                                                                (0x44C, b"\x01\0\0\0"))))
seed("signature_header", "disk-xfs", disk(10 * MIB, b"XFSB\0\0\x10\0"))
seed("signature_header", "disk-gpt", disk(10 * MIB, img((446, bytes([0, 0, 2, 0, 0xEE, 0xFF, 0xFF, 0xFF, 1, 0, 0, 0, 0xFF, 0xFF,
                                                                   0xFF, 0xFF])), (510, b"\x55\xaa"), (512, b"EFI PART"))))
seed("signature_header", "disk-gpt-backup", disk(10 * MIB, b"", b"EFI PART" + b"\0" * 504))
seed("signature_header", "disk-mbr", disk(10 * MIB, img((446, bytes([0x80, 1, 1, 0, 0x83, 0xFE, 0xFF, 0xFF, 0x3F, 0, 0, 0, 0x41,
                                                                   0x0C, 0x3D, 0])), (510, b"\x55\xaa"))))
seed("signature_header", "disk-fat", disk(10 * MIB, img((0x0B, b"\x00\x02\x08\x20\x00\x02"), (0x15, b"\xf8"),
                                              (0x36, b"FAT16   "), (510, b"\x55\xaa"))))
seed("signature_header", "disk-luks2", disk(10 * MIB, img((0, b"LUKS\xba\xbe\x00\x02"), (256, b"\0" * 8))))
seed("signature_header", "disk-luks2-secondary", disk(3 * MIB, b"", b"SKUL\xba\xbe\x00\x02" + b"\0" * 248
                                                      + struct.pack(">Q", MIB), MIB))
seed("signature_header", "disk-lvm", disk(10 * MIB, img((512, b"LABELONE"), (536, b"LVM2 001"))))
seed("signature_header", "disk-md-1.2", disk(10 * MIB, img((4096, struct.pack("<II", 0xA92B4EFC, 1)))))
seed("signature_header", "disk-md-0.90", disk(10 * MIB + 7 * 512, b"", struct.pack("<II", 0xA92B4EFC, 0)
                                             + b"\0" * 64, 10 * MIB - 65536))
seed("signature_header", "disk-swap", disk(10 * MIB, img((4086, b"SWAPSPACE2"))))
seed("signature_header", "disk-btrfs", disk(10 * MIB, b"", b"_BHRfS_M", 0x10040))
seed("signature_header", "disk-zfs", disk(3 * MIB, b"", struct.pack("<Q", 0x00BAB10C), 262144 + 131072 + 2048))
seed("signature_header", "disk-drbd", disk(2 * MIB, b"", b"\0" * 60 + b"\x83\x74\x02\x6b" + b"\0" * 4032))
seed("signature_header", "disk-iso", disk(10 * MIB, b"", b"\x01CD001\x01", 0x8000))
seed("signature_header", "disk-ntfs", disk(10 * MIB, b"\xebR\x90NTFS    "))
seed("signature_header", "disk-f2fs", disk(10 * MIB, img((0x400, b"\x10\x20\xf5\xf2"), (0x408, b"\x09"), (0x410, b"\x0c"))))
seed("signature_header", "disk-stratis", disk(10 * MIB, img((516, b"!Stra0tis\x86\xff\x02^Arh"))))
seed("signature_header", "disk-asm", disk(10 * MIB, img((32, b"ORCLDISK"))))
seed("signature_header", "disk-bcache", disk(10 * MIB, img((0x1018, b"\xc6\x85\x73\xf6\x4e\x1a\x45\xca\x82\x65\xf5\x7f"
                                                                    b"\x48\xba\x6d\x81"))))
seed("signature_header", "disk-random", disk(300 * MIB, bytes((i * 7919 + 13) % 251 for i in range(2048)),
                                             bytes((i * 104729 + 7) % 253 for i in range(2048))))
seed("signature_header", "header-member-2-of-2", b"\x01" + header())
seed("signature_header", "header-64-members", b"\x01" + header(63, 64))
seed("signature_header", "header-damaged", b"\x01" + header(damaged=True))
seed("signature_header", "header-escrow", b"\x01" + header(escrow=(4096, 4096)))
seed("signature_header", "disk-ours-escrow", disk(3 * MIB, header(escrow=(4096, 4096))
                                                   + b"age-encryption.org/v1\n-> X25519 "))
seed("signature_header", "header-one-member", b"\x01" + header(0, 1, fields=[(80, 8, b""), (88, 8, struct.pack("<Q", 4096)),
                                                                       (96, 8, struct.pack("<Q", 4096)),
                                                                       (136, 8, struct.pack("<Q", 3072))]))
# Forged headers (issue 19): every kind of hostile string in every string field, and numbers
# ephemcrypt never writes. Each has a checksum that fits; decode must refuse it, naming the field.
FORGED_STRINGS = [b"x\n<0>emerg", b"\x1b[2J", b"x;touch PWNED;", b"x\ntouch PWNED #", b"x$(touch PWNED)", b"x`id`",
                  b"it's", b'a"b', b"--foo", b"two words", b"x\xff\xfe", b"ephemcrypt\0junk", b"v" * 64]
for field, (off, length) in {"name": (184, 64), "fs": (144, 8), "cipher": (152, 32), "serial": (256, 48)}.items():
    for i, text in enumerate(FORGED_STRINGS):
        seed("signature_header", "forged-%s-%02d" % (field, i), b"\x01" + header(fields=[(off, length, text)]))
seed("signature_header", "forged-cipher-null", b"\x01" + header(fields=[(152, 32, b"cipher_null-ecb")]))
seed("signature_header", "forged-cipher-table", b"\x01" + header(fields=[(152, 32, b"aes-xts-plain64 0 /dev/sda 0")]))
for name, (off, value) in {"key-bits": (104, struct.pack("<I", 1024)), "sector": (108, struct.pack("<I", 3000)),
                           "offset": (72, struct.pack("<Q", 0)), "chunk": (80, struct.pack("<Q", 3)),
                           "member-len": (88, struct.pack("<Q", 1 << 60)), "swap": (120, struct.pack("<Q", 5000)),
                           "escrow": (248, struct.pack("<I", 27389)), "size": (20, struct.pack("<I", 8192)),
                           "unused": (4000, b"\x01")}.items():
    seed("signature_header", "forged-" + name, b"\x01" + header(fields=[(off, len(value), value)]))
seed("signature_header", "disk-forged-name", disk(3 * MIB, header(fields=[(184, 64, b"x\n<0>emerg")])))
seed("signature_header", "disk-ours-too-small", disk(2 * MIB - 4096, header()))
# Found by fuzzing (signature_header): a valid header naming an escrow that is not there.
seed("signature_header", "header-escrow-missing", bytes.fromhex(
    "01455048454d435259505400484452010201000000001000005e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5eb0b0b0b0b0b0b0"
    "b0b0b0b0b0b0b0b0b0c086fd6a0000000001000000020000000008000000000000000200001000000000002000000040"
    "00000000000000000000020000000000000000000000000000000000000000000000010000000000050000003e000000"
    "00006578743400006e363300000000000000000000000000000000407289898989898989898989898989898989898989"
    "89898989898989898989894989898989898900001000005e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5eb0b0b0b0b0b0b0b0b0"
    "b0b0b0b0b0b0b0c086fd6a0000000001000000020041533030000000"))
seed("signature_header", "header-fields", b"\x01" + header()[:320])

# ---- status_json -------------------------------------------------------------------------------

seed("status_json", "full", status_text)
seed("status_json", "least", '{"result": "absent", "reason": "no eligible disk"}')
seed("status_json", "escapes", '{"result": "ok", "reason": "\\u00fc\\ud800\\n\\t\\"\\\\\\/\\b\\f", "version": null, '
                               '"mappings": [], "already_active": false, "steps": [{"step": "x", "ms": 0}]}')
seed("status_json", "nested", "[" * 32 + "]" * 32)
seed("status_json", "numbers", "[0, 18446744073709551615, 18446744073709551616, 1.5, -1, 1e3, true, false, null]")
for t in ("aws", "refusals"):
    import subprocess
    exe = os.path.join(REPO, "target", "debug", "ephemcrypt")
    if os.path.exists(exe):
        out = subprocess.run([exe, "plan", "--json", "--host", os.path.join(FIXTURES, t)], capture_output=True).stdout
        if out:
            seed("status_json", "plan-" + t, out)

# ---- dm_reply ----------------------------------------------------------------------------------


def dm_header(data_len, target_count=0, flags=0, dev=0):
    b = bytearray(312)
    struct.pack_into("=IIIIIIiII", b, 0, 4, 48, 0, 312 + data_len, 312, target_count, 0, flags, 0)
    struct.pack_into("=Q", b, 40, dev)
    return bytes(b)


def reply(data, errno=0):
    return bytes([errno]) + struct.pack("<H", len(data)) + data


def versions(entries):
    data = b""
    for i, (name, v) in enumerate(entries):
        e = struct.pack("=IIII", 0, *v) + name + b"\0"
        e += b"\0" * (-len(e) % 8)
        if i + 1 < len(entries):
            e = struct.pack("=I", len(e)) + e[4:]
        data += e
    return dm_header(len(data)) + data


def table(lines):
    data = b""
    for start, length, ty, params in lines:
        data += b"\0" * (-len(data) % 8)
        at_ = len(data)
        nxt = at_ + 40 + len(params) + 1
        nxt += -nxt % 8
        data += struct.pack("=QQiI", start, length, 0, nxt) + ty.ljust(16, b"\0") + params + b"\0"
    return dm_header(len(data), len(lines), 1 << 4) + data


seed("dm_reply", "versions", b"\0" + reply(versions([(b"linear", (1, 4, 0)), (b"striped", (1, 6, 0)),
                                                     (b"crypt", (1, 24, 0))])))
seed("dm_reply", "versions-buffer-full", b"\0" + reply(dm_header(0, 0, 1 << 8)) + reply(versions([(b"crypt", (1, 28, 0))])))
seed("dm_reply", "versions-empty", b"\0" + reply(dm_header(0)))
seed("dm_reply", "table", b"\x01" + reply(table([
    (0, 153600, b"striped", b"3 512 259:0 0 259:1 0 259:2 0"),
    (153600, 8, b"crypt", b"aes-xts-plain64 :64:logon:ephemcrypt:x 0 253:0 0")])))
seed("dm_reply", "table-hex-key", b"\x01" + reply(table([
    (0, 2048, b"crypt", b"aes-xts-plain64 00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff 0 253:0 0 "
                        b"3 no_read_workqueue no_write_workqueue sector_size:4096")])))
seed("dm_reply", "table-none", b"\x01" + reply(dm_header(64) + b"\0" * 64))
seed("dm_reply", "info-active", b"\x02" + reply(dm_header(0, 1, 1 << 5, (253 << 8) | 3)))
seed("dm_reply", "info-missing", b"\x02\x06")
seed("dm_reply", "create", b"\x03" + reply(dm_header(0, 0, 0, (253 << 8) | 0)))
seed("dm_reply", "create-busy", b"\x03\x10")


def load(name, secure, targets):
    out = b"\x04" + bytes([len(name)]) + name + bytes([secure, len(targets)])
    for t in targets:
        out += t
    return out


def num_dev(major, minor):
    return b"\x01" + struct.pack("<II", major, minor)


def linear(start, length, dev, offset):
    return struct.pack("<QQ", start, length) + b"\x00" + dev + struct.pack("<Q", offset)


def crypt(start, length, cipher, keykind, key, dev, options):
    out = struct.pack("<QQ", start, length) + b"\x02" + bytes([len(cipher)]) + cipher + bytes([keykind])
    if keykind != 0:
        out += bytes([len(key)]) + key
    out += struct.pack("<Q", 0) + dev + struct.pack("<Q", 2048) + bytes([len(options)])
    for o in options:
        out += bytes([len(o)]) + o
    return out


def striped(start, length, chunk, devs):
    out = struct.pack("<QQ", start, length) + b"\x01" + struct.pack("<Q", chunk) + bytes([len(devs)])
    for d in devs:
        out += d + struct.pack("<Q", 2048)
    return out


seed("dm_reply", "load-crypt-logon", load(b"ephemcrypt", 0, [crypt(0, 7419723776, b"aes-xts-plain64", 1,
                                                                      b"ephemcrypt:ephemcrypt:1", num_dev(253, 0),
                                                                      [b"no_read_workqueue", b"sector_size:4096"])]))
seed("dm_reply", "load-crypt-hex", load(b"ephemcrypt", 1, [crypt(0, 2048, b"aes-xts-plain64", 2, b"00ff" * 32,
                                                                    num_dev(8, 16), [])]))
seed("dm_reply", "load-stripe", load(b"ephemcrypt-stripe", 0, [striped(0, 7419723776, 512,
                                                                       [num_dev(259, 4), num_dev(259, 3)])]))
seed("dm_reply", "load-slices", load(b"ephemcrypt-swap", 0, [linear(0, 8388608, num_dev(253, 1), 0),
                                                               linear(8388608, 8, b"\x00\x0aephemcrypt", 0)]))
seed("dm_reply", "table-lines", b"\x05" + b"0 153600 striped 3 512 259:0 0 259:1 0 259:2 8\n0 10 error\n"
                                b"0 2048 crypt aes-xts-plain64 00112233445566778899aabbccddeeff 0 253:0 0\n"
                                b"x 10 linear 1:2 0\n0 linear\n")

# ---- recover_script ----------------------------------------------------------------------------
# Control bytes (members, swap, cipher, fs, name from the input, rendering alone), then NUL-separated:
# name, cipher, fs, three serials, three mapping names.


def recover(control, *fields):
    return bytes(control) + b"".join(b"\x00" + f.encode() for f in fields)


hostile = ["x;touch PWNED;", "x\ntouch PWNED #", "x$(touch PWNED)", "`touch PWNED`", "'; touch PWNED; '",
           "x'\"$(touch PWNED)\"'", "'\\''", "--help", "${IFS}*~", "\x1b[2J\r<0>", "a b\tc", "\u202e\u0085"]
seed("recover_script", "benign", recover([1, 1, 2, 3, 1, 0], "ephemcrypt", "aes-xts-plain64", "ext4", "A", "B", "C"))
seed("recover_script", "one-disk-xfs", recover([0, 0, 2, 1, 0, 0], "", "", "", "SER1"))
seed("recover_script", "no-fs", recover([2, 1, 1, 2, 1, 0], "vol_1-x", "", "", "A", "B", "C"))
for i, h in enumerate(hostile):
    seed("recover_script", "serials-%02d" % i, recover([i % 3, i % 2, 2, 3, 0, 0], "", "", "", h, h + "1", h + "2"))
    seed("recover_script", "names-%02d" % i, recover([i % 3, 1, 2, 3, 0, 1], "", "", "", "A", "B", "C", h, h + "-", "d" + h))
    seed("recover_script", "header-%02d" % i, recover([2, 1, 0, 0, 1, 0], h, h, h, "A", h, "C"))

# ---- tpm_response ------------------------------------------------------------------------------
# The responses of TPM 2.0 Part 3's layouts, as swtpm gives them (src/tpm/codec_tests.rs).


def tpm(tag, body, rc=0):
    return struct.pack(">HII", tag, 10 + len(body), rc) + body


def selection(alg, bitmap):
    return struct.pack(">HB", alg, len(bitmap)) + bitmap


banks = [(4, b"\xff\xff\xff"), (0xB, b"\xff\xff\xff"), (0xC, b"\0\0\0"), (0xD, b"\0\0\0")]
seed("tpm_response", "banks-swtpm", b"\x00" + tpm(0x8001, b"\0" + struct.pack(">II", 5, 4) + b"".join(selection(a, m) for a, m in banks)))
seed("tpm_response", "banks-sm3", b"\x00" + tpm(0x8001, b"\0" + struct.pack(">II", 5, 1) + selection(0x12, b"\xff\xff\xff")))
seed("tpm_response", "error-failure-mode", b"\x00" + tpm(0x8001, b"", 0x101))
seed("tpm_response", "extend-ok", b"\x01" + tpm(0x8002, struct.pack(">I", 0) + b"\0\0\x01\0\0"))
seed("tpm_response", "extend-locality", b"\x01" + tpm(0x8001, b"", 0x907))
seed("tpm_response", "read-15-sha256", b"\x02\x0f\x01" + tpm(0x8001, struct.pack(">II", 42, 1) + selection(0xB, b"\0\x80\0")
                                                                + struct.pack(">IH", 1, 32) + b"\x11" * 32))

# ---- write -------------------------------------------------------------------------------------

for target, files in seeds.items():
    d = os.path.join(SEEDS, target)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    for name, data in files.items():
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)
    print("%-17s %3d seeds, %6d bytes, largest %5d" % (target, len(files), sum(map(len, files.values())),
                                                        max(map(len, files.values()))), file=sys.stderr)
