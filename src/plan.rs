//! PURE: configuration + disks (+ what the kernel supports) → [`Plan`]. No side effects, no key.
//!
//! Layout: the chosen disks, ordered by serial then path, are striped (several disks) or used
//! directly (one disk); one dm-crypt mapping covers that; an optional dm-linear swap slice and a
//! data slice split the encrypted volume; the data slice (or the whole volume) gets the file system.

use std::fmt;
use std::path::PathBuf;

use crate::classify::{classify, Verdict};
use crate::config::{Config, Fs, OnFailure, SectorSize, Swap, Workqueues};
use crate::host::Disk;
use crate::json::Value;
use crate::units::{Bytes, DevNo, Sectors};

/// What the kernel's dm-crypt target can do, from `DM_LIST_VERSIONS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    /// The crypt target version; `None` when not read (the `plan` command on another machine).
    pub crypt: Option<[u32; 3]>,
}

impl Caps {
    /// Without a kernel to ask, `plan` shows what a current kernel would get.
    pub const ASSUMED: Caps = Caps { crypt: None };

    fn at_least(&self, min: [u32; 3]) -> bool {
        self.crypt.is_none_or(|v| v >= min)
    }
    /// `:<size>:logon:<desc>` keys. dm-crypt learnt keyring keys in 1.15 (Linux 4.10); we ask for
    /// 1.18.1, the first version whose keyring handling is free of known bugs.
    pub fn keyring(&self) -> bool {
        self.at_least([1, 18, 1])
    }
    /// `sector_size:<n>`: crypt target 1.17 (Linux 4.12).
    pub fn sector_size(&self) -> bool {
        self.at_least([1, 17, 0])
    }
    /// `no_read_workqueue no_write_workqueue`: crypt target 1.22 (Linux 5.9).
    pub fn no_workqueue(&self) -> bool {
        self.at_least([1, 22, 0])
    }
    /// `allow_discards`: crypt target 1.11 (Linux 3.1).
    pub fn discards(&self) -> bool {
        self.at_least([1, 11, 0])
    }
}

/// One disk and what was decided about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assessed {
    pub disk: Disk,
    pub verdict: Verdict,
}

/// How the key reaches the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyPath {
    /// A logon key in the process keyring, named in the table, invalidated after the load.
    Keyring,
    /// Old kernels: hex in the table, loaded with DM_SECURE_DATA_FLAG.
    HexTable,
}

impl KeyPath {
    pub fn describe(self) -> &'static str {
        match self {
            KeyPath::Keyring => "kernel keyring (logon), never stored",
            KeyPath::HexTable => "hex key in the dm table (kernel lacks keyring keys), never stored",
        }
    }
}

/// A device-mapper slice of the encrypted volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slice {
    pub name: String,
    pub start: Sectors,
    pub len: Sectors,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stripe {
    pub name: String,
    pub chunk: Sectors,
    /// Sectors used on each member disk.
    pub per_disk: Sectors,
    pub len: Sectors,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Crypt {
    pub name: String,
    pub cipher: String,
    pub key_bits: u32,
    pub sector_size: u32,
    /// Optional dm-crypt arguments, e.g. `no_read_workqueue`.
    pub flags: Vec<String>,
    pub key_path: KeyPath,
    pub len: Sectors,
}

/// A member disk of the volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    pub path: PathBuf,
    pub serial: String,
    pub dev: DevNo,
    pub size: Bytes,
}

/// The encrypted volume and what goes on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    pub members: Vec<Member>,
    pub stripe: Option<Stripe>,
    pub crypt: Crypt,
    pub swap: Option<Slice>,
    /// Present when there is swap: the rest of the volume, for the file system.
    pub data: Option<Slice>,
    pub fs: Fs,
    pub mount: PathBuf,
    pub binds: Vec<PathBuf>,
}

impl Volume {
    /// The dm name the file system (or nothing, for fs=none) goes on.
    pub fn data_name(&self) -> &str {
        self.data.as_ref().map_or(&self.crypt.name, |d| &d.name)
    }
    pub fn data_len(&self) -> Sectors {
        self.data.as_ref().map_or(self.crypt.len, |d| d.len)
    }
    /// Every mapping, in creation order.
    pub fn mapping_names(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.stripe.iter().map(|s| s.name.as_str()).collect();
        v.push(&self.crypt.name);
        v.extend(self.swap.iter().chain(&self.data).map(|s| s.name.as_str()));
        v
    }
}

