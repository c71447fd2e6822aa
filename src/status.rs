//! What setup did, as one type: written to `/run/ephemcrypt/status.json` (/run survives
//! switch_root), parsed back by `ephemcrypt status`, which renders it with a live check that the
//! mappings still exist. Nothing builds or patches status keys by hand elsewhere.

use std::fmt;
use std::path::PathBuf;

use crate::escape::{line, Esc, EscPath};
use crate::json::Value;
use crate::units::DevNo;

pub(crate) mod error;
pub(crate) use self::error::StatusError;

/// The overall result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SetupResult {
    /// The volume is in place.
    Ok,
    /// Something failed; everything made was undone and the failure policy (tmpfs or continue)
    /// let the boot go on.
    Degraded,
    /// Something failed and the policy is halt, or the configuration could not be read.
    Failed,
    /// No eligible disk and none expected: nothing to do.
    Absent,
    /// `rd.ephemcrypt=0`.
    Disabled,
    /// `hold`: the disks of earlier volumes were left alone, for recovery.
    Held,
}

const RESULTS: [SetupResult; 6] = [
    SetupResult::Ok,
    SetupResult::Degraded,
    SetupResult::Failed,
    SetupResult::Absent,
    SetupResult::Disabled,
    SetupResult::Held,
];

impl SetupResult {
    pub(crate) fn name(self) -> &'static str {
        match self {
            SetupResult::Ok => "ok",
            SetupResult::Degraded => "degraded",
            SetupResult::Failed => "failed",
            SetupResult::Absent => "absent",
            SetupResult::Disabled => "disabled",
            SetupResult::Held => "held",
        }
    }
}

impl fmt::Display for SetupResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One disk and the verdict on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DiskStatus {
    pub(crate) name: String,
    pub(crate) path: String,
    pub(crate) dev: String,
    pub(crate) model: String,
    pub(crate) serial: String,
    pub(crate) size_bytes: u64,
    pub(crate) used: bool,
    pub(crate) reason: String,
}

/// The encryption and file system of the volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VolumeStatus {
    pub(crate) cipher: String,
    pub(crate) key_bits: u32,
    pub(crate) sector_size: u32,
    pub(crate) flags: Vec<String>,
    pub(crate) fs: String,
    /// The encrypted volume's size (0 in a status from a version that did not record it).
    pub(crate) bytes: u64,
}

/// A mapping setup made, and (in `ephemcrypt status` only) whether it is still there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MappingStatus {
    pub(crate) name: String,
    pub(crate) dev: DevNo,
    /// `Some(false)`: gone; `None`: not checked (setup writes null: `ephemcrypt status` checks).
    pub(crate) live: Option<bool>,
}

/// Setup's outcome measured into a TPM PCR (tpm/event.rs), or why it was not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Measurement {
    pub(crate) pcr: u32,
    /// The measured text, exactly (its record in the measurement log carries the same).
    pub(crate) event: String,
    /// The banks extended, each with the PCR's value read back right after (empty where it could
    /// not be read); none when not measured.
    pub(crate) banks: Vec<(String, String)>,
    /// Why the outcome was not measured (no TPM, the TPM refused, the log could not be opened).
    pub(crate) not_measured: Option<String>,
}

/// The `kind` of a timing whose status did not name one of [`crate::step::STEP_KINDS`].
pub(crate) const OTHER_KIND: &str = "other";

/// How long one step took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Timing {
    /// What kind of step: one of [`crate::step::STEP_KINDS`], or `other` (a status that did not
    /// say, from an older version, or said something else).
    pub(crate) kind: String,
    pub(crate) step: String,
    pub(crate) ms: u64,
}

