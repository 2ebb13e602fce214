//! The encryption context: non-secret key-value pairs bound to a message.

use std::collections::BTreeMap;
use std::fmt;

use crate::codec::{Reader, put_vec16};
use crate::error::{Error, FormatError};

/// Most pairs an encryption context may hold (MUST 4.2).
pub const MAX_CONTEXT_PAIRS: usize = 64;
/// Longest key or value, in bytes of UTF-8 (MUST 4.2).
pub const MAX_CONTEXT_FIELD_LEN: usize = 1024;

/// UTF-8 key-value pairs, kept sorted so their encoding is canonical.
///
/// The context is authenticated as associated data of the body and handed
/// to keyrings; AWS KMS uses it as its own encryption context. It is not
/// secret: never put secrets in it.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct EncryptionContext {
    pairs: BTreeMap<String, String>,
}

impl EncryptionContext {
    /// An empty context.
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds a context from pairs, checking the limits of MUST 4.2.
    ///
    /// # Errors
    /// [`Error::Context`] when a key is empty or repeated, a field is too
    /// long, or there are too many pairs.
    pub fn from_pairs<K, V>(pairs: impl IntoIterator<Item = (K, V)>) -> Result<Self, Error>
    where
        K: Into<String>,
        V: Into<String>,
    {
        let mut ctx = Self::new();
        for (k, v) in pairs {
            ctx.insert(k, v)?;
        }
        Ok(ctx)
    }

    /// Adds one pair.
    ///
    /// # Errors
    /// [`Error::Context`] when the key is empty or already present, a field
    /// is too long, or the context is full.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<String>) -> Result<(), Error> {
        let (key, value) = (key.into(), value.into());
        if key.is_empty() {
            return Err(Error::Context("a key is empty"));
        }
        if key.len() > MAX_CONTEXT_FIELD_LEN || value.len() > MAX_CONTEXT_FIELD_LEN {
            return Err(Error::Context("a key or value is longer than 1024 bytes"));
        }
        if self.pairs.len() >= MAX_CONTEXT_PAIRS {
            return Err(Error::Context("more than 64 pairs"));
        }
        if self.pairs.contains_key(&key) {
            return Err(Error::Context("a key appears twice"));
        }
        self.pairs.insert(key, value);
        Ok(())
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs.get(key).map(String::as_str)
    }

    /// The pairs in canonical (byte-wise sorted) order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// Whether there are no pairs.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// Checks that every pair of `expected` is present here with the same
    /// value. Extra pairs in `self` are allowed, as in the AWS Encryption CLI.
    ///
    /// # Errors
    /// [`Error::ContextMismatch`] naming the first key that differs.
    pub fn require(&self, expected: &EncryptionContext) -> Result<(), Error> {
        for (k, v) in expected.iter() {
            if self.get(k) != Some(v) {
                return Err(Error::ContextMismatch { key: k.to_owned() });
            }
        }
        Ok(())
    }

    /// Appends the canonical encoding (MUST 4.1).
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        // The pair count is at most 64, so it fits a u16.
        let count = u16::try_from(self.pairs.len()).expect("at most 64 pairs");
        out.extend_from_slice(&count.to_be_bytes());
        for (k, v) in &self.pairs {
            put_vec16(out, k.as_bytes());
            put_vec16(out, v.as_bytes());
        }
    }

    /// Reads a canonical encoding, rejecting any other order (MUST 4.1, 4.2).
    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, FormatError> {
        let mut pairs = BTreeMap::new();
        read_pairs(r, |k, v| {
            pairs.insert(k.to_owned(), v.to_owned());
        })?;
        Ok(Self { pairs })
    }

    /// Checks a canonical encoding as [`EncryptionContext::read`] does,
    /// without copying it out.
    pub(crate) fn check(r: &mut Reader<'_>) -> Result<(), FormatError> {
        read_pairs(r, |_, _| {})
    }
}

/// Walks an encoded context, checking every rule, and hands each pair to `each`.
fn read_pairs<'a>(r: &mut Reader<'a>, mut each: impl FnMut(&'a str, &'a str)) -> Result<(), FormatError> {
    let count = usize::from(r.u16("encryption context count")?);
    if count > MAX_CONTEXT_PAIRS {
        return Err(FormatError::TooLong { field: "encryption context", len: count, max: MAX_CONTEXT_PAIRS });
    }
    let mut previous: Option<&[u8]> = None;
    for _ in 0..count {
        let k = r.vec16("encryption context key", MAX_CONTEXT_FIELD_LEN)?;
        let v = r.vec16("encryption context value", MAX_CONTEXT_FIELD_LEN)?;
        if k.is_empty() {
            return Err(FormatError::EmptyContextKey);
        }
        if previous.is_some_and(|p| p >= k) {
            return Err(FormatError::ContextNotCanonical);
        }
        previous = Some(k);
        let k = std::str::from_utf8(k).map_err(|_| FormatError::NotUtf8("encryption context key"))?;
        let v = std::str::from_utf8(v).map_err(|_| FormatError::NotUtf8("encryption context value"))?;
        each(k, v);
    }
    Ok(())
}

impl fmt::Debug for EncryptionContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.pairs.iter()).finish()
    }
}

impl<'a> IntoIterator for &'a EncryptionContext {
    type Item = (&'a String, &'a String);
    type IntoIter = std::collections::btree_map::Iter<'a, String, String>;
    fn into_iter(self) -> Self::IntoIter {
        self.pairs.iter()
    }
}
