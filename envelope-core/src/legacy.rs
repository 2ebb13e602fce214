//! The legacy record scheme taught by a widely read blog post
//! (docs/format.md §11): read it so data can be moved off it; write it only
//! to make test fixtures.
//!
//! `record = base64( IV(16) || AES-256-CBC(key, IV, PKCS#7( base64(UTF-8 text) )) )`
//!
//! It has no authentication and the blog reused one IV for every record, so
//! equal texts give equal records. Nothing here should be used for new data.
//!
//! # For batch migration only, never an online decryption service
//!
//! Unauthenticated CBC is the textbook padding oracle: anyone who can submit
//! altered records and learn whether each one decrypted (by the answer, an
//! error code, a log line or the time taken) can decrypt any record without
//! the key. The reader below does what a reader can: every failure after the
//! block decryption is the one [`Error::Authentication`], and unpadding, the
//! inner base64 and the UTF-8 check run in constant time with respect to the
//! padding's validity and the plaintext (the same work, over the whole
//! record, whether the padding is good or bad). That removes the oracle from
//! this code, not from a system built around it: expose this reader to
//! untrusted callers, and retries, rate limits or downstream behaviour will
//! leak it again. Use it to move stored records off the scheme in a batch
//! job over data you hold (`rekey reencrypt --items legacy`), never behind an
//! endpoint that decrypts records others send.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use cbc::cipher::block_padding::NoPadding;
use cbc::cipher::{BlockModeDecrypt, KeyIvInit};
use subtle::{Choice, ConditionallySelectable};
use zeroize::Zeroizing;

#[cfg(feature = "internals")]
use crate::aead::Cbc;
use crate::error::{Error, FormatError};
use crate::key::DataKey;

/// Whether the text was base64-encoded before encryption, as the blog did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InnerEncoding {
    /// `PKCS#7(base64(UTF-8 text))`: the blog's code.
    #[default]
    Base64,
    /// `PKCS#7(UTF-8 text)`: variants that dropped the inner layer.
    Raw,
}

/// The largest legacy record accepted, in bytes of text.
pub const MAX_LEGACY_RECORD_LEN: usize = 16 << 20;

/// Decrypts a legacy record to its text.
///
/// Bad padding, bad inner base64 and bad UTF-8 give the same
/// [`Error::Authentication`] (MUST 11.1), after the same work (see the
/// [module docs](self): for batch migration, never an online service); a
/// record that is not base64 or too short to hold an IV and a block is a
/// [`FormatError`] (its length and encoding are public anyway).
///
/// # Errors
/// As above.
pub fn decrypt_legacy_record(
    data_key: &DataKey,
    record: &str,
    inner: InnerEncoding,
) -> Result<Zeroizing<String>, Error> {
    let record = record.trim_ascii();
    if record.len() > MAX_LEGACY_RECORD_LEN {
        return Err(
            FormatError::TooLong { field: "legacy record", len: record.len(), max: MAX_LEGACY_RECORD_LEN }.into()
        );
    }
    let raw = STANDARD.decode(record).map_err(|_| FormatError::BadBase64)?;
    if raw.len() < 32 || raw.len() % 16 != 0 {
        return Err(FormatError::Invalid("legacy record length (must be an IV and whole AES blocks)").into());
    }
    let (iv, ciphertext) = raw.split_at(16);
    let mut iv_bytes = [0u8; 16];
    iv_bytes.copy_from_slice(iv);
    let mut padded = Zeroizing::new(ciphertext.to_vec());
    cbc::Decryptor::<aes::Aes256>::new(data_key.expose_secret().into(), &iv_bytes.into())
        .decrypt_padded::<NoPadding>(&mut padded)
        // Only a length that is not whole blocks fails here, checked above.
        .map_err(|_| Error::Authentication)?;

    // From here on, no branch and no memory access depends on the plaintext
    // until the one final decision.
    let (len, mut valid) = unpad(&padded);
    let (text, text_len) = match inner {
        InnerEncoding::Base64 => {
            let (decoded, decoded_len, decoded_ok) = decode_base64(&padded, len);
            valid &= decoded_ok;
            (decoded, decoded_len)
        }
        InnerEncoding::Raw => (padded, len),
    };
    valid &= utf8_valid(&text, text_len);
    if !bool::from(valid) {
        return Err(Error::Authentication);
    }
    let text_len = usize::try_from(text_len).map_err(|_| Error::Authentication)?;
    let text =
        std::str::from_utf8(text.get(..text_len).ok_or(Error::Authentication)?).map_err(|_| Error::Authentication)?;
    let mut out = Zeroizing::new(String::with_capacity(text.len()));
    out.push_str(text);
    Ok(out)
}