/// The status document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Status {
    pub(crate) result: SetupResult,
    pub(crate) reason: String,
    /// The ephemcrypt version that wrote it.
    pub(crate) version: String,
    /// The step that failed, when one did.
    pub(crate) failed_step: Option<String>,
    pub(crate) disks: Vec<DiskStatus>,
    pub(crate) volume: Option<VolumeStatus>,
    /// The mappings made (or found), in creation order.
    pub(crate) mappings: Vec<MappingStatus>,
    /// How the key was held, e.g. "kernel keyring (logon), never stored", or with escrow
    /// "kernel keyring (logon); escrowed to 2 recipients: …" ([`crate::step::KeyPath::describe`]).
    pub(crate) key: Option<String>,
    pub(crate) swap: Option<String>,
    pub(crate) mount: Option<PathBuf>,
    pub(crate) binds: Vec<PathBuf>,
    /// Bind targets covered by tmpfs after a failure.
    pub(crate) tmpfs: Vec<PathBuf>,
    /// Units written for the real root: binds made after a mount of its fstab that would hide
    /// them.
    pub(crate) units: Vec<String>,
    /// Every bind target the volume should show (bound in the initramfs or by a unit), and the
    /// mapping its file system is on: what `ephemcrypt status` checks against mountinfo.
    pub(crate) targets: Vec<PathBuf>,
    pub(crate) data_mapping: Option<String>,
    /// The bind targets that do not show the volume now, and why (`ephemcrypt status` looks; not
    /// stored; see visible.rs).
    pub(crate) hidden: Vec<String>,
    /// Setup found the volume already in place (a second run in the same boot).
    pub(crate) already_active: bool,
    /// The escrow's recipients (age recipients, ssh key fingerprints); empty: no escrow.
    pub(crate) escrow: Vec<String>,
    /// The reboot guard unit, or why there is none although it was asked for.
    pub(crate) guard: Option<String>,
    /// Whether the guard's inhibitor lock is held now (`ephemcrypt status` looks; not stored).
    pub(crate) guard_active: Option<bool>,
    /// Each step and how long it took.
    pub(crate) steps: Vec<Timing>,
    /// The measurement of the outcome (`measure` on), or why there is none.
    pub(crate) measurement: Option<Measurement>,
}

