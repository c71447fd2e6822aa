//! PURE: the three TPM 2.0 commands ephemcrypt sends, as bytes, and their responses decoded
//! (TPM 2.0 Library Specification, Part 3: Commands; Part 2: Structures). Everything is big-endian.
//! A response is hostile input: its header's size must equal the bytes read, every count and
//! size inside must fit in what is left, and nothing may follow the last field.

use std::fmt;

/// `TPM_ST_NO_SESSIONS`: a command or response without an authorization area.
pub(crate) const ST_NO_SESSIONS: u16 = 0x8001;
/// `TPM_ST_SESSIONS`: with one.
pub(crate) const ST_SESSIONS: u16 = 0x8002;
pub(crate) const CC_PCR_EXTEND: u32 = 0x0000_0182;
pub(crate) const CC_PCR_READ: u32 = 0x0000_017E;
pub(crate) const CC_GET_CAPABILITY: u32 = 0x0000_017A;
/// `TPM_CAP_PCRS`: the PCR banks and which PCRs each has allocated.
pub(crate) const CAP_PCRS: u32 = 0x0000_0005;
/// `TPM_RS_PW`: the password session (the PCRs' authValue is empty at boot).
pub(crate) const RS_PW: u32 = 0x4000_0009;
/// The largest response ephemcrypt reads: a PCR read of one bank is ~100 bytes, the bank list
/// ~40; the kernel's TPM buffer is 4096.
pub(crate) const MAX_RESPONSE: usize = 4096;
/// A response header: tag (2), size (4), response code (4).
const HEADER: usize = 10;

/// A PCR bank ephemcrypt can extend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Bank {
    Sha1,
    Sha256,
    Sha384,
    Sha512,
}

impl Bank {
    pub(crate) const ALL: [Bank; 4] = [Bank::Sha1, Bank::Sha256, Bank::Sha384, Bank::Sha512];

    /// `TPM_ALG_ID`.
    pub(crate) fn alg(self) -> u16 {
        match self {
            Bank::Sha1 => 0x0004,
            Bank::Sha256 => 0x000B,
            Bank::Sha384 => 0x000C,
            Bank::Sha512 => 0x000D,
        }
    }

    /// The name systemd's measurement log and tpm2-tools use.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Bank::Sha1 => "sha1",
            Bank::Sha256 => "sha256",
            Bank::Sha384 => "sha384",
            Bank::Sha512 => "sha512",
        }
    }

    pub(crate) fn len(self) -> usize {
        match self {
            Bank::Sha1 => 20,
            Bank::Sha256 => 32,
            Bank::Sha384 => 48,
            Bank::Sha512 => 64,
        }
    }

    fn from_alg(alg: u16) -> Option<Bank> {
        Bank::ALL.into_iter().find(|b| b.alg() == alg)
    }

    /// The digest of `data` in this bank's algorithm.
    pub(crate) fn digest(self, data: &[u8]) -> Vec<u8> {
        use sha2::Digest;
        match self {
            Bank::Sha1 => super::sha1::sha1(data).to_vec(),
            Bank::Sha256 => sha2::Sha256::digest(data).to_vec(),
            Bank::Sha384 => sha2::Sha384::digest(data).to_vec(),
            Bank::Sha512 => sha2::Sha512::digest(data).to_vec(),
        }
    }

    /// What extending a PCR holding `old` with `digest` gives: H(old || digest).
    #[cfg(test)]
    pub(crate) fn extend(self, old: &[u8], digest: &[u8]) -> Vec<u8> {
        self.digest(&[old, digest].concat())
    }
}