/// What setup will do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// `rd.ephemcrypt=0`.
    Disabled,
    /// No eligible disk and none expected: nothing to do, not a failure.
    Absent,
    /// Fewer eligible disks than `expect`: a failure, the policy applies.
    TooFew {
        found: usize,
        expected: u32,
    },
    /// The disks cannot carry the configured layout: a failure, the policy applies.
    Invalid(String),
    Ready(Box<Volume>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub disks: Vec<Assessed>,
    pub state: State,
    pub on_failure: OnFailure,
    /// The bind targets, also needed for the tmpfs fallback when there is no volume.
    pub binds: Vec<PathBuf>,
    pub caps: Caps,
}

/// The smallest data slice worth a file system (xfs refuses less than 300 MiB).
fn min_fs(fs: Fs) -> Bytes {
    match fs {
        Fs::Xfs => Bytes(300 << 20),
        Fs::Ext4 => Bytes(16 << 20),
        Fs::None => Bytes(0),
    }
}

/// Swap and file-system slices start on 4 KiB boundaries (a page, and any crypt sector).
const ALIGN: Sectors = Sectors(8);

/// Decide everything. Pure: same inputs, same plan.
pub fn plan(config: &Config, disks: &[Disk], caps: Caps) -> Plan {
    let mut assessed: Vec<Assessed> =
        disks.iter().map(|d| Assessed { disk: d.clone(), verdict: classify(d, config) }).collect();
    // Used disks first, in a stable order: serial, then path; never the kernel's enumeration order.
    assessed.sort_by(|a, b| {
        let key = |x: &Assessed| (!x.verdict.is_use(), x.disk.serial.clone(), x.disk.path.clone());
        key(a).cmp(&key(b))
    });
    let state = if !config.enabled {
        State::Disabled
    } else {
        let chosen: Vec<&Disk> = assessed.iter().filter(|a| a.verdict.is_use()).map(|a| &a.disk).collect();
        if chosen.len() < config.expect as usize {
            State::TooFew { found: chosen.len(), expected: config.expect }
        } else if chosen.is_empty() {
            State::Absent
        } else {
            volume(config, &chosen, caps).map_or_else(State::Invalid, |v| State::Ready(Box::new(v)))
        }
    };
    Plan { disks: assessed, state, on_failure: config.on_failure, binds: config.bind.clone(), caps }
}