impl Status {
    /// A status with this result and nothing else yet.
    pub(crate) fn new(result: SetupResult, reason: impl Into<String>) -> Status {
        Status {
            result,
            reason: reason.into(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            failed_step: None,
            disks: Vec::new(),
            volume: None,
            mappings: Vec::new(),
            key: None,
            swap: None,
            mount: None,
            binds: Vec::new(),
            tmpfs: Vec::new(),
            units: Vec::new(),
            targets: Vec::new(),
            data_mapping: None,
            hidden: Vec::new(),
            already_active: false,
            escrow: Vec::new(),
            guard: None,
            guard_active: None,
            steps: Vec::new(),
            measurement: None,
        }
    }

    /// A mapping that no longer exists.
    pub(crate) fn mapping_gone(&self) -> bool {
        self.mappings.iter().any(|m| m.live == Some(false))
    }

    pub(crate) fn to_json(&self) -> Value {
        let paths = |v: &[PathBuf]| Value::from(v.iter().map(|p| p.display().to_string()).collect::<Vec<_>>());
        let mut pairs = vec![
            ("result", Value::from(self.result.name())),
            ("reason", self.reason.as_str().into()),
            ("version", self.version.as_str().into()),
            ("failed_step", self.failed_step.clone().into()),
            ("disks", Value::Arr(self.disks.iter().map(disk_json).collect())),
        ];
        if let Some(v) = &self.volume {
            pairs.extend([
                ("cipher", Value::from(v.cipher.as_str())),
                ("key_bits", v.key_bits.into()),
                ("sector_size", v.sector_size.into()),
                ("flags", v.flags.clone().into()),
                ("fs", v.fs.as_str().into()),
                ("volume_bytes", v.bytes.into()),
            ]);
        }
        let mappings = self
            .mappings
            .iter()
            .map(|m| {
                Value::obj([
                    ("name", Value::from(m.name.as_str())),
                    ("dev", m.dev.to_string().into()),
                    ("live", m.live.into()),
                ])
            })
            .collect();
        let steps = self
            .steps
            .iter()
            .map(|t| {
                Value::obj([
                    ("kind", Value::from(t.kind.as_str())),
                    ("step", Value::from(t.step.as_str())),
                    ("ms", t.ms.into()),
                ])
            })
            .collect();
        pairs.extend([
            ("mappings", Value::Arr(mappings)),
            ("key", self.key.clone().into()),
            ("swap", self.swap.clone().into()),
            ("mount", self.mount.as_ref().map(|p| p.display().to_string()).into()),
            ("binds", paths(&self.binds)),
            ("tmpfs", paths(&self.tmpfs)),
            ("units", self.units.clone().into()),
            ("bind_targets", paths(&self.targets)),
            ("data_mapping", self.data_mapping.clone().into()),
            ("already_active", self.already_active.into()),
            ("escrow", self.escrow.clone().into()),
            ("guard", self.guard.clone().into()),
            ("steps", Value::Arr(steps)),
        ]);
        if let Some(active) = self.guard_active {
            pairs.push(("guard_active", active.into()));
        }
        if let Some(m) = &self.measurement {
            pairs.push((
                "measurement",
                Value::obj([
                    ("pcr", Value::from(m.pcr)),
                    ("event", m.event.as_str().into()),
                    (
                        "banks",
                        Value::Arr(
                            m.banks
                                .iter()
                                .map(|(b, v)| {
                                    Value::obj([("bank", Value::from(b.as_str())), ("pcr_value", v.as_str().into())])
                                })
                                .collect(),
                        ),
                    ),
                    ("not_measured", m.not_measured.clone().into()),
                ]),
            ));
        }
        Value::obj(pairs)
    }

    /// Parse a status document, checking every field; a missing list is empty, a missing optional
    /// field absent.
    pub(crate) fn from_json(v: &Value) -> Result<Status, StatusError> {
        let doc = Fields(v);
        if !matches!(v, Value::Obj(_)) {
            return Err(StatusError::NotAnObject);
        }
        let result = doc.str("result")?;
        let result = RESULTS
            .into_iter()
            .find(|r| r.name() == result)
            .ok_or(StatusError::Field { key: "result", expected: "ok, degraded, failed, absent or disabled" })?;
        let disks = doc
            .arr("disks")?
            .iter()
            .map(|d| {
                let d = Fields(d);
                Ok(DiskStatus {
                    name: d.str("name")?,
                    path: d.str("path")?,
                    dev: d.str("dev")?,
                    model: d.str("model")?,
                    serial: d.str("serial")?,
                    size_bytes: d.num("size_bytes")?,
                    used: d.bool("use")?,
                    reason: d.str("reason")?,
                })
            })
            .collect::<Result<_, StatusError>>()?;
        let volume = match v.get("cipher") {
            None | Some(Value::Null) => None,
            Some(_) => Some(VolumeStatus {
                cipher: doc.str("cipher")?,
                key_bits: doc.num("key_bits")?,
                sector_size: doc.num("sector_size")?,
                flags: doc.strs("flags")?,
                fs: doc.str("fs")?,
                bytes: if v.get("volume_bytes").is_some() { doc.num("volume_bytes")? } else { 0 },
            }),
        };
        let mappings = doc
            .arr("mappings")?
            .iter()
            .map(|m| {
                let f = Fields(m);
                let dev =
                    DevNo::parse(&f.str("dev")?).ok_or(StatusError::Field { key: "dev", expected: "major:minor" })?;
                let live = match m.get("live") {
                    None | Some(Value::Null) => None,
                    Some(_) => Some(f.bool("live")?),
                };
                Ok(MappingStatus { name: f.str("name")?, dev, live })
            })
            .collect::<Result<_, StatusError>>()?;
        let steps = doc
            .arr("steps")?
            .iter()
            .map(|t| {
                let kind = Fields(t).opt_str("kind")?.filter(|k| crate::step::STEP_KINDS.contains(&k.as_str()));
                Ok(Timing {
                    kind: kind.unwrap_or_else(|| OTHER_KIND.to_string()),
                    step: Fields(t).str("step")?,
                    ms: Fields(t).num("ms")?,
                })
            })
            .collect::<Result<_, StatusError>>()?;
        Ok(Status {
            result,
            reason: doc.str("reason")?,
            version: doc.opt_str("version")?.unwrap_or_default(),
            failed_step: doc.opt_str("failed_step")?,
            disks,
            volume,
            mappings,
            key: doc.opt_str("key")?,
            swap: doc.opt_str("swap")?,
            mount: doc.opt_str("mount")?.map(PathBuf::from),
            binds: doc.strs("binds")?.into_iter().map(PathBuf::from).collect(),
            tmpfs: doc.strs("tmpfs")?.into_iter().map(PathBuf::from).collect(),
            units: doc.strs("units")?,
            targets: doc.strs("bind_targets")?.into_iter().map(PathBuf::from).collect(),
            data_mapping: doc.opt_str("data_mapping")?,
            hidden: Vec::new(),
            already_active: doc.flag("already_active")?,
            escrow: doc.strs("escrow")?,
            guard: doc.opt_str("guard")?,
            guard_active: None,
            steps,
            measurement: match v.get("measurement") {
                None | Some(Value::Null) => None,
                Some(m) => {
                    let f = Fields(m);
                    Some(Measurement {
                        pcr: f.num("pcr")?,
                        event: f.str("event")?,
                        banks: f
                            .arr("banks")?
                            .iter()
                            .map(|b| Ok((Fields(b).str("bank")?, Fields(b).str("pcr_value")?)))
                            .collect::<Result<_, StatusError>>()?,
                        not_measured: f.opt_str("not_measured")?,
                    })
                }
            },
        })
    }

    /// The status as text, for people.
    pub(crate) fn render(&self) -> String {
        use fmt::Write;
        let mut out = format!("result: {}", self.result);
        if !self.reason.is_empty() {
            let _ = write!(out, " ({})", line(&self.reason));
        }
        out.push('\n');
        if let Some(step) = &self.failed_step {
            let _ = writeln!(out, "failed step: {}", line(step));
        }
        for d in &self.disks {
            // Reasons escape what they quote when they are made; `line` catches what is left. Model,
            // serial and path are sysfs' own: escaped here.
            let verdict = format!("{}: {}", if d.used { "used" } else { "refused" }, line(&d.reason));
            let id: Vec<String> = [d.model.as_str(), d.serial.as_str()]
                .into_iter()
                .filter(|s| !s.is_empty())
                .map(|s| Esc(s).to_string())
                .collect();
            let id = if id.is_empty() { "no model or serial".to_string() } else { id.join(" ") };
            let _ = writeln!(out, "disk {} ({id}): {verdict}", Esc(&d.path));
        }
        for m in &self.mappings {
            let state = match m.live {
                Some(true) => "live",
                Some(false) => "GONE",
                None => "unknown (no device-mapper access)",
            };
            let _ = writeln!(out, "mapping /dev/mapper/{} ({}): {state}", Esc(&m.name), m.dev);
        }
        if let Some(v) = &self.volume {
            let _ = writeln!(
                out,
                "cipher: {}, {}-bit key, sector {}, flags: {}",
                Esc(&v.cipher),
                v.key_bits,
                v.sector_size,
                Esc(&v.flags.join(" "))
            );
        }
        for (label, value) in [("key", &self.key), ("swap", &self.swap)] {
            if let Some(v) = value {
                let _ = writeln!(out, "{label}: {}", line(v));
            }
        }
        if let Some(m) = &self.mount {
            let _ = writeln!(out, "mount: {}", EscPath(m));
        }
        for (label, list) in [("bind", &self.binds), ("tmpfs", &self.tmpfs)] {
            for p in list {
                let _ = writeln!(out, "{label}: {}", EscPath(p));
            }
        }
        for u in &self.units {
            let _ = writeln!(out, "unit: {} (binds after a mount of /etc/fstab that would hide it)", line(u));
        }
        for h in &self.hidden {
            let _ = writeln!(out, "hidden: {h}");
        }
        if !self.escrow.is_empty() {
            let _ = writeln!(
                out,
                "escrow: on, to {} (after each member's header, and /run/ephemcrypt/escrow.age)",
                line(&self.escrow.join(", "))
            );
        }
        if let Some(g) = &self.guard {
            let state = match self.guard_active {
                Some(true) => ": active, reboots are blocked",
                Some(false) => ": not active",
                None => "",
            };
            let _ = writeln!(out, "guard: {}{state}", line(g));
        }
        match &self.measurement {
            Some(m @ Measurement { not_measured: None, .. }) => {
                let banks: Vec<&str> = m.banks.iter().map(|(b, _)| b.as_str()).collect();
                let _ = writeln!(out, "measured: PCR {} ({}): {}", m.pcr, line(&banks.join(", ")), Esc(&m.event));
                for (bank, value) in &m.banks {
                    let _ = writeln!(out, "  PCR {} {} after: {}", m.pcr, line(bank), line(value));
                }
            }
            Some(m) => {
                let why = line(m.not_measured.as_deref().unwrap_or_default());
                let _ = writeln!(out, "not measured (PCR {}): {why}", m.pcr);
            }
            None => {}
        }
        if !self.steps.is_empty() {
            out += "steps:\n";
            for t in &self.steps {
                let _ = writeln!(out, "  {:>7} ms  {}", t.ms, line(&t.step));
            }
        }
        out
    }
}

/// The node_exporter textfile format (Prometheus exposition 0.0.4) of a status, or of no status
/// at all (`None`: setup did not run in this boot), for fleets that alert on a node that booted
/// without its volume.
pub(crate) fn prometheus(status: Option<&Status>) -> String {
    use fmt::Write;
    let mut out = String::new();
    let mut metric = |name: &str, help: &str, samples: &[(String, u64)]| {
        let _ = writeln!(out, "# HELP ephemcrypt_{name} {help}\n# TYPE ephemcrypt_{name} gauge");
        for (labels, value) in samples {
            let _ = writeln!(out, "ephemcrypt_{name}{labels} {value}");
        }
    };
    let current = status.map_or("not_run", |s| s.result.name());
    let results: Vec<(String, u64)> = RESULTS
        .iter()
        .map(|r| r.name())
        .chain(["not_run"])
        .map(|r| (format!("{{result=\"{r}\"}}"), u64::from(r == current)))
        .collect();
    metric(
        "setup_result",
        "Result of ephemcrypt setup in this boot: 1 for the current one (not_run: no status).",
        &results,
    );
    let Some(s) = status else { return out };
    let used = s.disks.iter().filter(|d| d.used).count() as u64;
    metric(
        "disks",
        "Disks setup looked at, by verdict.",
        &[("{verdict=\"used\"}".into(), used), ("{verdict=\"refused\"}".into(), s.disks.len() as u64 - used)],
    );
    metric(
        "volume_bytes",
        "Size of the encrypted volume (0: none).",
        // A status from a version that did not record the size has no sample: 0 would say "none".
        &match &s.volume {
            Some(v) if v.bytes == 0 => vec![],
            v => vec![(String::new(), v.as_ref().map_or(0, |v| v.bytes))],
        },
    );
    let gone = s.mappings.iter().filter(|m| m.live == Some(false)).count() as u64;
    metric(
        "mappings",
        "Mappings setup made, by state now (unknown: device-mapper could not be asked).",
        &[
            ("{state=\"live\"}".into(), s.mappings.iter().filter(|m| m.live == Some(true)).count() as u64),
            ("{state=\"gone\"}".into(), gone),
            ("{state=\"unknown\"}".into(), s.mappings.iter().filter(|m| m.live.is_none()).count() as u64),
        ],
    );
    metric(
        "escrow_recipients",
        "Recipients of the key's escrow (0: no escrow).",
        &[(String::new(), s.escrow.len() as u64)],
    );
    if !s.targets.is_empty() {
        metric(
            "binds_hidden",
            "Bind targets that do not show the volume now (hidden by a later mount, or never bound).",
            &[(String::new(), s.hidden.len() as u64)],
        );
    }
    if let Some(active) = s.guard_active {
        metric(
            "guard_active",
            "The reboot guard's own inhibitor lock is held (root's, blocking shutdown, by the guard unit's process).",
            &[(String::new(), u64::from(active))],
        );
    }
    let _ = writeln!(out, "# HELP ephemcrypt_setup_step_duration_seconds Time each step of setup took.");
    let _ = writeln!(out, "# TYPE ephemcrypt_setup_step_duration_seconds gauge");
    // One sample per kind and step title: a pair that comes twice (a hand-made or older status)
    // adds up, as a repeated series would make node_exporter reject the whole file. `kind` is the
    // stable label (header, crypt, mkfs, ...) to aggregate and alert on; `step` names the device.
    let mut steps: Vec<(&str, &str, u64)> = Vec::new();
    for t in &s.steps {
        match steps.iter_mut().find(|(kind, step, _)| *kind == t.kind && *step == t.step) {
            Some((_, _, ms)) => *ms = ms.saturating_add(t.ms),
            None => steps.push((&t.kind, &t.step, t.ms)),
        }
    }
    for (kind, step, ms) in steps {
        let _ = writeln!(
            out,
            "ephemcrypt_setup_step_duration_seconds{{kind=\"{}\",step=\"{}\"}} {}",
            label(kind),
            label(step),
            seconds(ms)
        );
    }
    let _ = writeln!(out, "# HELP ephemcrypt_setup_duration_seconds Time setup took in all.");
    let _ = writeln!(out, "# TYPE ephemcrypt_setup_duration_seconds gauge");
    let _ = writeln!(out, "ephemcrypt_setup_duration_seconds {}", seconds(s.steps.iter().map(|t| t.ms).sum()));
    let _ = writeln!(out, "# HELP ephemcrypt_info The ephemcrypt version that wrote the status.");
    let _ = writeln!(out, "# TYPE ephemcrypt_info gauge");
    let _ = writeln!(out, "ephemcrypt_info{{version=\"{}\"}} 1", label(&s.version));
    out
}

/// A label value, escaped as the exposition format wants.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Milliseconds as seconds, without floating point.
fn seconds(ms: u64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

fn disk_json(d: &DiskStatus) -> Value {
    Value::obj([
        ("name", Value::from(d.name.as_str())),
        ("path", d.path.as_str().into()),
        ("dev", d.dev.as_str().into()),
        ("model", d.model.as_str().into()),
        ("serial", d.serial.as_str().into()),
        ("size_bytes", d.size_bytes.into()),
        ("use", d.used.into()),
        ("reason", d.reason.as_str().into()),
    ])
}

/// Typed access to the fields of one JSON object.
struct Fields<'a>(&'a Value);

impl Fields<'_> {
    fn get(&self, key: &'static str, expected: &'static str) -> Result<&Value, StatusError> {
        self.0.get(key).ok_or(StatusError::Field { key, expected })
    }

