//! PURE: what an initramfs must hold for a configuration: the kernel modules (from the kernel's
//! `modules.builtin` and `modules.dep` text), the programs and the files. `ephemcrypt needs`
//! prints them for the image builders' hooks (dracut, initramfs-tools, mkinitcpio), which hold no
//! list of their own; setup uses the same lists to refuse, at boot, an `rd.ephemcrypt.cipher=` or
//! `rd.ephemcrypt.fs=` the image was not built for.

use std::fmt;

use crate::config::{CipherSpec, Config, Fs};

/// The modules a kernel has, by name (`-` read as `_`, as the kernel does), with their paths
/// under /lib/modules/KVER (`kernel/arch/x86/crypto/aesni-intel.ko`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Kernel {
    builtin: Vec<(String, String)>,
    modules: Vec<(String, String)>,
}

/// A module's name from its path: the file name without `.ko` (and a compression suffix), `-`
/// as `_`.
fn module_name(path: &str) -> Option<String> {
    let file = path.rsplit('/').next()?;
    let stem = [".ko", ".ko.xz", ".ko.zst", ".ko.gz"].iter().find_map(|s| file.strip_suffix(s))?;
    (!stem.is_empty()).then(|| stem.replace('-', "_"))
}

fn entries(text: &str, first_field: bool) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| {
            let path = if first_field { l.split(':').next()? } else { l };
            let path = path.trim();
            module_name(path).map(|n| (n, path.to_string()))
        })
        .collect()
}

impl Kernel {
    /// From the text of `modules.builtin` (one path a line) and `modules.dep` (`path: deps`).
    pub(crate) fn parse(builtin: &str, dep: &str) -> Kernel {
        Kernel { builtin: entries(builtin, false), modules: entries(dep, true) }
    }

    fn all(&self) -> impl Iterator<Item = &(String, String)> {
        self.builtin.iter().chain(&self.modules)
    }

    fn is_builtin(&self, name: &str) -> bool {
        self.builtin.iter().any(|(n, _)| n == name)
    }
}

/// One thing the volume needs from the kernel: any of `names` provides it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Need {
    /// What it is for, for messages: "the cipher aes".
    what: String,
    /// Every module of the kernel that provides it (all of them go into the image: the
    /// architecture's accelerated drivers with the generic one).
    names: Vec<String>,
    /// Setup cannot make the volume without one of them (else: used where the kernel has it).
    required: bool,
}

/// What a configuration needs of a kernel that the kernel does not have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Missing(Vec<String>);

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("; "))
    }
}

/// A module by exact name, wherever the kernel keeps it.
fn exact(k: &Kernel, what: &str, name: &str, required: bool) -> Need {
    let names = k.all().filter(|(n, _)| n == name).map(|(n, _)| n.clone()).take(1).collect();
    Need { what: what.to_string(), names, required }
}

/// An algorithm: its generic module (`generic`, under crypto/) and every architecture's
/// implementation whose name starts with `arch_prefix` (under arch/*/crypto/: aesni_intel,
/// aes_ce_blk, aes_neon_bs, …), as cryptroot's hook adds them by glob.
fn algorithm(k: &Kernel, what: &str, generic: &[String], arch_prefix: &str) -> Need {
    let mut names: Vec<String> = Vec::new();
    for (n, p) in k.all() {
        // Not the AEADs built on the cipher (aes_ce_ccm, aesni's gcm is inside aesni_intel).
        let aead = n.ends_with("_ccm") || n.ends_with("_gcm");
        let arch = p.starts_with("kernel/arch/") && p.contains("/crypto/") && n.starts_with(arch_prefix) && !aead;
        let gen = p.starts_with("kernel/crypto/") && generic.contains(n);
        if (arch || gen) && !names.contains(n) {
            names.push(n.clone());
        }
    }
    Need { what: what.to_string(), names, required: true }
}

