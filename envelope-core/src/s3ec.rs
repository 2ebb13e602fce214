//! The content metadata of objects written by the Amazon S3 Encryption
//! Client (formats V1, V2 and V3), read without any key.
//!
//! The client keeps what decryption needs in the object's user metadata
//! (`x-amz-meta-` names, given here without that prefix) or, on request, in
//! an instruction file: a separate object (by default `KEY.instruction`)
//! whose whole body is a JSON object of the same entries. V3 keeps the
//! content entries (`x-amz-c`, `x-amz-d`, `x-amz-i`) in the object's metadata
//! even then.
//!
//! [`parse`] gives the format version, the key wrapping, the content cipher,
//! the wrapped data key, the name of the entry holding it (so a re-wrap
//! replaces exactly that one) and, for KMS wrapping, the encryption context
//! exactly as the client sends it to KMS: the stored context map, which the
//! client wrote with its reserved `aws:x-amz-cek-alg` pair (`kms+context`,
//! from `x-amz-matdesc` in V2 and `x-amz-t` in V3) or which holds
//! `kms_cmk_id` (legacy `kms`). Nothing here is authenticated: KMS checks
//! the context when it opens the key.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// V1's wrapped key entry.
pub const KEY_V1: &str = "x-amz-key";
/// V2's wrapped key entry.
pub const KEY_V2: &str = "x-amz-key-v2";
/// V3's wrapped key entry.
pub const KEY_V3: &str = "x-amz-3";
/// The entry marking an instruction file (on the instruction file object).
pub const INSTRUCTION_FILE_MARK: &str = "x-amz-crypto-instr-file";
/// The default instruction file suffix.
pub const DEFAULT_INSTRUCTION_SUFFIX: &str = ".instruction";
/// The reserved context key the client adds for `kms+context`.
pub const CEK_ALG_CONTEXT_KEY: &str = "aws:x-amz-cek-alg";
/// The context key of the legacy `kms` wrapping.
pub const KMS_CMK_ID_CONTEXT_KEY: &str = "kms_cmk_id";
/// The longest wrapped key accepted (KMS ciphertexts are at most 6 KiB).
pub const MAX_WRAPPED_KEY_LEN: usize = 8192;
/// The longest instruction file read.
pub const MAX_INSTRUCTION_FILE_LEN: usize = 64 << 10;

const V1_ONLY: &[&str] = &[KEY_V1];
const V2_ONLY: &[&str] = &[KEY_V2];
/// V1/V2 entries a V3 object must not have.
const V1_V2: &[&str] = &[KEY_V1, KEY_V2, "x-amz-wrap-alg", "x-amz-cek-alg", "x-amz-matdesc", "x-amz-tag-len"];
const V3_ONLY: &[&str] = &["x-amz-c", KEY_V3, "x-amz-m", "x-amz-t", "x-amz-w", "x-amz-d", "x-amz-i"];
/// V3 entries that must stay in the object's metadata.
const V3_OBJECT_ONLY: &[&str] = &["x-amz-c", "x-amz-d", "x-amz-i"];

/// The content metadata format version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FormatVersion {
    /// `x-amz-key`: the original format.
    V1,
    /// `x-amz-key-v2`.
    V2,
    /// `x-amz-3` and the other compressed names: key-committing.
    V3,
}

impl std::fmt::Display for FormatVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::V1 => "V1",
            Self::V2 => "V2",
            Self::V3 => "V3",
        })
    }
}

/// How the data key is wrapped.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Wrapping {
    /// `kms+context` (V3: `12`): KMS, under the stored encryption context.
    KmsContext,
    /// `kms`: legacy KMS, the context being `{"kms_cmk_id": KEY}`.
    KmsLegacy,
    /// A raw keyring (`AES/GCM`, `AESWrap`, RSA, or V1's unnamed wrapping),
    /// named as stored.
    Raw(String),
}

impl Wrapping {
    fn from_name(name: &str) -> Self {
        match name {
            "kms+context" => Self::KmsContext,
            "kms" => Self::KmsLegacy,
            other => Self::Raw(other.to_owned()),
        }
    }
}

impl std::fmt::Display for Wrapping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::KmsContext => f.write_str("kms+context"),
            Self::KmsLegacy => f.write_str("kms"),
            Self::Raw(name) => f.write_str(name),
        }
    }
}

/// How the content is encrypted.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ContentCipher {
    /// `AES/CBC/PKCS5Padding`: unauthenticated.
    AesCbc,
    /// `AES/GCM/NoPadding`: authenticated, no key commitment.
    AesGcm,
    /// `115`: AES-256-GCM with HKDF-SHA512 and key commitment.
    AesGcmCommitting,
}

