//! What setup did, as `/run/ephemcrypt/status.json` (/run survives switch_root), and `ephemcrypt
//! status`, which prints it with a live check that the mappings still exist.

use std::fmt;
use std::path::PathBuf;

use crate::json::Value;
use crate::plan::Plan;
use crate::units::DevNo;

pub const STATUS_PATH: &str = "/run/ephemcrypt/status.json";

/// The overall result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetupResult {
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
}

impl SetupResult {
    pub fn name(self) -> &'static str {
        match self {
            SetupResult::Ok => "ok",
            SetupResult::Degraded => "degraded",
            SetupResult::Failed => "failed",
            SetupResult::Absent => "absent",
            SetupResult::Disabled => "disabled",
        }
    }
}

impl fmt::Display for SetupResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What setup did: the plan's facts plus what happened.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub result: Option<SetupResult>,
    pub reason: String,
    /// The mappings made (or found), in creation order.
    pub mappings: Vec<(String, DevNo)>,
    /// How the key was held, e.g. "kernel keyring (logon), never stored".
    pub key: Option<&'static str>,
    pub swap: Option<String>,
    pub mount: Option<PathBuf>,
    pub binds: Vec<PathBuf>,
    /// Bind targets covered by tmpfs after a failure.
    pub tmpfs: Vec<PathBuf>,
    /// Each step and how long it took.
    pub steps: Vec<(String, u64)>,
    /// Setup found the volume already in place (a second run in the same boot).
    pub already_active: bool,
}

impl Outcome {
    pub fn result(&self) -> SetupResult {
        self.result.unwrap_or(SetupResult::Failed)
    }

    pub fn to_json(&self, plan: Option<&Plan>) -> Value {
        let strs = |v: &[PathBuf]| Value::from(v.iter().map(|p| p.display().to_string()).collect::<Vec<_>>());
        let mut pairs = vec![
            ("result", Value::from(self.result().name())),
            ("reason", self.reason.clone().into()),
            ("version", env!("CARGO_PKG_VERSION").into()),
        ];
        if let Some(plan) = plan {
            pairs.push(("disks", plan.disks_json()));
            if let Some(v) = plan.volume() {
                pairs.push(("cipher", v.crypt.cipher.as_str().into()));
                pairs.push(("key_bits", v.crypt.key_bits.into()));
                pairs.push(("sector_size", v.crypt.sector_size.into()));
                pairs.push(("flags", v.crypt.flags.clone().into()));
                pairs.push(("fs", v.fs.name().into()));
            }
        }
        pairs.extend([
            (
                "mappings",
                Value::Arr(
                    self.mappings
                        .iter()
                        .map(|(n, d)| Value::obj([("name", Value::from(n.as_str())), ("dev", d.to_string().into())]))
                        .collect(),
                ),
            ),
            ("key", self.key.map(str::to_string).into()),
            ("swap", self.swap.clone().into()),
            ("mount", self.mount.as_ref().map(|p| p.display().to_string()).into()),
            ("binds", strs(&self.binds)),
            ("tmpfs", strs(&self.tmpfs)),
            ("already_active", self.already_active.into()),
            (
                "steps",
                Value::Arr(
                    self.steps
                        .iter()
                        .map(|(s, ms)| Value::obj([("step", Value::from(s.as_str())), ("ms", (*ms).into())]))
                        .collect(),
                ),
            ),
        ]);
        Value::obj(pairs)
    }
}

/// Render a status document as text; each mapping's `live` field (added by `ephemcrypt status`)
/// says whether it still exists.
pub fn render(status: &Value) -> String {
    let s = |k: &str| status.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let mut out = format!("result: {}", s("result"));
    if !s("reason").is_empty() {
        out += &format!(" ({})", s("reason"));
    }
    out.push('\n');
    for d in status.get("disks").map(Value::as_array).unwrap_or(&[]) {
        let f = |k: &str| d.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let used = d.get("use") == Some(&Value::Bool(true));
        let verdict = if used { "used".to_string() } else { format!("refused: {}", f("reason")) };
        let id: Vec<String> = [f("model"), f("serial")].into_iter().filter(|s| !s.is_empty()).collect();
        let id = if id.is_empty() { "no model or serial".to_string() } else { id.join(" ") };
        out += &format!("disk {} ({id}): {verdict}\n", f("path"));
    }
    for m in status.get("mappings").map(Value::as_array).unwrap_or(&[]) {
        let name = m.get("name").and_then(Value::as_str).unwrap_or("");
        let state = match m.get("live") {
            Some(Value::Bool(true)) => "live",
            Some(Value::Bool(false)) => "GONE",
            _ => "unknown (no device-mapper access)",
        };
        out +=
            &format!("mapping /dev/mapper/{name} ({}): {state}\n", m.get("dev").and_then(Value::as_str).unwrap_or(""));
    }
    if !s("cipher").is_empty() {
        let flags: Vec<&str> =
            status.get("flags").map(Value::as_array).unwrap_or(&[]).iter().filter_map(Value::as_str).collect();
        let bits = match status.get("key_bits") {
            Some(Value::Num(n)) => format!("{n}"),
            _ => "?".into(),
        };
        let sector = match status.get("sector_size") {
            Some(Value::Num(n)) => format!("{n}"),
            _ => "?".into(),
        };
        out += &format!("cipher: {}, {bits}-bit key, sector {sector}, flags: {}\n", s("cipher"), flags.join(" "));
    }
    if !s("key").is_empty() {
        out += &format!("key: {}\n", s("key"));
    }
    for (k, label) in [("swap", "swap"), ("mount", "mount")] {
        if !s(k).is_empty() {
            out += &format!("{label}: {}\n", s(k));
        }
    }
    for (k, label) in [("binds", "bind"), ("tmpfs", "tmpfs")] {
        for b in status.get(k).map(Value::as_array).unwrap_or(&[]).iter().filter_map(Value::as_str) {
            out += &format!("{label}: {b}\n");
        }
    }
    let steps = status.get("steps").map(Value::as_array).unwrap_or(&[]);
    if !steps.is_empty() {
        out += "steps:\n";
        for st in steps {
            let ms = match st.get("ms") {
                Some(Value::Num(n)) => *n,
                _ => 0.0,
            };
            out += &format!("  {:>7} ms  {}\n", ms, st.get("step").and_then(Value::as_str).unwrap_or(""));
        }
    }
    out
}