/// Why a response is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TpmError {
    /// Fewer bytes than a field needs: the field, and how many bytes were left.
    Short {
        field: &'static str,
        left: usize,
    },
    /// The header's size is not the number of bytes read.
    SizeMismatch {
        header: u32,
        read: usize,
    },
    TooLarge {
        read: usize,
    },
    Tag {
        found: u16,
        expected: u16,
    },
    /// The TPM refused the command: its response code.
    Code(u32),
    /// Bytes after the last field.
    Trailing {
        left: usize,
    },
    /// A field whose value cannot be: what was expected.
    Field {
        field: &'static str,
        expected: &'static str,
        found: u64,
    },
    /// An allocated bank in an algorithm ephemcrypt does not have (SM3, SHA3): extending only
    /// the others would leave that bank without the event.
    UnknownBank {
        alg: u16,
    },
}

impl fmt::Display for TpmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TpmError::Short { field, left } => write!(f, "response too short for {field} ({left} bytes left)"),
            TpmError::SizeMismatch { header, read } => {
                write!(f, "response header says {header} bytes, {read} were read")
            }
            TpmError::TooLarge { read } => write!(f, "response of {read} bytes, more than {MAX_RESPONSE}"),
            TpmError::Tag { found, expected } => write!(f, "response tag {found:#06x}, expected {expected:#06x}"),
            TpmError::Code(rc) => write!(f, "the TPM answered with response code {rc:#010x}{}", code_name(*rc)),
            TpmError::Trailing { left } => write!(f, "{left} bytes after the response's last field"),
            TpmError::Field { field, expected, found } => write!(f, "{field} is {found}, expected {expected}"),
            TpmError::UnknownBank { alg } => write!(
                f,
                "the TPM has an active PCR bank in algorithm {alg:#06x}, which ephemcrypt cannot extend \
                 (sha1, sha256, sha384 and sha512 only)"
            ),
        }
    }
}

/// A name for the response codes one meets at boot.
fn code_name(rc: u32) -> &'static str {
    match rc {
        0x0000_0100 => " (TPM_RC_INITIALIZE: TPM2_Startup was not run)",
        0x0000_0101 => " (TPM_RC_FAILURE: the TPM is in failure mode)",
        0x0000_0922 => " (TPM_RC_RETRY)",
        0x0000_0908 => " (TPM_RC_YIELDED)",
        0x0000_0909 => " (TPM_RC_CANCELED)",
        0x0000_0907 => " (TPM_RC_LOCALITY: this locality may not extend the PCR)",
        0x0000_098E => " (TPM_RC_BAD_AUTH)",
        0x0000_0184 => " (TPM_RC_VALUE)",
        _ => "",
    }
}

/// A command: the header with its size filled in, then `body`.
fn command(tag: u16, code: u32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + body.len());
    out.extend_from_slice(&tag.to_be_bytes());
    // Our commands are at most a few hundred bytes.
    let size = u32::try_from(HEADER + body.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&size.to_be_bytes());
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// TPM2_GetCapability(TPM_CAP_PCRS, property 0, count 1): the banks and their allocated PCRs.
pub(crate) fn get_pcr_banks() -> Vec<u8> {
    let mut body = Vec::with_capacity(12);
    body.extend_from_slice(&CAP_PCRS.to_be_bytes());
    body.extend_from_slice(&0u32.to_be_bytes());
    body.extend_from_slice(&1u32.to_be_bytes());
    command(ST_NO_SESSIONS, CC_GET_CAPABILITY, &body)
}

/// The TPMS_PCR_SELECTION of one PCR in one bank (3 bytes of bitmap: PCRs 0..23).
fn selection(pcr: u32, bank: Bank) -> Vec<u8> {
    let mut map = [0u8; 3];
    let byte = usize::try_from(pcr / 8).unwrap_or(usize::MAX);
    if let Some(b) = map.get_mut(byte) {
        *b = 1 << (pcr % 8);
    }
    let mut out = bank.alg().to_be_bytes().to_vec();
    out.push(3);
    out.extend_from_slice(&map);
    out
}