fn volume(config: &Config, chosen: &[&Disk], caps: Caps) -> Result<Volume, String> {
    let largest_block = chosen.iter().map(|d| d.logical_block_size).max().unwrap_or(512);
    let sector_size = match config.sector_size {
        SectorSize::Auto if caps.sector_size() && largest_block <= 4096 => 4096,
        SectorSize::Auto => largest_block,
        SectorSize::Fixed(s) => s,
    };
    if sector_size != 512 && !caps.sector_size() {
        return Err(format!(
            "sector-size {sector_size} needs dm-crypt 1.17 (Linux 4.12); this kernel's crypt target is older"
        ));
    }
    if let Some(d) = chosen.iter().find(|d| d.logical_block_size > sector_size) {
        return Err(format!(
            "{} has {}-byte logical blocks, larger than the encryption sector size {sector_size}",
            d.path.display(),
            d.logical_block_size
        ));
    }
    let name = &config.name;
    let smallest = chosen.iter().map(|d| d.size.sectors()).min().unwrap_or_default();
    let chunk = config.chunk.sectors();
    let (stripe, len) = if chosen.len() == 1 {
        (None, smallest.round_down(ALIGN))
    } else {
        let per_disk = smallest.round_down(chunk);
        let len = Sectors(per_disk.0 * chosen.len() as u64);
        if per_disk.0 == 0 {
            return Err(format!(
                "the smallest disk ({}) is smaller than one chunk ({})",
                smallest.bytes(),
                config.chunk
            ));
        }
        (Some(Stripe { name: format!("{name}-stripe"), chunk, per_disk, len }), len)
    };
    let mut flags = Vec::new();
    if config.discard && caps.discards() {
        flags.push("allow_discards".to_string());
    }
    if config.workqueues == Workqueues::Bypass && caps.no_workqueue() {
        flags.extend(["no_read_workqueue".to_string(), "no_write_workqueue".to_string()]);
    }
    if sector_size != 512 {
        flags.push(format!("sector_size:{sector_size}"));
    }
    let crypt = Crypt {
        name: name.clone(),
        cipher: config.cipher.clone(),
        key_bits: config.key_bits,
        sector_size,
        flags,
        key_path: if caps.keyring() { KeyPath::Keyring } else { KeyPath::HexTable },
        len,
    };
    let swap_len = match config.swap {
        Swap::None => Sectors(0),
        Swap::Size(b) => b.sectors().round_down(ALIGN),
        Swap::Percent(p) => Sectors(len.0 / 100 * u64::from(p)).round_down(ALIGN),
    };
    let room = Sectors(len.0.saturating_sub(swap_len.0));
    if swap_len.0 > 0 && room.bytes() < min_fs(config.fs).max(Bytes(1 << 20)) {
        return Err(format!(
            "swap ({}) leaves {} of the {} volume, too little for the {} file system",
            swap_len.bytes(),
            room.bytes(),
            len.bytes(),
            config.fs.name()
        ));
    }
    if room.bytes() < min_fs(config.fs) {
        return Err(format!(
            "the volume ({}) is too small for {} (at least {})",
            room.bytes(),
            config.fs.name(),
            min_fs(config.fs)
        ));
    }
    let (swap, data) = if swap_len.0 == 0 {
        (None, None)
    } else {
        (
            Some(Slice { name: format!("{name}-swap"), start: Sectors(0), len: swap_len }),
            Some(Slice { name: format!("{name}-data"), start: swap_len, len: room }),
        )
    };
    let members = chosen
        .iter()
        .map(|d| Member {
            name: d.name.clone(),
            path: d.path.clone(),
            serial: d.serial.clone(),
            dev: d.dev,
            size: d.size,
        })
        .collect();
    Ok(Volume {
        members,
        stripe,
        crypt,
        swap,
        data,
        fs: config.fs,
        mount: config.mount.clone(),
        binds: config.bind.clone(),
    })
}

impl Plan {
    /// The chosen disks.
    pub fn used(&self) -> impl Iterator<Item = &Assessed> {
        self.disks.iter().filter(|a| a.verdict.is_use())
    }

    pub fn volume(&self) -> Option<&Volume> {
        match &self.state {
            State::Ready(v) => Some(v),
            _ => None,
        }
    }

    /// One line per step setup will take.
    pub fn steps(&self) -> Vec<String> {
        let Some(v) = self.volume() else { return Vec::new() };
        let mut s = Vec::new();
        let members: Vec<String> = v.members.iter().map(|m| format!("{} ({})", m.path.display(), m.dev)).collect();
        s.push(format!(
            "make a {}-bit key from the kernel RNG; hand it over via {}",
            v.crypt.key_bits,
            v.crypt.key_path.describe()
        ));
        if let Some(st) = &v.stripe {
            s.push(format!(
                "create /dev/mapper/{}: striped over {} disks, chunk {}, {} of each: {}",
                st.name,
                v.members.len(),
                st.chunk.bytes(),
                st.per_disk.bytes(),
                members.join(", ")
            ));
        }
        let below = v.stripe.as_ref().map_or_else(|| members.join(""), |st| format!("/dev/mapper/{}", st.name));
        s.push(format!(
            "create /dev/mapper/{}: crypt {} on {}, {}, sector {}{}{}",
            v.crypt.name,
            v.crypt.cipher,
            below,
            v.crypt.len.bytes(),
            v.crypt.sector_size,
            if v.crypt.flags.is_empty() { "" } else { ", " },
            v.crypt.flags.join(" ")
        ));
        if let (Some(sw), Some(d)) = (&v.swap, &v.data) {
            s.push(format!(
                "create /dev/mapper/{}: linear, first {} of the volume; mkswap; swapon",
                sw.name,
                sw.len.bytes()
            ));
            s.push(format!("create /dev/mapper/{}: linear, the remaining {}", d.name, d.len.bytes()));
        }
        if v.fs != Fs::None {
            s.push(format!(
                "make {} on /dev/mapper/{}; mount at <newroot>{}",
                v.fs.name(),
                v.data_name(),
                v.mount.display()
            ));
            for b in &v.binds {
                s.push(format!(
                    "bind <newroot>{}/{} onto <newroot>{} (skeleton copied)",
                    v.mount.display(),
                    bind_dir(b),
                    b.display()
                ));
            }
        }
        s
    }

