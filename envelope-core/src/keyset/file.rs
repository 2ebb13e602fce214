//! The keyset file (docs/format.md §12.3): UTF-8 text, one item per line,
//! exactly one encoding per keyset.
//!
//! ```text
//! rekey-keyset v1
//! keyset 00112233445566778899aabbccddeeff
//! primary 1a2b3c4d
//! key 1a2b3c4d records created 1764000000 commitment <64 hex>
//! wrap aws-kms arn:aws:kms:…:key/… <base64 CiphertextBlob>
//! wrap rekey-local app/v1 <base64>
//! ```

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::error::FormatError;
use crate::key::{EncryptedDataKey, MAX_KEY_ID_LEN, MAX_PROVIDER_ID_LEN, MAX_WRAPPED_KEY_LEN};

use super::key::{
    KEY_COMMITMENT_LEN, KEYSET_ID_LEN, KeyId, KeyPurpose, KeysetId, KeysetKey, MAX_KEYSET_KEYS, MAX_WRAPS_PER_KEY,
    is_token,
};
use super::set::Keyset;

/// The first line of a keyset file (MUST 12.2).
pub const KEYSET_FILE_TAG: &str = "rekey-keyset v1";
/// The longest keyset file read, in bytes (MUST 12.4).
pub const MAX_KEYSET_FILE_LEN: usize = 4 << 20;

pub(crate) fn encode(keyset: &Keyset) -> String {
    let mut out = String::new();
    out.push_str(KEYSET_FILE_TAG);
    out.push_str("\nkeyset ");
    out.push_str(&keyset.id.to_string());
    out.push_str("\nprimary ");
    match keyset.primary {
        Some(id) => out.push_str(&id.to_string()),
        None => out.push_str("none"),
    }
    out.push('\n');
    for key in &keyset.keys {
        out.push_str(&format!(
            "key {} {} created {} commitment {}\n",
            key.id,
            key.purpose.as_str(),
            key.created,
            hex(&key.commitment)
        ));
        for wrap in &key.wraps {
            out.push_str("wrap ");
            out.push_str(wrap.provider_id());
            out.push(' ');
            out.push_str(wrap.key_id());
            out.push(' ');
            STANDARD.encode_string(wrap.wrapped(), &mut out);
            out.push('\n');
        }
    }
    out
}