impl ContentCipher {
    fn from_name(name: &str) -> Option<Self> {
        match name {
            "AES/CBC/PKCS5Padding" => Some(Self::AesCbc),
            "AES/GCM/NoPadding" => Some(Self::AesGcm),
            "115" => Some(Self::AesGcmCommitting),
            _ => None,
        }
    }

    /// Whether the content is authenticated (CBC is not: migrate it).
    pub fn authenticated(&self) -> bool {
        !matches!(self, Self::AesCbc)
    }
}

impl std::fmt::Display for ContentCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::AesCbc => "AES/CBC/PKCS5Padding",
            Self::AesGcm => "AES/GCM/NoPadding",
            Self::AesGcmCommitting => "115 (AES-256-GCM, HKDF-SHA512, key commitment)",
        })
    }
}

/// Where the wrapped key is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    /// In the object's own metadata.
    ObjectMetadata,
    /// In the instruction file.
    InstructionFile,
}

/// An object's content metadata, as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct ContentMetadata {
    /// The format version.
    pub version: FormatVersion,
    /// The key wrapping.
    pub wrapping: Wrapping,
    /// The content cipher.
    pub cipher: ContentCipher,
    /// The wrapped data key (decoded from base64).
    pub wrapped_key: Vec<u8>,
    /// The entry holding the wrapped key, in base64: [`KEY_V1`], [`KEY_V2`] or [`KEY_V3`].
    pub key_entry: &'static str,
    /// Where that entry is.
    pub location: Location,
    /// The stored context or material description (`x-amz-matdesc`, or V3's
    /// `x-amz-t` for KMS and `x-amz-m` otherwise); empty when absent.
    pub stored_context: BTreeMap<String, String>,
    /// V3's key commitment (`x-amz-d`).
    pub key_commitment: Option<Vec<u8>>,
    /// V3's message id (`x-amz-i`).
    pub message_id: Option<Vec<u8>>,
}

impl std::fmt::Debug for ContentMetadata {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContentMetadata")
            .field("version", &self.version)
            .field("wrapping", &self.wrapping)
            .field("cipher", &self.cipher)
            .field("key_entry", &self.key_entry)
            .field("location", &self.location)
            .field("wrapped_key_len", &self.wrapped_key.len())
            .finish_non_exhaustive()
    }
}

/// V3's key commitment length.
pub const KEY_COMMITMENT_LEN: usize = 28;
/// The V3 content suite id (`115`, `0x0073`), as the key derivation takes it.
const COMMITTING_SUITE_ID: [u8; 2] = [0x00, 0x73];

/// The V3 key commitment of `data_key` under `message_id`: HKDF-SHA512
/// (salt the message id), expanded with the suite id and `COMMITKEY`.
pub fn key_commitment(data_key: &[u8], message_id: &[u8]) -> [u8; KEY_COMMITMENT_LEN] {
    let hkdf = hkdf::Hkdf::<sha2::Sha512>::new(Some(message_id), data_key);
    let mut info = [0u8; 11];
    info[..2].copy_from_slice(&COMMITTING_SUITE_ID);
    info[2..].copy_from_slice(b"COMMITKEY");
    let mut commitment = [0u8; KEY_COMMITMENT_LEN];
    // 28 bytes is far below HKDF-SHA512's limit, so expansion cannot fail.
    let _ = hkdf.expand(&info, &mut commitment);
    commitment
}

impl ContentMetadata {
    /// Whether `data_key` is the key a V3 object's stored commitment
    /// (`x-amz-d`) was made for, compared in constant time. `None` for V1
    /// and V2, which commit to nothing.
    pub fn commits_to(&self, data_key: &[u8]) -> Option<bool> {
        use subtle::ConstantTimeEq as _;
        let (stored, message_id) = (self.key_commitment.as_ref()?, self.message_id.as_ref()?);
        Some(bool::from(key_commitment(data_key, message_id).ct_eq(stored.as_slice())))
    }

    /// The encryption context the client sends to KMS for this object: the
    /// stored map as it is, for `kms+context` and the legacy `kms`. `None`
    /// for raw keyrings.
    pub fn kms_context(&self) -> Option<&BTreeMap<String, String>> {
        matches!(self.wrapping, Wrapping::KmsContext | Wrapping::KmsLegacy).then_some(&self.stored_context)
    }
}

/// What an object's own metadata says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// No S3 Encryption Client entries at all: an ordinary object, or one
    /// whose V1/V2 metadata is all in an instruction file.
    NotMarked,
    /// V3 content entries without the wrapped key: it is in the instruction file.
    InstructionFile,
    /// Complete in the object's metadata.
    Complete(Box<ContentMetadata>),
}

/// Why metadata could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3ecError(pub String);

impl std::fmt::Display for S3ecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for S3ecError {}

fn bad(message: impl Into<String>) -> S3ecError {
    S3ecError(message.into())
}

