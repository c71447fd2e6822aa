//! `make install` writes node_exporter's textfile directory into ephemcrypt-metrics.service: the
//! one each packaging target's node_exporter reads (Debian's and Fedora's packages:
//! /var/lib/prometheus/node-exporter; Arch: node_exporter's upstream example), in every place
//! the unit names it, and refuses a directory that is not absolute.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

const DEBIAN_FEDORA: &str = "/var/lib/prometheus/node-exporter";
const ARCH: &str = "/var/lib/node_exporter/textfile_collector";

/// `make install` into a fresh DESTDIR (BIN: any existing file; the binary is not what is tested),
/// with `extra` arguments; the installed metrics unit, or make's stderr.
fn install(name: &str, extra: &[&str]) -> Result<String, String> {
    let dest: PathBuf = std::env::temp_dir().join(format!("ephemcrypt-install-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dest);
    let o = Command::new("make")
        .current_dir(root())
        .args(["-s", "--no-print-directory", "install", "BIN=Cargo.toml"])
        .arg(format!("DESTDIR={}", dest.display()))
        .args(extra)
        .output()
        .expect("run make");
    let unit = std::fs::read_to_string(dest.join("usr/lib/systemd/system/ephemcrypt-metrics.service"));
    let _ = std::fs::remove_dir_all(&dest);
    if !o.status.success() {
        return Err(String::from_utf8_lossy(&o.stderr).into_owned());
    }
    Ok(unit.expect("metrics unit installed"))
}

/// The directory the unit's settings (not its comments) name: one, three times.
fn settings_dir(unit: &str) -> Vec<String> {
    let mut dirs = Vec::new();
    for line in unit.lines().filter(|l| !l.starts_with('#')) {
        for key in ["ConditionPathIsDirectory=", "Environment=TEXTFILE_DIR=", "ReadWritePaths="] {
            if let Some(v) = line.strip_prefix(key) {
                dirs.push(v.to_string());
            }
        }
    }
    dirs
}

#[test]
fn the_metrics_unit_names_the_textfile_directory_of_each_packaging_target() {
    let default = install("default", &[]).unwrap();
    assert_eq!(settings_dir(&default), [DEBIAN_FEDORA; 3]);
    assert!(default.contains(
        "ExecStart=/usr/sbin/ephemcrypt status --format prometheus --output ${TEXTFILE_DIR}/ephemcrypt.prom"
    ));
    let arch = install("arch", &[&format!("TEXTFILE_DIR={ARCH}")]).unwrap();
    assert_eq!(settings_dir(&arch), [ARCH; 3]);
    assert!(!arch.contains(DEBIAN_FEDORA), "every place replaced:\n{arch}");
    let e = install("relative", &["TEXTFILE_DIR=var/lib/x"]).unwrap_err();
    assert!(e.contains("TEXTFILE_DIR=var/lib/x: an absolute directory"), "{e}");
    let e = install("space", &["TEXTFILE_DIR=/var/lib/a|b"]).unwrap_err();
    assert!(e.contains("letters, digits"), "{e}");

    // Each packaging target passes its distribution's directory.
    let read = |p: &str| std::fs::read_to_string(root().join(p)).unwrap();
    assert!(read("packaging/deb.sh").contains(&format!("TEXTFILE_DIR={DEBIAN_FEDORA}")));
    assert!(read("packaging/rpm/ephemcrypt.spec").contains(&format!("TEXTFILE_DIR={DEBIAN_FEDORA}")));
    assert!(read("packaging/arch/PKGBUILD").contains(&format!("TEXTFILE_DIR={ARCH}")));
}