    /// Every disk with its verdict, as `plan --json` and the status file show them.
    pub fn disks_json(&self) -> Value {
        let disks = self
            .disks
            .iter()
            .map(|a| {
                Value::obj([
                    ("name", Value::from(a.disk.name.as_str())),
                    ("path", a.disk.path.display().to_string().into()),
                    ("dev", a.disk.dev.to_string().into()),
                    ("model", a.disk.model.as_str().into()),
                    ("serial", a.disk.serial.as_str().into()),
                    ("size_bytes", a.disk.size.0.into()),
                    ("use", a.verdict.is_use().into()),
                    ("reason", a.verdict.reason().into()),
                ])
            })
            .collect();
        Value::Arr(disks)
    }

    pub fn to_json(&self) -> Value {
        let (state, reason) = self.state_text();
        Value::obj([
            ("state", Value::from(state)),
            ("reason", reason.into()),
            ("on_failure", self.on_failure.name().into()),
            ("kernel_features", if self.caps.crypt.is_some() { "read" } else { "assumed" }.into()),
            ("disks", self.disks_json()),
            ("volume", self.volume().map_or(Value::Null, volume_json)),
            ("steps", self.steps().into()),
        ])
    }

    /// A short state word and the reason behind it.
    pub fn state_text(&self) -> (&'static str, String) {
        match &self.state {
            State::Disabled => ("disabled", "rd.ephemcrypt=0 on the kernel command line".into()),
            State::Absent => ("absent", "no eligible disk; nothing to do".into()),
            State::TooFew { found, expected } => ("too-few", format!("{found} eligible disk(s), {expected} expected")),
            State::Invalid(why) => ("invalid", why.clone()),
            State::Ready(v) => ("ready", format!("{} disk(s) to encrypt", v.members.len())),
        }
    }
}

/// The directory on the volume that backs a bind target: `/var/log` → `var/log`.
pub fn bind_dir(target: &std::path::Path) -> String {
    target.to_string_lossy().trim_start_matches('/').to_string()
}

fn slice_json(s: &Slice) -> Value {
    Value::obj([
        ("name", Value::from(s.name.as_str())),
        ("start_sectors", s.start.0.into()),
        ("size_bytes", s.len.bytes().0.into()),
    ])
}