    fn str(&self, key: &'static str) -> Result<String, StatusError> {
        self.get(key, "a string")?.as_str().map(str::to_string).ok_or(StatusError::Field { key, expected: "a string" })
    }

    fn opt_str(&self, key: &'static str) -> Result<Option<String>, StatusError> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(_) => self.str(key).map(Some),
        }
    }

    fn bool(&self, key: &'static str) -> Result<bool, StatusError> {
        match self.get(key, "true or false")? {
            Value::Bool(b) => Ok(*b),
            _ => Err(StatusError::Field { key, expected: "true or false" }),
        }
    }

    /// A flag that is false where it is missing.
    fn flag(&self, key: &'static str) -> Result<bool, StatusError> {
        match self.0.get(key) {
            None => Ok(false),
            Some(_) => self.bool(key),
        }
    }

    /// A whole, non-negative number that fits `T`.
    fn num<T: TryFrom<u64>>(&self, key: &'static str) -> Result<T, StatusError> {
        let bad = StatusError::Field { key, expected: "a whole number" };
        match self.get(key, "a whole number")? {
            Value::Num(n) => T::try_from(*n).map_err(|_| bad),
            _ => Err(bad),
        }
    }

    /// An array; a missing one is empty.
    fn arr(&self, key: &'static str) -> Result<&[Value], StatusError> {
        match self.0.get(key) {
            None => Ok(&[]),
            Some(Value::Arr(a)) => Ok(a),
            Some(_) => Err(StatusError::Field { key, expected: "an array" }),
        }
    }

    fn strs(&self, key: &'static str) -> Result<Vec<String>, StatusError> {
        self.arr(key)?
            .iter()
            .map(|v| v.as_str().map(str::to_string).ok_or(StatusError::Field { key, expected: "an array of strings" }))
            .collect()
    }
}

