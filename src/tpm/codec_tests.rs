//! The commands against their layouts in TPM 2.0 Part 3 (written out byte by byte here), and the
//! decoders against well-formed and hostile responses.

use super::*;

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

#[test]
fn get_capability_pcrs_command() {
    // tag TPM_ST_NO_SESSIONS, size 22, TPM_CC_GetCapability, TPM_CAP_PCRS, property 0, count 1.
    assert_eq!(get_pcr_banks(), hex("8001 00000016 0000017a 00000005 00000000 00000001"));
}

/// swtpm's answer: sha1 and sha256 allocated (all 24 PCRs), sha384 and sha512 known, empty.
const BANKS: &str = "8001 0000002b 00000000 00 00000005 00000004 \
                     0004 03 ffffff 000b 03 ffffff 000c 03 000000 000d 03 000000";

#[test]
fn active_banks_are_those_with_pcrs_allocated() {
    assert_eq!(parse_pcr_banks(&hex(BANKS)), Ok(vec![Bank::Sha1, Bank::Sha256]));
    // NitroTPM-like: sha384 alone... and in any order, sorted.
    let one = "8001 0000001f 00000000 00 00000005 00000002 000c 03 ffffff 000b 03 ffffff";
    assert_eq!(parse_pcr_banks(&hex(one)), Ok(vec![Bank::Sha256, Bank::Sha384]));
}

#[test]
fn hostile_bank_lists_are_refused() {
    let good = hex(BANKS);
    // Every truncation: the size no longer matches, or a field is cut.
    for n in 0..good.len() {
        assert!(parse_pcr_banks(&good[..n]).is_err(), "{n} bytes");
    }
    // One byte more than the header says.
    let mut long = good.clone();
    long.push(0);
    assert_eq!(parse_pcr_banks(&long), Err(TpmError::SizeMismatch { header: 43, read: 44 }));
    // Consistent size, but a byte after the last selection.
    let trailing = hex("8001 0000001a 00000000 00 00000005 00000001 000b 03 ffffff 00");
    assert_eq!(parse_pcr_banks(&trailing), Err(TpmError::Trailing { left: 1 }));
    // A count of selections larger than the bytes.
    let count = hex("8001 00000019 00000000 00 00000005 00000002 000b 03 ffffff");
    assert!(matches!(parse_pcr_banks(&count), Err(TpmError::Short { .. })));
    let huge = hex("8001 00000013 00000000 00 00000005 ffffffff");
    assert!(matches!(parse_pcr_banks(&huge), Err(TpmError::Field { .. })));
    // A bitmap size beyond PCR_SELECT_MAX.
    let map = hex("8001 00000019 00000000 00 00000005 00000001 000b ff ffffff");
    assert!(matches!(parse_pcr_banks(&map), Err(TpmError::Field { field: "sizeofSelect", .. })));
    // An SM3 bank in use: extending the others only would leave it without the event.
    let sm3 = hex("8001 0000001f 00000000 00 00000005 00000002 000b 03 ffffff 0012 03 ffffff");
    assert_eq!(parse_pcr_banks(&sm3), Err(TpmError::UnknownBank { alg: 0x12 }));
    // The same bank twice; no bank at all; another capability.
    let twice = hex("8001 0000001f 00000000 00 00000005 00000002 000b 03 ffffff 000b 03 ffffff");
    assert!(matches!(parse_pcr_banks(&twice), Err(TpmError::Field { field: "a bank", .. })));
    let none = hex("8001 00000019 00000000 00 00000005 00000001 000b 03 000000");
    assert!(matches!(parse_pcr_banks(&none), Err(TpmError::Field { field: "the active banks", .. })));
    let cap = hex("8001 00000019 00000000 00 00000006 00000001 000b 03 ffffff");
    assert!(matches!(parse_pcr_banks(&cap), Err(TpmError::Field { field: "the capability", .. })));
    // An error response (a bare header) names its code; a wrong tag is refused.
    assert_eq!(parse_pcr_banks(&hex("8001 0000000a 00000101")), Err(TpmError::Code(0x101)));
    assert!(parse_pcr_banks(&hex("8001 0000000a 00000101")).unwrap_err().to_string().contains("failure mode"));
    let tag = hex("8002 00000019 00000000 00 00000005 00000001 000b 03 ffffff");
    assert_eq!(parse_pcr_banks(&tag), Err(TpmError::Tag { found: 0x8002, expected: 0x8001 }));
    assert!(matches!(parse_pcr_banks(&vec![0; MAX_RESPONSE + 1]), Err(TpmError::TooLarge { .. })));
}