// The checks below run on masks: `u32` values that are all ones for true and
// zero for false, computed with arithmetic only (no branch and no memory
// index depends on a secret), in loops over every byte whatever the lengths.
// `subtle` would do the same through an optimisation barrier on every
// operation, which made the reader 30 times slower; its `Choice` takes over
// for the final decision.

/// `i` as a `u64` (lengths here are at most [`MAX_LEGACY_RECORD_LEN`]).
fn pos(i: usize) -> u64 {
    u64::try_from(i).unwrap_or(u64::MAX)
}

/// All ones if `a < b`, for `a` and `b` below 2^63.
fn lt(a: u64, b: u64) -> u32 {
    0u32.wrapping_sub(u32::from(a.wrapping_sub(b) >> 63 == 1))
}

/// All ones if `a == b`.
fn eq(a: u64, b: u64) -> u32 {
    !(lt(a, b) | lt(b, a))
}

/// All ones if `lo <= c <= hi`.
fn in_range(c: u8, lo: u8, hi: u8) -> u32 {
    let c = i32::from(c);
    let outside = (c - i32::from(lo)) | (i32::from(hi) - c);
    // The sign bit is set exactly when one side is negative.
    (!outside >> 31).cast_unsigned()
}

/// `if mask { a } else { b }` for a mask from the functions above.
fn select(mask: u32, a: u32, b: u32) -> u32 {
    (a & mask) | (b & !mask)
}

/// The low byte of a value known to fit in one.
fn low(v: u32) -> u8 {
    v.to_le_bytes()[0]
}

/// PKCS#7 unpadding in constant time: the length without the padding and
/// whether the padding was valid. The last 16 bytes are always all read; a
/// bad padding byte yields a length as if 16 bytes were padding, so the work
/// that follows is the same.
fn unpad(padded: &[u8]) -> (u64, Choice) {
    let total = pos(padded.len());
    let Some(&last) = padded.last() else {
        return (0, Choice::from(0));
    };
    let mut valid = in_range(last, 1, 16);
    for (i, &byte) in padded.iter().rev().take(16).enumerate() {
        let in_padding = lt(pos(i), u64::from(last));
        valid &= !in_padding | eq(u64::from(byte), u64::from(last));
    }
    let valid = Choice::from(low(valid & 1));
    let pad = u64::conditional_select(&16, &u64::from(last), valid);
    (total.saturating_sub(pad), valid)
}

/// One base64 character: its 6-bit value and a mask saying whether it is in
/// the standard alphabet, without branches or table lookups.
fn base64_value(c: u8) -> (u32, u32) {
    let upper = in_range(c, b'A', b'Z');
    let lower = in_range(c, b'a', b'z');
    let digit = in_range(c, b'0', b'9');
    let plus = in_range(c, b'+', b'+');
    let slash = in_range(c, b'/', b'/');
    let c = u32::from(c);
    let value = (c.wrapping_sub(u32::from(b'A')) & upper)
        | (c.wrapping_sub(u32::from(b'a')).wrapping_add(26) & lower)
        | (c.wrapping_sub(u32::from(b'0')).wrapping_add(52) & digit)
        | (62 & plus)
        | (63 & slash);
    (value & 0x3f, upper | lower | digit | plus | slash)
}

/// Decodes `input[..len]` as canonical padded standard base64 (what
/// `base64`'s `STANDARD` engine accepts), in constant time: every byte of
/// `input` is visited the same way whatever `len` and the contents are.
/// Returns the decoded bytes (a buffer of fixed size), their length and
/// whether the input was valid.
fn decode_base64(input: &[u8], len: u64) -> (Zeroizing<Vec<u8>>, u64, Choice) {
    let mut valid = eq(len & 3, 0);
    // The padding characters: at len - 1 and len - 2.
    let (mut last, mut second_last) = (0u32, 0u32);
    for (i, &c) in input.iter().enumerate() {
        last = select(eq(pos(i) + 1, len), u32::from(c), last);
        second_last = select(eq(pos(i) + 2, len), u32::from(c), second_last);
    }
    let one = eq(u64::from(last), u64::from(b'='));
    let two = one & eq(u64::from(second_last), u64::from(b'='));
    let padding = u64::from(one & 1) + u64::from(two & 1);
    let data_end = len.wrapping_sub(padding);

    let mut out = Zeroizing::new(vec![0u8; input.len() / 4 * 3]);
    let mut last_value = 0u32;
    for (quad, (chunk, bytes)) in input.chunks_exact(4).zip(out.chunks_exact_mut(3)).enumerate() {
        let mut values = [0u32; 4];
        for (k, (&c, value)) in chunk.iter().zip(values.iter_mut()).enumerate() {
            let i = pos(quad * 4 + k);
            let (v, alphabet) = base64_value(c);
            let in_data = lt(i, data_end);
            let in_padding = !in_data & lt(i, len);
            valid &= !in_data | alphabet;
            valid &= !in_padding | in_range(c, b'=', b'=');
            *value = v & in_data;
            last_value = select(eq(i + 1, data_end), v, last_value);
        }
        bytes[0] = low((values[0] << 2) | (values[1] >> 4));
        bytes[1] = low((values[1] << 4) | (values[2] >> 2));
        bytes[2] = low((values[2] << 6) | values[3]);
    }
    // Canonical: the bits the last character carries beyond the output are zero.
    let unused_bits = (0x03 & one & !two) | (0x0f & two);
    valid &= eq(u64::from(last_value & unused_bits), 0);
    let valid = Choice::from(low(valid & 1));
    let decoded_len = (len >> 2).wrapping_mul(3).wrapping_sub(padding);
    (out, u64::conditional_select(&0, &decoded_len, valid), valid)
}