/// Reads an object's user metadata (names without `x-amz-meta-`, as S3
/// returns them, lowercase).
///
/// # Errors
/// Entries of more than one format version, a missing required entry, a
/// value that is not what the format says (base64, a JSON map of strings,
/// a known cipher).
pub fn parse(metadata: &BTreeMap<String, String>) -> Result<Status, S3ecError> {
    let has = |name: &str| metadata.contains_key(name);
    let keys = [KEY_V1, KEY_V2, KEY_V3].iter().filter(|k| has(k)).count();
    if keys > 1 {
        return Err(bad(
            "the object has the wrapped-key entries of more than one format version (x-amz-key, x-amz-key-v2, x-amz-3)",
        ));
    }
    if has(KEY_V1) || has(KEY_V2) || has(KEY_V3) {
        return from_entries(&|n| metadata.get(n).map(String::as_str), Location::ObjectMetadata)
            .map(|m| Status::Complete(Box::new(m)));
    }
    if V3_OBJECT_ONLY.iter().any(|n| has(n)) {
        return Ok(Status::InstructionFile);
    }
    Ok(Status::NotMarked)
}

/// Reads the content metadata of an object whose wrapped key is in an
/// instruction file: `object` is the object's metadata, `instruction` the
/// instruction file's body.
///
/// # Errors
/// As [`parse`]; also an instruction file that is not a JSON object of
/// strings, is larger than [`MAX_INSTRUCTION_FILE_LEN`], or holds V3
/// entries that belong in the object's metadata (a sign of tampering).
pub fn parse_with_instruction_file(
    object: &BTreeMap<String, String>,
    instruction: &[u8],
) -> Result<ContentMetadata, S3ecError> {
    if instruction.len() > MAX_INSTRUCTION_FILE_LEN {
        return Err(bad(format!("the instruction file is larger than {MAX_INSTRUCTION_FILE_LEN} bytes")));
    }
    let file = string_map(instruction, "the instruction file")?;
    if let Some(name) = V3_OBJECT_ONLY.iter().find(|n| file.contains_key(**n)) {
        return Err(bad(format!(
            "the instruction file holds {name}, which V3 keeps in the object's metadata only: it may have been tampered with"
        )));
    }
    // The object's V3 content entries, with everything else from the file.
    let lookup =
        |name: &str| if V3_OBJECT_ONLY.contains(&name) { object.get(name) } else { file.get(name) }.map(String::as_str);
    let v3_content = V3_OBJECT_ONLY.iter().any(|n| object.contains_key(*n));
    if v3_content && !file.contains_key(KEY_V3) {
        return Err(bad("the object has V3 content entries but its instruction file has no x-amz-3"));
    }
    if !v3_content && file.contains_key(KEY_V3) {
        return Err(bad(
            "the instruction file has x-amz-3 but the object has no V3 content entries (x-amz-c, x-amz-d, x-amz-i)",
        ));
    }
    let keys = [KEY_V1, KEY_V2, KEY_V3].iter().filter(|k| file.contains_key(**k)).count();
    if keys != 1 {
        return Err(bad(
            "the instruction file must hold exactly one wrapped-key entry (x-amz-key, x-amz-key-v2 or x-amz-3)",
        ));
    }
    from_entries(&lookup, Location::InstructionFile)
}