/// Everything `config` needs of kernel `k`, in the order it is used.
fn needs(config: &Config, k: &Kernel) -> Vec<Need> {
    let mut v = vec![
        exact(k, "device-mapper (dm_mod)", "dm_mod", true),
        exact(k, "dm-crypt (dm_crypt)", "dm_crypt", true),
        // Every cloud preset's disks are NVMe; where the kernel has no NVMe driver, nothing.
        exact(k, "the NVMe driver", "nvme", false),
        // AF_ALG: setup asks the crypto API for the cipher before making the volume; without
        // it, the table load is the check.
        exact(k, "AF_ALG", "af_alg", false),
        exact(k, "AF_ALG skcipher", "algif_skcipher", false),
    ];
    // A resolved configuration's cipher always parses; were it not to, nothing is added for it
    // and the build fails on its own (`needs` resolves the configuration first).
    if let Ok(spec) = CipherSpec::parse(&config.cipher) {
        let c = spec.cipher;
        let generic = [format!("{c}_generic"), c.to_string()];
        v.push(algorithm(k, &format!("the cipher {c} ({})", config.cipher), &generic, c));
        match spec.mode {
            // xts runs over ecb(cipher).
            "xts" => {
                v.push(exact(k, "the xts mode", "xts", true));
                v.push(exact(k, "ecb, under xts", "ecb", true));
            }
            m => v.push(exact(k, &format!("the {m} mode"), m, true)),
        }
        if let Some(hash) = spec.iv.strip_prefix("essiv:") {
            v.push(exact(k, "the essiv IV", "essiv", true));
            v.push(exact(k, "AF_ALG hash", "algif_hash", false));
            // sha256: sha256_generic (sha256 in later kernels), sha256_ssse3, sha2_ce, ….
            let generic = [format!("{hash}_generic"), hash.to_string()];
            v.push(algorithm(k, &format!("the hash {hash}"), &generic, hash.get(..4).unwrap_or(hash)));
        } else if spec.iv == "eboiv" {
            v.push(exact(k, "the eboiv IV", "eboiv", true));
        }
    }
    match config.fs {
        Fs::None => {}
        fs => v.push(exact(k, &format!("the file system {}", fs.name()), fs.name(), true)),
    }
    v
}

/// The modules to put into an image for `config` and kernel `k`: every module a need names,
/// built-in ones left out, each once; or what the kernel lacks.
pub(crate) fn modules(config: &Config, k: &Kernel) -> Result<Vec<String>, Missing> {
    let needs = needs(config, k);
    let missing: Vec<String> = needs
        .iter()
        .filter(|n| n.required && n.names.is_empty())
        .map(|n| format!("{}: no module and nothing built in", n.what))
        .collect();
    if !missing.is_empty() {
        return Err(Missing(missing));
    }
    let mut out: Vec<String> = Vec::new();
    for name in needs.into_iter().flat_map(|n| n.names) {
        if !k.is_builtin(&name) && !out.contains(&name) {
            out.push(name);
        }
    }
    Ok(out)
}

/// What `config` needs that an image's kernel `k` (the image's own modules.dep: the modules it
/// holds) does not offer: one line per need none of whose modules is there.
pub(crate) fn lacking(config: &Config, k: &Kernel) -> Vec<String> {
    needs(config, k).into_iter().filter(|n| n.required && n.names.is_empty()).map(|n| n.what).collect()
}

/// The programs setup runs with this configuration (the image must hold them).
pub(crate) fn programs(config: &Config) -> &'static [&'static str] {
    config.fs.programs()
}

/// The files besides programs an image must hold for this configuration, as absolute paths:
/// the configuration file itself and mke2fs's own (`optional`: those the host has).
pub(crate) fn files(config: &Config, config_path: &str) -> Vec<String> {
    let mut v = vec![config_path.to_string()];
    if config.fs == Fs::Ext4 {
        v.push("/etc/mke2fs.conf".into());
    }
    v
}