fn volume_json(v: &Volume) -> Value {
    Value::obj([
        ("members", Value::from(v.members.iter().map(|m| m.name.clone()).collect::<Vec<_>>())),
        (
            "stripe",
            v.stripe.as_ref().map_or(Value::Null, |s| {
                Value::obj([
                    ("name", Value::from(s.name.as_str())),
                    ("chunk_bytes", s.chunk.bytes().0.into()),
                    ("per_disk_bytes", s.per_disk.bytes().0.into()),
                    ("size_bytes", s.len.bytes().0.into()),
                ])
            }),
        ),
        (
            "crypt",
            Value::obj([
                ("name", Value::from(v.crypt.name.as_str())),
                ("cipher", v.crypt.cipher.as_str().into()),
                ("key_bits", v.crypt.key_bits.into()),
                ("sector_size", v.crypt.sector_size.into()),
                ("flags", v.crypt.flags.clone().into()),
                ("key", v.crypt.key_path.describe().into()),
                ("size_bytes", v.crypt.len.bytes().0.into()),
            ]),
        ),
        ("swap", v.swap.as_ref().map_or(Value::Null, slice_json)),
        ("data", v.data.as_ref().map_or(Value::Null, slice_json)),
        ("fs", v.fs.name().into()),
        ("mount", v.mount.display().to_string().into()),
        ("binds", v.binds.iter().map(|b| b.display().to_string()).collect::<Vec<_>>().into()),
    ])
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "disks:")?;
        if self.disks.is_empty() {
            writeln!(f, "  (none found)")?;
        }
        for a in &self.disks {
            let d = &a.disk;
            let id = match (d.model.is_empty(), d.serial.is_empty()) {
                (false, false) => format!("{}, serial {}", d.model, d.serial),
                (false, true) => d.model.clone(),
                (true, false) => format!("serial {}", d.serial),
                (true, true) => "no model or serial".into(),
            };
            let verdict = if a.verdict.is_use() { "use".to_string() } else { format!("skip: {}", a.verdict.reason()) };
            writeln!(f, "  {:<12} {:>8}  {}  -> {}", d.name, d.size.to_string(), id, verdict)?;
        }
        let (state, reason) = self.state_text();
        writeln!(f, "result: {state} ({reason})")?;
        if self.volume().is_some() {
            writeln!(f, "steps:")?;
            for (i, s) in self.steps().iter().enumerate() {
                writeln!(f, "  {}. {s}", i + 1)?;
            }
        } else if !matches!(self.state, State::Disabled | State::Absent) {
            writeln!(f, "on failure: {}", self.on_failure.name())?;
        }
        if self.caps.crypt.is_none() && self.volume().is_some() {
            writeln!(f, "(kernel features assumed: setup reads them from the running kernel)")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::disk;
    use std::path::Path;

    fn cfg(text: &str) -> Config {
        Config::load(Some((Path::new("t.conf"), text)), "").unwrap()
    }

    fn ready(p: &Plan) -> &Volume {
        p.volume().unwrap_or_else(|| panic!("not ready: {:?}", p.state))
    }

    #[test]
    fn order_is_by_serial_then_path_not_enumeration() {
        let disks = [disk("nvme1n1", "B"), disk("nvme3n1", "A"), disk("nvme2n1", "A")];
        let p = plan(&Config::default(), &disks, Caps::ASSUMED);
        let names: Vec<&str> = ready(&p).members.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["nvme2n1", "nvme3n1", "nvme1n1"]);
        // The same set in another order plans the same.
        let mut rev = disks.to_vec();
        rev.reverse();
        assert_eq!(plan(&Config::default(), &rev, Caps::ASSUMED), p);
    }

    #[test]
    fn one_disk_has_no_stripe_and_rounds_to_4k() {
        let mut d = disk("nvme1n1", "A");
        d.size = Bytes((10 << 30) + 512 * 7);
        let p = plan(&Config::default(), &[d], Caps::ASSUMED);
        let v = ready(&p);
        assert!(v.stripe.is_none());
        assert_eq!(v.crypt.len.bytes(), Bytes(10 << 30));
        assert_eq!(v.mapping_names(), ["ephemcrypt"]);
    }

    #[test]
    fn stripe_rounds_smallest_disk_down_to_whole_chunks() {
        let mut a = disk("nvme1n1", "A");
        let mut b = disk("nvme2n1", "B");
        a.size = Bytes((10 << 30) + (100 << 10)); // 100K over: less than a chunk
        b.size = Bytes(20 << 30);
        let p = plan(&Config::default(), &[a, b], Caps::ASSUMED);
        let v = ready(&p);
        let st = v.stripe.as_ref().unwrap();
        assert_eq!(st.chunk, Sectors(512));
        assert_eq!(st.per_disk.bytes(), Bytes(10 << 30));
        assert_eq!(st.len.bytes(), Bytes(20 << 30));
        assert_eq!(v.crypt.len, st.len);
        assert_eq!(st.len.0 % (st.chunk.0 * 2), 0);
        assert_eq!(v.mapping_names(), ["ephemcrypt-stripe", "ephemcrypt"]);
    }

    #[test]
    fn crypt_flags_follow_config_and_kernel() {
        let d = [disk("nvme1n1", "A")];
        let v = plan(&cfg("discard = yes"), &d, Caps::ASSUMED);
        assert_eq!(
            ready(&v).crypt.flags,
            ["allow_discards", "no_read_workqueue", "no_write_workqueue", "sector_size:4096"]
        );
        let v = plan(&cfg("workqueues = kernel\nsector-size = 512"), &d, Caps::ASSUMED);
        assert!(ready(&v).crypt.flags.is_empty());
        // A 5.4 kernel (crypt 1.19): no workqueue bypass, keyring and 4K sectors fine.
        let v = plan(&Config::default(), &d, Caps { crypt: Some([1, 19, 0]) });
        assert_eq!(ready(&v).crypt.flags, ["sector_size:4096"]);
        assert_eq!(ready(&v).crypt.key_path, KeyPath::Keyring);
        // A 4.9 kernel (crypt 1.14): 512-byte sectors, hex key.
        let v = plan(&Config::default(), &d, Caps { crypt: Some([1, 14, 1]) });
        assert_eq!(ready(&v).crypt.sector_size, 512);
        assert_eq!(ready(&v).crypt.key_path, KeyPath::HexTable);
        let v = plan(&cfg("sector-size = 4096"), &d, Caps { crypt: Some([1, 14, 1]) });
        assert!(matches!(v.state, State::Invalid(ref w) if w.contains("needs dm-crypt 1.17")), "{:?}", v.state);
    }

    #[test]
    fn sector_size_respects_logical_blocks() {
        let mut d = disk("nvme1n1", "A");
        d.logical_block_size = 4096;
        let v = plan(&cfg("sector-size = 512"), &[d.clone()], Caps::ASSUMED);
        assert!(matches!(v.state, State::Invalid(ref w) if w.contains("/dev/nvme1n1 has 4096-byte logical blocks")));
        assert_eq!(ready(&plan(&Config::default(), &[d], Caps::ASSUMED)).crypt.sector_size, 4096);
    }

    #[test]
    fn swap_slices() {
        let d = [disk("nvme1n1", "A")]; // 100G
        let v = plan(&cfg("swap = 4G"), &d, Caps::ASSUMED);
        let v = ready(&v);
        let (sw, data) = (v.swap.as_ref().unwrap(), v.data.as_ref().unwrap());
        assert_eq!((sw.start, sw.len.bytes()), (Sectors(0), Bytes(4 << 30)));
        assert_eq!((data.start, data.len.bytes()), (sw.len, Bytes(96 << 30)));
        assert_eq!(v.data_name(), "ephemcrypt-data");
        assert_eq!(v.mapping_names(), ["ephemcrypt", "ephemcrypt-swap", "ephemcrypt-data"]);
        let v = plan(&cfg("swap = 10%"), &d, Caps::ASSUMED);
        let sw = ready(&v).swap.clone().unwrap();
        assert_eq!(sw.len.0 % 8, 0);
        assert!(sw.len.bytes().0 <= 10 << 30 && sw.len.bytes().0 > (10 << 30) - (1 << 20));
        let v = plan(&cfg("swap = 100G"), &d, Caps::ASSUMED);
        assert!(matches!(v.state, State::Invalid(ref w) if w.contains("swap (100G) leaves 0B")), "{:?}", v.state);
    }

    #[test]
    fn absent_too_few_and_disabled() {
        let p = plan(&Config::default(), &[], Caps::ASSUMED);
        assert_eq!(p.state, State::Absent);
        let p = plan(&cfg("expect = 2"), &[disk("nvme1n1", "A")], Caps::ASSUMED);
        assert_eq!(p.state, State::TooFew { found: 1, expected: 2 });
        let c = Config::load(None, "rd.ephemcrypt=0").unwrap();
        assert_eq!(plan(&c, &[disk("nvme1n1", "A")], Caps::ASSUMED).state, State::Disabled);
    }

    #[test]
    fn json_has_the_documented_fields() {
        let mut refused = disk("nvme0n1", "vol");
        refused.model = "Amazon Elastic Block Store".into();
        let p = plan(&Config::default(), &[refused, disk("nvme1n1", "A")], Caps::ASSUMED);
        let j = crate::json::parse(&p.to_json().pretty()).unwrap();
        let disks = j.get("disks").unwrap().as_array();
        assert_eq!(disks.len(), 2);
        assert_eq!(disks[0].get("name").unwrap().as_str(), Some("nvme1n1"));
        assert_eq!(disks[0].get("use"), Some(&Value::Bool(true)));
        assert_eq!(disks[0].get("reason").unwrap().as_str(), Some(""));
        assert_eq!(disks[0].get("size_bytes"), Some(&Value::Num((100u64 << 30) as f64)));
        assert_eq!(disks[1].get("use"), Some(&Value::Bool(false)));
        assert!(disks[1].get("reason").unwrap().as_str().unwrap().contains("EBS"));
        for k in ["path", "model", "serial"] {
            assert!(disks[0].get(k).is_some(), "{k}");
        }
        assert_eq!(j.get("state").unwrap().as_str(), Some("ready"));
        assert!(j.get("volume").unwrap().get("crypt").is_some());
        assert!(!j.get("steps").unwrap().as_array().is_empty());
    }
}