/// TPM2_PCR_Extend(pcr, digests) with the password session and an empty password.
pub(crate) fn pcr_extend(pcr: u32, digests: &[(Bank, Vec<u8>)]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&pcr.to_be_bytes());
    // authorizationSize, then TPMS_AUTH_COMMAND: handle, nonce (empty), attributes
    // (continueSession), hmac (the empty password).
    body.extend_from_slice(&9u32.to_be_bytes());
    body.extend_from_slice(&RS_PW.to_be_bytes());
    body.extend_from_slice(&0u16.to_be_bytes());
    body.push(0x01);
    body.extend_from_slice(&0u16.to_be_bytes());
    // TPML_DIGEST_VALUES: count, then TPMT_HA { hashAlg, digest } each.
    let count = u32::try_from(digests.len()).unwrap_or(u32::MAX);
    body.extend_from_slice(&count.to_be_bytes());
    for (bank, digest) in digests {
        body.extend_from_slice(&bank.alg().to_be_bytes());
        body.extend_from_slice(digest);
    }
    command(ST_SESSIONS, CC_PCR_EXTEND, &body)
}

/// TPM2_PCR_Read of one PCR in one bank.
pub(crate) fn pcr_read(pcr: u32, bank: Bank) -> Vec<u8> {
    let mut body = 1u32.to_be_bytes().to_vec();
    body.extend_from_slice(&selection(pcr, bank));
    command(ST_NO_SESSIONS, CC_PCR_READ, &body)
}

/// A reader over a response's bytes.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], TpmError> {
        if self.bytes.len() < n {
            return Err(TpmError::Short { field, left: self.bytes.len() });
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }
    fn u8(&mut self, field: &'static str) -> Result<u8, TpmError> {
        Ok(self.take(1, field)?.first().copied().unwrap_or(0))
    }
    fn u16(&mut self, field: &'static str) -> Result<u16, TpmError> {
        let b = self.take(2, field)?;
        Ok(u16::from_be_bytes([b.first().copied().unwrap_or(0), b.get(1).copied().unwrap_or(0)]))
    }
    fn u32(&mut self, field: &'static str) -> Result<u32, TpmError> {
        let b = self.take(4, field)?;
        let mut a = [0u8; 4];
        a.copy_from_slice(b);
        Ok(u32::from_be_bytes(a))
    }
    fn end(&self) -> Result<(), TpmError> {
        match self.bytes.len() {
            0 => Ok(()),
            left => Err(TpmError::Trailing { left }),
        }
    }
}

/// The header checked (size = bytes read, response code 0, tag): the parameters after it.
fn response(bytes: &[u8], tag: u16) -> Result<Reader<'_>, TpmError> {
    if bytes.len() > MAX_RESPONSE {
        return Err(TpmError::TooLarge { read: bytes.len() });
    }
    let mut r = Reader { bytes };
    let found = r.u16("the response tag")?;
    let size = r.u32("the response size")?;
    let rc = r.u32("the response code")?;
    if usize::try_from(size).ok() != Some(bytes.len()) {
        return Err(TpmError::SizeMismatch { header: size, read: bytes.len() });
    }
    // An error response is a bare header with tag TPM_ST_NO_SESSIONS.
    if rc != 0 {
        return Err(TpmError::Code(rc));
    }
    if found != tag {
        return Err(TpmError::Tag { found, expected: tag });
    }
    Ok(r)
}

/// One TPMS_PCR_SELECTION: the bank's algorithm and its bitmap.
fn read_selection<'a>(r: &mut Reader<'a>) -> Result<(u16, &'a [u8]), TpmError> {
    let alg = r.u16("a selection's hash algorithm")?;
    let size = r.u8("a selection's bitmap size")?;
    // TPM2 allows up to PCR_SELECT_MAX (4 for 32 PCRs); 3 covers the 24 of a PC Client TPM.
    if !(1..=4).contains(&size) {
        return Err(TpmError::Field { field: "sizeofSelect", expected: "1 to 4", found: size.into() });
    }
    Ok((alg, r.take(usize::from(size), "a selection's bitmap")?))
}