pub(crate) fn parse(text: &str) -> Result<Keyset, FormatError> {
    if text.len() > MAX_KEYSET_FILE_LEN {
        return Err(FormatError::TooLong { field: "keyset file", len: text.len(), max: MAX_KEYSET_FILE_LEN });
    }
    let Some(body) = text.strip_suffix('\n') else {
        return Err(FormatError::Keyset {
            line: text.lines().count().max(1),
            problem: "the file does not end with a newline",
        });
    };
    let mut lines = body.split('\n').enumerate().map(|(i, l)| (i + 1, l));
    let mut next = |what: &'static str| lines.next().ok_or(FormatError::Keyset { line: 0, problem: what });
    let (_, tag) = next("the file is empty")?;
    if tag != KEYSET_FILE_TAG {
        return Err(bad(1, "the first line is not `rekey-keyset v1` (not a keyset file, or a newer version)"));
    }
    let (n, line) = next("the `keyset` line is missing")?;
    let id = line.strip_prefix("keyset ").ok_or(bad(n, "expected `keyset ID`"))?;
    let id = KeysetId(unhex::<KEYSET_ID_LEN>(id).ok_or(bad(n, "the keyset id is not 32 lowercase hex digits"))?);
    let (n, line) = next("the `primary` line is missing")?;
    let primary = match line.strip_prefix("primary ").ok_or(bad(n, "expected `primary KEY-ID` or `primary none`"))? {
        "none" => None,
        word => Some(word.parse::<KeyId>().map_err(|_| bad(n, "the primary is not 8 lowercase hex digits"))?),
    };
    let mut keyset = Keyset { id, primary, keys: Vec::new() };
    for (n, line) in lines {
        let mut words = line.split(' ');
        match words.next() {
            Some("key") => {
                if keyset.keys.last().is_some_and(|k| k.wraps.is_empty()) {
                    return Err(bad(n, "the key before this line has no `wrap` line"));
                }
                if keyset.keys.len() >= MAX_KEYSET_KEYS {
                    return Err(bad(n, "more than 256 keys"));
                }
                let fields: Vec<&str> = words.collect();
                let [id, purpose, "created", created, "commitment", commitment] = fields[..] else {
                    return Err(bad(n, "expected `key ID PURPOSE created SECONDS commitment HEX`"));
                };
                let id: KeyId = id.parse().map_err(|_| bad(n, "the key id is not 8 lowercase hex digits"))?;
                if keyset.key(id).is_some() {
                    return Err(bad(n, "this key id appears twice"));
                }
                let purpose = KeyPurpose::parse(purpose).ok_or(bad(n, "unknown purpose (records, legacy-cbc)"))?;
                if purpose == KeyPurpose::LegacyCbc && keyset.keys.iter().any(|k| k.purpose == purpose) {
                    return Err(bad(n, "a second legacy-cbc key; a keyset holds at most one"));
                }
                let created = decimal(created).ok_or(bad(n, "the creation time is not a decimal number"))?;
                let commitment = unhex::<KEY_COMMITMENT_LEN>(commitment)
                    .ok_or(bad(n, "the commitment is not 64 lowercase hex digits"))?;
                keyset.keys.push(KeysetKey { id, purpose, created, commitment, wraps: Vec::new() });
            }
            Some("wrap") => {
                let key = keyset.keys.last_mut().ok_or(bad(n, "a `wrap` line before any `key` line"))?;
                if key.wraps.len() >= MAX_WRAPS_PER_KEY {
                    return Err(bad(n, "more than 16 wrapped copies of one key"));
                }
                let fields: Vec<&str> = words.collect();
                let [provider, key_id, wrapped] = fields[..] else {
                    return Err(bad(n, "expected `wrap PROVIDER KEY-ID BASE64`"));
                };
                if !is_token(provider) || provider.len() > MAX_PROVIDER_ID_LEN {
                    return Err(bad(n, "the provider id is empty, too long or not printable ASCII"));
                }
                if !is_token(key_id) || key_id.len() > MAX_KEY_ID_LEN {
                    return Err(bad(n, "the wrapping key id is empty, too long or not printable ASCII"));
                }
                // Checked before decoding, so nothing large is allocated.
                if wrapped.len() > MAX_WRAPPED_KEY_LEN.div_ceil(3) * 4 {
                    return Err(bad(n, "the wrapped key is longer than 6144 bytes"));
                }
                let wrapped =
                    STANDARD.decode(wrapped).map_err(|_| bad(n, "the wrapped key is not canonical base64"))?;
                if wrapped.is_empty() {
                    return Err(bad(n, "the wrapped key is empty"));
                }
                let edk = EncryptedDataKey::new(provider, key_id, wrapped)
                    .map_err(|_| bad(n, "the wrapped key breaks a length limit"))?;
                if key.wraps.contains(&edk) {
                    return Err(bad(n, "the same wrapped copy appears twice"));
                }
                key.wraps.push(edk);
            }
            _ => return Err(bad(n, "expected a `key` or `wrap` line")),
        }
    }
    if keyset.keys.last().is_some_and(|k| k.wraps.is_empty()) {
        return Err(bad(body.split('\n').count(), "the last key has no `wrap` line"));
    }
    if let Some(primary) = keyset.primary {
        let line = 3;
        match keyset.key(primary) {
            Some(k) if k.purpose == KeyPurpose::Records => {}
            Some(_) => return Err(bad(line, "the primary is a legacy-cbc key, which cannot encrypt")),
            None => return Err(bad(line, "the primary names a key the file does not have")),
        }
    }
    // Anything the checks above let through but the writer would spell
    // differently (a leading zero, a `+`) is refused: one encoding per keyset.
    let again = encode(&keyset);
    if again != text {
        let line = again.split('\n').zip(text.split('\n')).position(|(a, b)| a != b).map_or(0, |i| i + 1);
        return Err(bad(line, "the line is not in canonical form (as `rekey keyset` writes it)"));
    }
    Ok(keyset)
}

fn bad(line: usize, problem: &'static str) -> FormatError {
    FormatError::Keyset { line, problem }
}

fn decimal(s: &str) -> Option<u64> {
    let canonical = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    canonical.then(|| s.parse().ok()).flatten()
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != 2 * N || !s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return None;
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

impl Keyset {
    /// The keyset file's text (docs/format.md §12.3). Holds no secret.
    pub fn to_text(&self) -> String {
        encode(self)
    }

    /// Parses a keyset file (MUST 12.2 to 12.4). No keyring is called.
    ///
    /// # Errors
    /// [`FormatError::Keyset`] naming the line and what is wrong.
    pub fn from_text(text: &str) -> Result<Self, FormatError> {
        parse(text)
    }
}
