//! PURE: a plan shown: its text (`ephemcrypt plan`) and its JSON (`--json`).

use super::{Plan, Slice, State, Volume};

use std::fmt;

use crate::escape::{escape, line, Esc};
use crate::json::Value;
use crate::step::Step;

/// A short state word.
pub(crate) fn state_word(state: &State) -> &'static str {
    match state {
        State::Disabled => "disabled",
        State::Absent => "absent",
        State::TooFew { .. } => "too-few",
        State::Invalid(_) => "invalid",
        State::Unreadable(_) => "unreadable",
        State::BadConfig(_) => "bad-config",
        State::Ready(_) => "ready",
        State::Live(_) => "live",
        State::Held { .. } => "held",
    }
}

/// The reason behind a state, for people.
pub(crate) fn state_reason(state: &State) -> String {
    match state {
        State::Disabled => "rd.ephemcrypt=0 on the kernel command line".into(),
        State::Absent => "no eligible disk; nothing to do".into(),
        State::TooFew { found, expected } => format!("{found} eligible disk(s), {expected} expected"),
        State::Invalid(why) => why.to_string(),
        State::Unreadable(why) | State::BadConfig(why) => why.clone(),
        State::Ready(v) => format!("{} disk(s) to encrypt", v.members.len()),
        State::Live(live) => format!("the volume is live already ({}); not touching it", live.dev),
        State::Held { by, volumes } if volumes.is_empty() => format!("held by {by}: no disk touched"),
        State::Held { by, volumes } => {
            format!("held by {by}: no disk touched; left alone: volume {}", volumes.join(", volume "))
        }
    }
}

impl Plan {
    pub(crate) fn volume(&self) -> Option<&Volume> {
        match &self.state {
            State::Ready(v) => Some(v),
            _ => None,
        }
    }

    /// Why setup cannot make the volume, when it cannot: the failure policy follows.
    pub(crate) fn failure(&self) -> Option<String> {
        match &self.state {
            State::TooFew { .. } | State::Invalid(_) | State::Unreadable(_) | State::BadConfig(_) => {
                Some(state_reason(&self.state))
            }
            _ => None,
        }
    }

    /// Every disk with its verdict, as `plan --json` and the status file show them.
    pub(crate) fn disks_json(&self) -> Value {
        Value::Arr(
            self.disks
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
                .collect(),
        )
    }

    pub(crate) fn to_json(&self) -> Value {
        let steps = |s: &[Step]| Value::Arr(s.iter().map(Step::to_json).collect());
        Value::obj([
            ("state", Value::from(state_word(&self.state))),
            ("reason", state_reason(&self.state).into()),
            ("on_failure", self.on_failure.name().into()),
            ("kernel_features", if self.caps.crypt.is_some() { "read" } else { "assumed" }.into()),
            ("fips_mode", self.caps.fips.into()),
            ("disks", self.disks_json()),
            ("volume", self.volume().map_or(Value::Null, volume_json)),
            ("fstab", self.fstab.clone().into()),
            ("not_covered", self.exposed.iter().map(|(_, why)| why.clone()).collect::<Vec<_>>().into()),
            ("steps", steps(&self.steps)),
            ("on_failure_steps", steps(&self.fallback)),
        ])
    }
}

pub(super) fn slice_json(s: &Slice) -> Value {
    Value::obj([
        ("name", Value::from(s.name.as_str())),
        ("start_sectors", s.start.0.into()),
        ("size_bytes", s.len.bytes().0.into()),
    ])
}

pub(super) fn volume_json(v: &Volume) -> Value {
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
                ("key", v.crypt.key_path.describe(v.escrow.len()).into()),
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
            // Model, serial and name as sysfs gave them, escaped; the reasons escape what they quote,
            // and `line` catches any control character left.
            let (model, serial) = (Esc(&d.model), Esc(&d.serial));
            let id = match (d.model.is_empty(), d.serial.is_empty()) {
                (false, false) => format!("{model}, serial {serial}"),
                (false, true) => model.to_string(),
                (true, false) => format!("serial {serial}"),
                (true, true) => "no model or serial".into(),
            };
            let verdict = if a.verdict.is_use() { "use: " } else { "skip: " }.to_string() + &line(&a.verdict.reason());
            writeln!(f, "  {:<12} {:>8}  {}  -> {}", escape(&d.name), d.size.to_string(), id, verdict)?;
        }
        writeln!(f, "result: {} ({})", state_word(&self.state), line(&state_reason(&self.state)))?;
        let list = |f: &mut fmt::Formatter<'_>, steps: &[Step]| -> fmt::Result {
            for (i, s) in steps.iter().enumerate() {
                writeln!(f, "  {:>2}. {s}", i + 1)?;
            }
            Ok(())
        };
        if !self.fstab.is_empty() {
            writeln!(f, "fstab of the real root:")?;
            for note in &self.fstab {
                writeln!(f, "  {note}")?;
            }
        }
        for (_, why) in &self.exposed {
            writeln!(f, "not covered: {}", escape(why))?;
        }
        if !self.steps.is_empty() {
            writeln!(f, "steps:")?;
            list(f, &self.steps)?;
        }
        let live_idle = matches!(self.state, State::Live(_)) && self.steps.is_empty();
        if !matches!(self.state, State::Disabled | State::Absent) && !live_idle {
            let undo = if self.steps.is_empty() { "" } else { "undo the steps taken, in reverse order, then " };
            writeln!(f, "on failure: {undo}on-failure={}:", self.on_failure.name())?;
            list(f, &self.fallback)?;
        }
        if let Some(v) = self.volume().filter(|_| self.caps.fips) {
            writeln!(f, "FIPS mode: the kernel's approved {} encrypts the disks", v.crypt.cipher)?;
            if !v.escrow.is_empty() {
                writeln!(
                    f,
                    "FIPS mode: the escrow's X25519 and ChaCha20-Poly1305 are not FIPS-approved (escrow-fips = allow)"
                )?;
            }
        }
        if self.volume().is_some() {
            // What setup asked the kernel before this plan (plan::KERNEL_PHASE).
            writeln!(f, "kernel phase, before planning: {}", super::KERNEL_PHASE)?;
            match self.caps.crypt {
                Some([a, b, c]) => writeln!(f, "(dm-crypt {a}.{b}.{c}, read from the running kernel)")?,
                None => writeln!(f, "(kernel features assumed: setup reads them from the running kernel)")?,
            }
        }
        if !self.newroot_read && !self.steps.is_empty() {
            writeln!(f, "(new root not read: its directories are taken to be present; see --newroot)")?;
        }
        Ok(())
    }
}