#[test]
fn pcr_extend_command() {
    let digest = vec![0xaa; 32];
    let sha1 = vec![0x55; 20];
    // Part 3, 22.2: tag TPM_ST_SESSIONS, size, TPM_CC_PCR_Extend, @pcrHandle (15), then the
    // authorization area (size 9: TPM_RS_PW, empty nonce, continueSession, empty hmac), then
    // TPML_DIGEST_VALUES (count, TPMT_HA each).
    let expected = format!(
        "8002 00000057 00000182 0000000f 00000009 40000009 0000 01 0000 00000002 0004 {} 000b {}",
        "55".repeat(20),
        "aa".repeat(32)
    );
    assert_eq!(pcr_extend(15, &[(Bank::Sha1, sha1), (Bank::Sha256, digest)]), hex(&expected));
}

#[test]
fn pcr_extend_response() {
    // tag TPM_ST_SESSIONS, size 19, success, parameterSize 0, TPMS_AUTH_RESPONSE (empty nonce,
    // continueSession, empty hmac).
    let ok = hex("8002 00000013 00000000 00000000 0000 01 0000");
    assert_eq!(parse_pcr_extend(&ok), Ok(()));
    for n in 0..ok.len() {
        assert!(parse_pcr_extend(&ok[..n]).is_err(), "{n} bytes");
    }
    // TPM_RC_LOCALITY for a PCR this locality may not extend.
    let loc = parse_pcr_extend(&hex("8001 0000000a 00000907")).unwrap_err();
    assert_eq!(loc, TpmError::Code(0x907));
    assert!(loc.to_string().contains("TPM_RC_LOCALITY"));
    // A nonce larger than what is left; parameters where there are none; trailing bytes.
    assert!(matches!(
        parse_pcr_extend(&hex("8002 00000013 00000000 00000000 0040 01 0000")),
        Err(TpmError::Short { .. })
    ));
    assert!(parse_pcr_extend(&hex("8002 00000013 00000000 00000004 0000 01 0000")).is_err());
    assert!(parse_pcr_extend(&hex("8002 00000014 00000000 00000000 0000 01 0000 00")).is_err());
    assert!(parse_pcr_extend(&hex("8001 00000013 00000000 00000000 0000 01 0000")).is_err());
}

#[test]
fn pcr_read_command_and_response() {
    // Part 3, 22.4: TPML_PCR_SELECTION with one TPMS_PCR_SELECTION: sha256, 3 bytes, bit 15.
    assert_eq!(pcr_read(15, Bank::Sha256), hex("8001 00000014 0000017e 00000001 000b 03 008000"));
    assert_eq!(pcr_read(0, Bank::Sha1), hex("8001 00000014 0000017e 00000001 0004 03 010000"));
    assert_eq!(pcr_read(23, Bank::Sha384), hex("8001 00000014 0000017e 00000001 000c 03 000080"));
    let value = "11".repeat(32);
    let resp = hex(&format!("8001 0000003e 00000000 0000002a 00000001 000b 03 008000 00000001 0020 {value}"));
    assert_eq!(parse_pcr_read(&resp, 15, Bank::Sha256), Ok(vec![0x11; 32]));
    for n in 0..resp.len() {
        assert!(parse_pcr_read(&resp[..n], 15, Bank::Sha256).is_err(), "{n} bytes");
    }
    // Another PCR or bank than asked; an empty selection (a bank the TPM lacks); a digest of
    // another size.
    assert!(parse_pcr_read(&resp, 14, Bank::Sha256).is_err());
    assert!(parse_pcr_read(&resp, 15, Bank::Sha384).is_err());
    let empty = hex("8001 0000001c 00000000 0000002a 00000001 000b 03 000000 00000000");
    assert!(parse_pcr_read(&empty, 15, Bank::Sha256).is_err());
    let short = hex(&format!("8001 0000003e 00000000 0000002a 00000001 000b 03 008000 00000001 0014 {value}"));
    assert!(parse_pcr_read(&short, 15, Bank::Sha256).is_err());
}

#[test]
fn digests_and_extend() {
    let h = |b: &[u8]| b.iter().map(|b| format!("{b:02x}")).collect::<String>();
    assert_eq!(h(&Bank::Sha256.digest(b"abc")), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    assert_eq!(Bank::Sha384.digest(b"").len(), 48);
    assert_eq!(Bank::Sha512.digest(b"").len(), 64);
    // A PCR from zeros extended with H("abc") in sha256 (what tpm2_pcrextend gives).
    let pcr = Bank::Sha256.extend(&[0; 32], &Bank::Sha256.digest(b"abc"));
    assert_eq!(pcr, Bank::Sha256.digest(&[&[0u8; 32][..], &Bank::Sha256.digest(b"abc")].concat()));
}