/// The active banks from TPM2_GetCapability(TPM_CAP_PCRS)'s response: those with a PCR
/// allocated. An active bank ephemcrypt cannot extend is an error; an empty one is skipped.
pub(crate) fn parse_pcr_banks(bytes: &[u8]) -> Result<Vec<Bank>, TpmError> {
    let mut r = response(bytes, ST_NO_SESSIONS)?;
    let _more = r.u8("moreData")?;
    let cap = r.u32("the capability")?;
    if cap != CAP_PCRS {
        return Err(TpmError::Field { field: "the capability", expected: "TPM_CAP_PCRS (5)", found: cap.into() });
    }
    let count = r.u32("the number of banks")?;
    // TPML_PCR_SELECTION holds at most HASH_COUNT (a handful) entries.
    if count > 16 {
        return Err(TpmError::Field { field: "the number of banks", expected: "at most 16", found: count.into() });
    }
    let mut banks = Vec::new();
    for _ in 0..count {
        let (alg, map) = read_selection(&mut r)?;
        if map.iter().all(|b| *b == 0) {
            continue;
        }
        match Bank::from_alg(alg) {
            Some(b) if banks.contains(&b) => {
                return Err(TpmError::Field { field: "a bank", expected: "each bank once", found: alg.into() })
            }
            Some(b) => banks.push(b),
            None => return Err(TpmError::UnknownBank { alg }),
        }
    }
    r.end()?;
    if banks.is_empty() {
        return Err(TpmError::Field { field: "the active banks", expected: "at least one", found: 0 });
    }
    banks.sort();
    Ok(banks)
}

/// TPM2_PCR_Extend's response: no parameters, the password session's empty acknowledgement.
pub(crate) fn parse_pcr_extend(bytes: &[u8]) -> Result<(), TpmError> {
    let mut r = response(bytes, ST_SESSIONS)?;
    let params = r.u32("parameterSize")?;
    if params != 0 {
        return Err(TpmError::Field { field: "parameterSize", expected: "0", found: params.into() });
    }
    // TPMS_AUTH_RESPONSE: nonce, attributes, hmac; both empty for a password session.
    let nonce = r.u16("the session nonce size")?;
    r.take(usize::from(nonce), "the session nonce")?;
    let _attributes = r.u8("the session attributes")?;
    let hmac = r.u16("the session hmac size")?;
    r.take(usize::from(hmac), "the session hmac")?;
    r.end()
}

/// TPM2_PCR_Read's response for [`pcr_read`]`(pcr, bank)`: the PCR's value. The selection
/// returned must be the one asked for (a TPM returns an empty one for a bank it lacks).
pub(crate) fn parse_pcr_read(bytes: &[u8], pcr: u32, bank: Bank) -> Result<Vec<u8>, TpmError> {
    let mut r = response(bytes, ST_NO_SESSIONS)?;
    let _update_counter = r.u32("pcrUpdateCounter")?;
    let count = r.u32("the number of selections")?;
    if count != 1 {
        return Err(TpmError::Field { field: "the number of selections", expected: "1", found: count.into() });
    }
    let (alg, map) = read_selection(&mut r)?;
    let asked = selection(pcr, bank);
    if alg != bank.alg() || Some(map) != asked.get(3..) {
        return Err(TpmError::Field { field: "the selection read", expected: "the one asked for", found: alg.into() });
    }
    let digests = r.u32("the number of digests")?;
    if digests != 1 {
        return Err(TpmError::Field { field: "the number of digests", expected: "1", found: digests.into() });
    }
    let size = r.u16("the digest size")?;
    if usize::from(size) != bank.len() {
        return Err(TpmError::Field { field: "the digest size", expected: "the bank's", found: size.into() });
    }
    let value = r.take(bank.len(), "the digest")?.to_vec();
    r.end()?;
    Ok(value)
}

#[cfg(test)]
#[path = "codec_tests.rs"]
mod tests;