/// Why setup refuses a boot's configuration `now` that differs from the image's `built` (the
/// file alone) in a setting whose modules or programs the image lacks; `None` when the image
/// holds all it needs. `image`: the image's kernel modules (`None`: unknown, no modules.dep:
/// nothing is refused for modules); `has_program`: whether the image holds a program.
pub(crate) fn refusal(
    built: &Config,
    now: &Config,
    image: impl FnOnce() -> Option<Kernel>,
    has_program: impl Fn(&str) -> bool,
) -> Option<String> {
    let mut overrides = Vec::new();
    if now.cipher != built.cipher {
        overrides.push(format!("rd.ephemcrypt.cipher={}", now.cipher));
    }
    if now.fs != built.fs {
        overrides.push(format!("rd.ephemcrypt.fs={}", now.fs.name()));
    }
    if overrides.is_empty() {
        return None;
    }
    // The image's modules are read only now: most boots override nothing.
    let mut lacks: Vec<String> = image().map(|k| lacking(now, &k)).unwrap_or_default();
    lacks.extend(programs(now).iter().filter(|p| !has_program(p)).map(|p| format!("the program {p}")));
    if lacks.is_empty() {
        return None;
    }
    Some(format!(
        "{} asks for what this initramfs was not built with ({}): refused; set it in /etc/ephemcrypt.conf \
         and rebuild the initramfs (ephemcrypt needs --modules names the modules)",
        overrides.join(" "),
        lacks.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    /// Debian 12's cloud-amd64 kernel, in part: aes_generic, cbc, ext4 and nvme built in.
    const BUILTIN: &str = "kernel/fs/ext4/ext4.ko\nkernel/crypto/aes_generic.ko\nkernel/crypto/cbc.ko\n\
        kernel/crypto/sha256_generic.ko\nkernel/drivers/nvme/host/nvme.ko\n";
    const DEP: &str = "\
kernel/arch/x86/crypto/serpent-avx2.ko: kernel/arch/x86/crypto/serpent-avx-x86_64.ko kernel/crypto/serpent_generic.ko
kernel/arch/x86/crypto/serpent-avx-x86_64.ko: kernel/crypto/serpent_generic.ko
kernel/arch/x86/crypto/aesni-intel.ko: kernel/crypto/crypto_simd.ko kernel/crypto/cryptd.ko
kernel/arch/x86/crypto/aegis128-aesni.ko: kernel/crypto/crypto_simd.ko
kernel/arch/x86/crypto/sha256-ssse3.ko:
kernel/crypto/serpent_generic.ko:
kernel/crypto/aes_ti.ko:
kernel/crypto/xts.ko:
kernel/crypto/ecb.ko:
kernel/crypto/essiv.ko:
kernel/crypto/af_alg.ko:
kernel/crypto/algif_skcipher.ko: kernel/crypto/af_alg.ko
kernel/crypto/algif_hash.ko: kernel/crypto/af_alg.ko
kernel/fs/xfs/xfs.ko.zst:
kernel/drivers/md/dm-mod.ko: kernel/drivers/dax/dax.ko
kernel/drivers/md/dm-crypt.ko: kernel/drivers/md/dm-mod.ko
";

    fn config(text: &str) -> Config {
        Config::load(Some((std::path::Path::new("/etc/ephemcrypt.conf"), text)), "").unwrap()
    }

    fn kernel() -> Kernel {
        Kernel::parse(BUILTIN, DEP)
    }

    #[test]
    fn the_default_needs_dm_xts_ecb_and_the_accelerated_aes_built_ins_left_out() {
        let m = modules(&Config::default(), &kernel()).unwrap();
        assert_eq!(m, ["dm_mod", "dm_crypt", "af_alg", "algif_skcipher", "aesni_intel", "xts", "ecb"]);
    }

    #[test]
    fn another_cipher_mode_iv_and_fs_bring_theirs() {
        let m = modules(&config("cipher = serpent-cbc-essiv:sha256\nkey-bits = 256\nfs = xfs\n"), &kernel()).unwrap();
        assert_eq!(
            m,
            [
                "dm_mod",
                "dm_crypt",
                "af_alg",
                "algif_skcipher",
                "serpent_avx2",
                "serpent_avx_x86_64",
                "serpent_generic",
                "essiv",
                "algif_hash",
                "sha256_ssse3",
                "xfs"
            ]
        );
    }

    #[test]
    fn fs_none_needs_no_file_system_module() {
        let m = modules(&config("fs = none\nbind =\n"), &kernel()).unwrap();
        assert!(!m.iter().any(|n| n == "ext4" || n == "xfs"), "{m:?}");
    }

    #[test]
    fn a_cipher_the_kernel_lacks_is_named() {
        let e = modules(&config("cipher = twofish-xts-plain64\n"), &kernel()).unwrap_err();
        assert_eq!(e.to_string(), "the cipher twofish (twofish-xts-plain64): no module and nothing built in");
        let e = modules(&Config::default(), &Kernel::parse("", "kernel/crypto/xts.ko:\n")).unwrap_err().to_string();
        assert!(e.contains("dm-crypt (dm_crypt)") && e.contains("ecb, under xts"), "{e}");
    }

    #[test]
    fn names_come_from_paths_with_any_suffix() {
        assert_eq!(module_name("kernel/arch/arm64/crypto/aes-ce-blk.ko.xz").as_deref(), Some("aes_ce_blk"));
        assert_eq!(module_name("kernel/fs/xfs/xfs.ko"), Some("xfs".into()));
        assert_eq!(module_name("kernel/fs/xfs/xfs.o"), None);
        assert_eq!(module_name(".ko"), None);
    }

    #[test]
    fn an_override_the_image_lacks_is_refused_naming_it() {
        let built = Config::default();
        let mut now = built.clone();
        now.cipher = "serpent-xts-plain64".into();
        // The image holds what the build put in: here, none of serpent's modules.
        let image = Kernel::parse(BUILTIN, "kernel/crypto/xts.ko:\nkernel/crypto/ecb.ko:\nkernel/drivers/md/dm-mod.ko:\nkernel/drivers/md/dm-crypt.ko:\n");
        let why = refusal(&built, &now, || Some(image.clone()), |_| true).unwrap();
        assert!(why.starts_with("rd.ephemcrypt.cipher=serpent-xts-plain64 asks"), "{why}");
        assert!(why.contains("the cipher serpent"), "{why}");
        // The same override where the image has it: taken.
        assert_eq!(refusal(&built, &now, || Some(kernel()), |_| true), None);
        // No override: nothing to refuse, whatever the image holds.
        assert_eq!(
            refusal(
                &built,
                &built,
                || -> Option<Kernel> { panic!("the image is read only for an override") },
                |_| false
            ),
            None
        );
        // An fs override without its mkfs.
        let now = Config { fs: Fs::Xfs, ..built.clone() };
        let why = refusal(&built, &now, || Some(kernel()), |p| p != "mkfs.xfs").unwrap();
        assert!(why.starts_with("rd.ephemcrypt.fs=xfs asks") && why.contains("the program mkfs.xfs"), "{why}");
        // Unknown modules (no modules.dep in the image): only the program is checked.
        assert_eq!(refusal(&built, &now, || None, |_| true), None);
    }

    #[test]
    fn files_are_the_configuration_and_mke2fs_conf_for_ext4() {
        assert_eq!(files(&Config::default(), "/etc/ephemcrypt.conf"), ["/etc/ephemcrypt.conf", "/etc/mke2fs.conf"]);
        assert_eq!(files(&config("fs = xfs\n"), "/etc/ephemcrypt.conf"), ["/etc/ephemcrypt.conf"]);
    }
}