/// Whether `bytes[..len]` is UTF-8 (as `std::str::from_utf8` judges it:
/// shortest forms only, no surrogates, nothing above U+10FFFF), in constant
/// time: every byte of `bytes` is visited the same way.
fn utf8_valid(bytes: &[u8], len: u64) -> Choice {
    let mut valid = u32::MAX;
    // Continuation bytes still expected, and the range the next one must be in.
    let (mut need, mut lo, mut hi) = (0u32, 0x80u32, 0xbfu32);
    for (i, &b) in bytes.iter().enumerate() {
        let active = lt(pos(i), len);
        let expecting = !eq(u64::from(need), 0);
        let continuation_ok = in_range(b, low(lo), low(hi));
        let ascii = in_range(b, 0, 0x7f);
        let lead2 = in_range(b, 0xc2, 0xdf);
        let lead3 = in_range(b, 0xe0, 0xef);
        let lead4 = in_range(b, 0xf0, 0xf4);
        let lead = !expecting;
        let bad = (expecting & !continuation_ok) | (lead & !(ascii | lead2 | lead3 | lead4));
        valid &= !active | !bad;

        // After a lead byte: how many continuation bytes follow, and the
        // range of the first, which rules out overlong forms, surrogates and
        // code points past U+10FFFF. After a continuation byte: one fewer.
        let lead_need = (1 & lead2) | (2 & lead3) | (3 & lead4);
        let lead_lo = select(in_range(b, 0xe0, 0xe0), 0xa0, select(in_range(b, 0xf0, 0xf0), 0x90, 0x80));
        let lead_hi = select(in_range(b, 0xed, 0xed), 0x9f, select(in_range(b, 0xf4, 0xf4), 0x8f, 0xbf));
        let next_need = select(lead, lead_need, need.wrapping_sub(1) & 3);
        let next_lo = select(lead, lead_lo, 0x80);
        let next_hi = select(lead, lead_hi, 0xbf);

        need = select(active, next_need, need);
        lo = select(active, next_lo, lo);
        hi = select(active, next_hi, hi);
    }
    valid &= eq(u64::from(need), 0);
    Choice::from(low(valid & 1))
}

/// Writes a legacy record. **For test fixtures only** (MUST 11.2), so only
/// with the `internals` feature: the scheme is unauthenticated, and callers
/// that pass a fixed IV reproduce the blog's IV reuse.
#[cfg(feature = "internals")]
#[doc(hidden)]
pub fn encrypt_legacy_record_for_fixtures(
    data_key: &DataKey,
    iv: &[u8; 16],
    text: &str,
    inner: InnerEncoding,
) -> String {
    let inner_bytes = match inner {
        InnerEncoding::Base64 => STANDARD.encode(text.as_bytes()).into_bytes(),
        InnerEncoding::Raw => text.as_bytes().to_vec(),
    };
    let mut raw = iv.to_vec();
    raw.extend_from_slice(&Cbc::encrypt_for_fixtures(data_key.expose_secret(), iv, &inner_bytes));
    STANDARD.encode(raw)
}

/// Whether `text` could be a legacy record: base64 of an IV and at least one
/// whole block. Only a hint: there is no magic to check.
pub fn looks_like_legacy_record(text: &str) -> bool {
    let text = text.trim_ascii();
    text.len() >= 44
        && text.len().is_multiple_of(4)
        && STANDARD.decode(text).is_ok_and(|raw| raw.len() >= 32 && raw.len() % 16 == 0)
}