fn from_entries<'a>(get: &dyn Fn(&str) -> Option<&'a str>, location: Location) -> Result<ContentMetadata, S3ecError> {
    let (version, key_entry) = if get(KEY_V3).is_some() {
        (FormatVersion::V3, KEY_V3)
    } else if get(KEY_V2).is_some() {
        (FormatVersion::V2, KEY_V2)
    } else {
        (FormatVersion::V1, KEY_V1)
    };
    let others: &[&[&str]] = match version {
        FormatVersion::V1 => &[V2_ONLY, V3_ONLY],
        FormatVersion::V2 => &[V1_ONLY, V3_ONLY],
        FormatVersion::V3 => &[V1_V2],
    };
    if let Some(name) = others.iter().flat_map(|o| o.iter()).find(|n| get(n).is_some()) {
        return Err(bad(format!("a {version} object with the entry {name} of another format version")));
    }
    let required = |name: &str| get(name).ok_or_else(|| bad(format!("a {version} object without its {name} entry")));
    let wrapped_key = decode(required(key_entry)?, key_entry)?;
    if wrapped_key.is_empty() || wrapped_key.len() > MAX_WRAPPED_KEY_LEN {
        return Err(bad(format!("{key_entry} holds {} bytes, not a wrapped data key", wrapped_key.len())));
    }
    let mut meta = ContentMetadata {
        version,
        wrapping: Wrapping::Raw(String::new()),
        cipher: ContentCipher::AesCbc,
        wrapped_key,
        key_entry,
        location,
        stored_context: BTreeMap::new(),
        key_commitment: None,
        message_id: None,
    };
    match version {
        FormatVersion::V1 | FormatVersion::V2 => {
            decode(required("x-amz-iv")?, "x-amz-iv")?;
            meta.stored_context = match get("x-amz-matdesc") {
                Some(text) => string_map(text.as_bytes(), "x-amz-matdesc")?,
                None if version == FormatVersion::V1 => return Err(bad("a V1 object without its x-amz-matdesc entry")),
                None => BTreeMap::new(),
            };
            if version == FormatVersion::V2 {
                meta.wrapping = Wrapping::from_name(required("x-amz-wrap-alg")?);
                let cek = required("x-amz-cek-alg")?;
                meta.cipher = ContentCipher::from_name(cek)
                    .filter(|c| *c != ContentCipher::AesGcmCommitting)
                    .ok_or_else(|| bad(format!("x-amz-cek-alg {cek:?} is not a V2 content cipher")))?;
            } else {
                meta.cipher = match get("x-amz-cek-alg") {
                    None => ContentCipher::AesCbc,
                    Some(cek) => ContentCipher::from_name(cek)
                        .filter(|c| *c != ContentCipher::AesGcmCommitting)
                        .ok_or_else(|| bad(format!("x-amz-cek-alg {cek:?} is not a V1 content cipher")))?,
                };
                // V1 may name no wrapping: `kms` is told by its context.
                meta.wrapping = match get("x-amz-wrap-alg") {
                    Some(name) => Wrapping::from_name(name),
                    None if meta.stored_context.contains_key(KMS_CMK_ID_CONTEXT_KEY) => Wrapping::KmsLegacy,
                    None => Wrapping::Raw("AES/ECB or RSA (V1, unnamed)".into()),
                };
            }
        }
        FormatVersion::V3 => {
            let cek = required("x-amz-c")?;
            meta.cipher = ContentCipher::from_name(cek)
                .filter(|c| *c == ContentCipher::AesGcmCommitting)
                .ok_or_else(|| bad(format!("x-amz-c {cek:?} is not a V3 content cipher (115)")))?;
            meta.wrapping = match required("x-amz-w")? {
                "12" => Wrapping::KmsContext,
                "02" => Wrapping::Raw("AES/GCM".into()),
                "22" => Wrapping::Raw("RSA-OAEP-SHA1".into()),
                other => return Err(bad(format!("x-amz-w {other:?} is not a V3 wrapping algorithm (02, 12, 22)"))),
            };
            let context_entry = if meta.wrapping == Wrapping::KmsContext { "x-amz-t" } else { "x-amz-m" };
            if let Some(text) = get(context_entry) {
                meta.stored_context = string_map(text.as_bytes(), context_entry)?;
            }
            meta.key_commitment = Some(decode(required("x-amz-d")?, "x-amz-d")?);
            meta.message_id = Some(decode(required("x-amz-i")?, "x-amz-i")?);
        }
    }
    Ok(meta)
}

fn decode(text: &str, name: &str) -> Result<Vec<u8>, S3ecError> {
    STANDARD.decode(text.trim_ascii()).map_err(|_| bad(format!("{name} is not base64")))
}

/// A JSON object whose values are all strings.
fn string_map(bytes: &[u8], name: &str) -> Result<BTreeMap<String, String>, S3ecError> {
    if bytes.len() > MAX_INSTRUCTION_FILE_LEN {
        return Err(bad(format!("{name} is longer than {MAX_INSTRUCTION_FILE_LEN} bytes")));
    }
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| bad(format!("{name} is not JSON: {e}")))?;
    let serde_json::Value::Object(object) = value else {
        return Err(bad(format!("{name} is not a JSON object")));
    };
    let mut map = BTreeMap::new();
    for (k, v) in object {
        let serde_json::Value::String(v) = v else {
            return Err(bad(format!("{name}: the value of {k:?} is not a string")));
        };
        map.insert(k, v);
    }
    Ok(map)
}

/// The instruction file `body` with its wrapped key replaced by
/// `wrapped_key` (base64) and every other entry kept, in its order.
///
/// # Errors
/// The body is not a JSON object, or lacks `key_entry`.
pub fn replace_instruction_key(body: &[u8], key_entry: &str, wrapped_key: &str) -> Result<Vec<u8>, S3ecError> {
    let mut value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| bad(format!("the instruction file is not JSON: {e}")))?;
    let Some(slot) = value.as_object_mut().and_then(|o| o.get_mut(key_entry)) else {
        return Err(bad(format!("the instruction file has no {key_entry}")));
    };
    *slot = serde_json::Value::String(wrapped_key.to_owned());
    serde_json::to_vec(&value).map_err(|e| bad(e.to_string()))
}

#[cfg(test)]
#[path = "s3ec_tests.rs"]
mod tests;
