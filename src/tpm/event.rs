//! PURE: the event setup measures (what it says, as the exact bytes extended into the PCR) and
//! its record in systemd's userspace measurement log (systemd.io, "TPM2 PCR Measurements Made by
//! systemd": JSON-SEQ, RFC 7464, one record per measurement, close to TCG CEL-JSON).

use std::fmt;

use super::Bank;
use crate::escape::Esc;
use crate::json::Value;

/// systemd's userspace measurement log, in /run (kept across switch_root).
pub(crate) const LOG_PATH: &str = "/run/log/systemd/tpm2-measure.log";
/// The log record's `content_type` and `content.eventType`.
pub(crate) const CONTENT_TYPE: &str = "ephemcrypt";
pub(crate) const EVENT_TYPE: &str = "outcome";

/// The encrypted volume as the event names it: nothing derived from the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VolumeFacts {
    pub(crate) cipher: String,
    pub(crate) key_bits: u32,
    pub(crate) sector_size: u32,
    pub(crate) fs: String,
    /// The member disks' serials, sorted.
    pub(crate) serials: Vec<String>,
}

/// A measurement of setup's outcome, as the plan knows it; the result is filled in when the
/// step is taken (it is known only then).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Event {
    pub(crate) pcr: u32,
    /// `measure = required`: no TPM is a failure.
    pub(crate) required: bool,
    /// Taken by the failure policy: its name (`tmpfs`, `continue`, `halt`); `None` on the plan's
    /// own path.
    pub(crate) policy: Option<&'static str>,
    /// Taken after setup died (the boot hook's second invocation).
    pub(crate) died: bool,
    /// The volume setup makes, or made before it failed.
    pub(crate) volume: Option<VolumeFacts>,
}

impl Event {
    /// The measured text: compact JSON with its fields always present, in this order, so that
    /// the same outcome always gives the same bytes (and the same PCR value).
    pub(crate) fn text(&self, result: &str) -> String {
        let v = self.volume.as_ref();
        Value::obj([
            ("ephemcrypt", Value::from(env!("CARGO_PKG_VERSION"))),
            ("result", result.into()),
            ("policy", self.policy.into()),
            ("died", self.died.into()),
            ("cipher", v.map(|v| v.cipher.clone()).into()),
            ("key_bits", v.map(|v| v.key_bits).into()),
            ("sector_size", v.map(|v| v.sector_size).into()),
            ("fs", v.map(|v| v.fs.clone()).into()),
            ("serials", v.map_or_else(Vec::new, |v| v.serials.clone()).into()),
        ])
        .compact()
    }
}

/// How `plan` shows the step (the result is the one setup will have when it gets there).
impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "extend PCR {} in every active bank with the digest of {} and append it to {LOG_PATH}; ",
            self.pcr,
            Esc(&self.text("RESULT")),
        )?;
        f.write_str(if self.required {
            "no TPM is a failure (measure = required)"
        } else {
            "without a TPM, go on: the status says not measured"
        })
    }
}

/// The log record of extending `pcr` with the digests of `text`: an RS (0x1E), the JSON, a
/// newline, as systemd writes its own.
pub(crate) fn log_record(pcr: u32, digests: &[(Bank, Vec<u8>)], text: &str) -> String {
    let digests: Vec<Value> = digests
        .iter()
        .map(|(b, d)| Value::obj([("hashAlg", Value::from(b.name())), ("digest", crate::header::hex(d).into())]))
        .collect();
    let record = Value::obj([
        ("pcr", Value::from(pcr)),
        ("digests", Value::Arr(digests)),
        ("content_type", CONTENT_TYPE.into()),
        ("content", Value::obj([("eventType", Value::from(EVENT_TYPE)), ("string", text.into())])),
    ]);
    format!("\u{1e}{}\n", record.compact())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> Event {
        Event {
            pcr: 15,
            required: false,
            policy: None,
            died: false,
            volume: Some(VolumeFacts {
                cipher: "aes-xts-plain64".into(),
                key_bits: 512,
                sector_size: 4096,
                fs: "ext4".into(),
                serials: vec!["AWS1".into(), "AWS2".into()],
            }),
        }
    }

    #[test]
    fn the_text_is_fixed_compact_json() {
        let v = env!("CARGO_PKG_VERSION");
        assert_eq!(
            event().text("ok"),
            format!(
                r#"{{"ephemcrypt":"{v}","result":"ok","policy":null,"died":false,"cipher":"aes-xts-plain64","key_bits":512,"sector_size":4096,"fs":"ext4","serials":["AWS1","AWS2"]}}"#
            )
        );
        let failed = Event { policy: Some("tmpfs"), died: true, volume: None, ..event() };
        assert_eq!(
            failed.text("degraded"),
            format!(
                r#"{{"ephemcrypt":"{v}","result":"degraded","policy":"tmpfs","died":true,"cipher":null,"key_bits":null,"sector_size":null,"fs":null,"serials":[]}}"#
            )
        );
        // A hostile serial stays inside its string.
        let mut e = event();
        e.volume.as_mut().unwrap().serials = vec!["a\",\"result\":\"ok\u{1b}".into()];
        assert!(e.text("failed").contains(r#""serials":["a\",\"result\":\"ok\u001b"]"#), "{}", e.text("failed"));
        assert!(crate::json::parse(&e.text("failed")).is_some());
    }

    #[test]
    fn the_log_record_is_systemds_json_seq() {
        let text = event().text("ok");
        let d1 = Bank::Sha1.digest(text.as_bytes());
        let d256 = Bank::Sha256.digest(text.as_bytes());
        let r = log_record(15, &[(Bank::Sha1, d1.clone()), (Bank::Sha256, d256.clone())], &text);
        assert!(r.starts_with('\u{1e}') && r.ends_with('\n') && r.matches('\n').count() == 1, "{r:?}");
        let v = crate::json::parse(&r[1..]).unwrap();
        assert_eq!(v.get("pcr"), Some(&Value::Num(15)));
        assert_eq!(v.get("content_type").and_then(Value::as_str), Some("ephemcrypt"));
        let digests = v.get("digests").unwrap().as_array();
        assert_eq!(digests[0].get("hashAlg").and_then(Value::as_str), Some("sha1"));
        assert_eq!(digests[1].get("digest").and_then(Value::as_str), Some(crate::header::hex(&d256).as_str()));
        // The measured bytes are in the record exactly: a verifier hashes content.string.
        let content = v.get("content").unwrap();
        assert_eq!(content.get("eventType").and_then(Value::as_str), Some("outcome"));
        assert_eq!(content.get("string").and_then(Value::as_str), Some(text.as_str()));
    }
}