/// Parse the text of a status file.
pub(crate) fn parse(text: &str) -> Result<Status, StatusError> {
    Status::from_json(&crate::json::parse(text).ok_or(StatusError::NotJson)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> Status {
        Status {
            failed_step: Some("mkfs ext4 on /dev/mapper/ephemcrypt".into()),
            disks: vec![
                DiskStatus {
                    name: "nvme1n1".into(),
                    path: "/dev/nvme1n1".into(),
                    dev: "259:1".into(),
                    model: "Amazon EC2 NVMe Instance Storage".into(),
                    serial: "AWS1".into(),
                    size_bytes: 1769 << 30,
                    used: true,
                    reason: String::new(),
                },
                DiskStatus {
                    name: "sdb".into(),
                    path: "/dev/sdb".into(),
                    dev: "8:16".into(),
                    model: String::new(),
                    serial: String::new(),
                    size_bytes: 1 << 30,
                    used: false,
                    reason: "carries a signature: \"ext4\"\n".into(),
                },
            ],
            volume: Some(VolumeStatus {
                cipher: "aes-xts-plain64".into(),
                key_bits: 512,
                sector_size: 4096,
                flags: vec!["no_read_workqueue".into(), "sector_size:4096".into()],
                fs: "ext4".into(),
                bytes: 2 << 30,
            }),
            mappings: vec![
                MappingStatus { name: "ephemcrypt".into(), dev: DevNo { major: 253, minor: 0 }, live: None },
                MappingStatus { name: "ephemcrypt-swap".into(), dev: DevNo { major: 253, minor: 2 }, live: Some(true) },
                MappingStatus {
                    name: "ephemcrypt-data".into(),
                    dev: DevNo { major: 253, minor: 1 },
                    live: Some(false),
                },
            ],
            key: Some("kernel keyring (logon), never stored".into()),
            swap: Some("/dev/mapper/ephemcrypt-swap".into()),
            mount: Some("/mnt/ephemcrypt".into()),
            binds: vec!["/var/log".into(), "/tmp".into()],
            tmpfs: vec!["/var/tmp".into()],
            units: vec!["var-log.mount".into()],
            already_active: true,
            steps: vec![Timing { kind: "stripe".into(), step: "mapping ephemcrypt".into(), ms: 12 }],
            ..Status::new(SetupResult::Degraded, "a reason with \"quotes\" and ünïcode")
        }
    }

    #[test]
    fn round_trip() {
        for s in [full(), Status::new(SetupResult::Absent, ""), Status::new(SetupResult::Ok, "2 disk(s) encrypted")] {
            assert_eq!(parse(&s.to_json().pretty()).unwrap(), s);
        }
        for r in RESULTS {
            let s = Status::new(r, "x");
            assert_eq!(parse(&s.to_json().pretty()).unwrap().result, r);
        }
    }

    #[test]
    fn bad_documents_are_named() {
        assert_eq!(parse("{"), Err(StatusError::NotJson));
        assert_eq!(parse("[]"), Err(StatusError::NotAnObject));
        let mut j = full().to_json();
        if let Value::Obj(p) = &mut j {
            p.retain(|(k, _)| k != "reason");
        }
        assert_eq!(Status::from_json(&j), Err(StatusError::Field { key: "reason", expected: "a string" }));
        let text = full().to_json().pretty().replace("\"binds\": [", "\"binds\": 7, \"x\": [");
        assert_eq!(parse(&text).unwrap_err(), StatusError::Field { key: "binds", expected: "an array" });
        // The least a status says: its result and why.
        let least = parse(r#"{"result": "absent", "reason": "no eligible disk"}"#).unwrap();
        assert_eq!(least, Status { version: String::new(), ..Status::new(SetupResult::Absent, "no eligible disk") });
        let text = full().to_json().pretty().replace("\"degraded\"", "\"sideways\"");
        assert_eq!(
            parse(&text).unwrap_err().to_string(),
            "field 'result': expected ok, degraded, failed, absent or disabled"
        );
        let text = full().to_json().pretty().replace("\"ms\": 12", "\"ms\": \"12\"");
        assert_eq!(parse(&text).unwrap_err(), StatusError::Field { key: "ms", expected: "a whole number" });
        let text = full().to_json().pretty().replace("\"253:1\"", "\"x\"");
        assert_eq!(parse(&text).unwrap_err(), StatusError::Field { key: "dev", expected: "major:minor" });
    }

    #[test]
    fn render_shows_what_happened() {
        let text = full().render();
        for want in [
            "result: degraded (a reason with \"quotes\" and ünïcode)\n",
            "failed step: mkfs ext4 on /dev/mapper/ephemcrypt\n",
            "disk /dev/nvme1n1 (Amazon EC2 NVMe Instance Storage AWS1): used: \n",
            "disk /dev/sdb (no model or serial): refused: carries a signature",
            "mapping /dev/mapper/ephemcrypt (253:0): unknown (no device-mapper access)\n",
            "mapping /dev/mapper/ephemcrypt-data (253:1): GONE\n",
            "mapping /dev/mapper/ephemcrypt-swap (253:2): live\n",
            "cipher: aes-xts-plain64, 512-bit key, sector 4096, flags: no_read_workqueue sector_size:4096\n",
            "key: kernel keyring (logon), never stored\n",
            "mount: /mnt/ephemcrypt\n",
            "bind: /var/log\nbind: /tmp\ntmpfs: /var/tmp\n",
            "       12 ms  mapping ephemcrypt\n",
        ] {
            assert!(text.contains(want), "{want:?} in:\n{text}");
        }
        assert!(full().mapping_gone());
    }
}
