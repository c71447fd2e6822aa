//! Measuring setup's outcome into a TPM PCR: the commands (`codec`, pure), a SHA-1 for the sha1
//! bank, and the event ([`event`]) with its systemd measurement-log record.

pub(crate) mod codec;
mod sha1;

pub(crate) use self::codec::Bank;
pub(crate) mod event;

use crate::error::{Error, Result};
use crate::system::System;

/// Extend `pcr` in every active bank with the digests of `text` and append the record to
/// systemd's measurement log, under its lock: the log's order is the order of the extends. The
/// banks extended, each with the PCR's value read back after the extend; `None` where there is no
/// TPM.
pub(crate) fn measure<S: System>(sys: &mut S, pcr: u32, text: &str) -> Result<Option<Vec<(Bank, String)>>> {
    let tpm = |op| move |why| Error::Tpm { op, object: "the TPM".into(), why };
    let Some(resp) = sys.tpm(&codec::get_pcr_banks())? else { return Ok(None) };
    let banks = codec::parse_pcr_banks(&resp).map_err(tpm("read the PCR banks of"))?;
    let digests: Vec<(Bank, Vec<u8>)> = banks.iter().map(|b| (*b, b.digest(text.as_bytes()))).collect();
    // No extend without its record: a PCR whose log lacks an event replays for no verifier.
    sys.lock_measure_log(std::path::Path::new(event::LOG_PATH))?;
    let extended = sys
        .tpm(&codec::pcr_extend(pcr, &digests))
        .and_then(|r| r.ok_or(Error::Internal("the TPM answered a moment ago")))
        .and_then(|r| codec::parse_pcr_extend(&r).map_err(tpm("extend a PCR of")));
    let record = event::log_record(pcr, &digests, text);
    let logged = sys.unlock_measure_log(extended.is_ok().then_some(record.as_str()));
    extended?;
    logged?;
    // What the PCR holds now, for the status (a verifier reads it in a quote, not here).
    let mut values = Vec::new();
    for bank in banks {
        let value = sys.tpm(&codec::pcr_read(pcr, bank)).map(|r| r.map(|r| codec::parse_pcr_read(&r, pcr, bank)));
        let value = match value {
            Ok(Some(Ok(v))) => crate::header::hex(&v),
            Ok(Some(Err(e))) => {
                log::warn!("read PCR {pcr} ({}): {e}", bank.name());
                String::new()
            }
            Ok(None) => String::new(),
            Err(e) => {
                log::warn!("{e}");
                String::new()
            }
        };
        values.push((bank, value));
    }
    Ok(Some(values))
}

#[cfg(test)]
mod setup_tests;
