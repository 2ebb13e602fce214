//! The front door: one [`Encryptor`] built from keyrings, with `encrypt` and
//! `decrypt` for records and streams, in async and blocking forms.

use std::fmt;
use std::io::{Read, Write};
use std::sync::Arc;

use crate::blocking::{Keyrings, Mode, block_on, needs_runtime_error};
use crate::cache::{Cache, CachePolicy};
use crate::context::EncryptionContext;
use crate::envelope::{Envelope, seal};
use crate::error::{Error, KeyringError, KeyringErrorKind};
use crate::header::{DEFAULT_FRAME_LEN, Header, ParseOptions};
use crate::key::DataKey;
use crate::keyring::{Keyring, Materials, generate_materials, unwrap_data_key_checked, verify_commitment};
use crate::plaintext::Plaintext;
use crate::stream::{StreamDecryptor, StreamOptions, encrypt_stream_with};

/// What a decrypting caller expects of an envelope's encryption context,
/// checked before any keyring is asked. The context travels in the clear in
/// the header and is authenticated with the body, so a mismatch is reported
/// as [`Error::ContextMismatch`] naming the key at fault, not as the opaque
/// authentication error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect<'a> {
    /// The envelope's context must be exactly this one: no pair missing,
    /// none different, none extra.
    Exactly(&'a EncryptionContext),
    /// The envelope's context must hold every pair of this one, and may hold
    /// more (the AWS Encryption SDK's required encryption context). An empty
    /// context here accepts any envelope.
    Contains(&'a EncryptionContext),
}

impl Expect<'_> {
    /// Checks an envelope's context.
    ///
    /// # Errors
    /// [`Error::ContextMismatch`] naming the first key (in canonical order)
    /// that is missing, different or, for [`Expect::Exactly`], not expected.
    pub fn check(&self, actual: &EncryptionContext) -> Result<(), Error> {
        match self {
            Self::Contains(required) => actual.require(required),
            Self::Exactly(expected) => {
                if actual == *expected {
                    return Ok(());
                }
                actual.require(expected)?;
                // Every expected pair is there, so some pair is extra.
                let extra = actual.iter().find(|(k, _)| expected.get(k).is_none()).map(|(k, _)| k);
                Err(Error::ContextMismatch { key: extra.unwrap_or_default().to_owned() })
            }
        }
    }
}

/// Encrypts and decrypts with a fixed set of keyrings: the one obvious way
/// in for applications.
///
/// Built once, shared everywhere: it is `Send + Sync`, and a clone is a
/// reference count. Every message gets a fresh random message id (no API
/// here takes one), so nothing a caller does can repeat a nonce.
///
/// - [`encrypt`](Self::encrypt) / [`decrypt`](Self::decrypt) for records,
///   async: any keyring, AWS KMS included;
/// - [`encrypt_sync`](Self::encrypt_sync) / [`decrypt_sync`](Self::decrypt_sync),
///   blocking, for keyrings that need no I/O ([`LocalKeyring`](crate::LocalKeyring));
/// - [`encrypt_stream_sync`](Self::encrypt_stream_sync) /
///   [`decrypt_stream_sync`](Self::decrypt_stream_sync) over `std::io`, framed,
///   in constant memory; with the `tokio` feature, `encrypt_stream` and
///   `decrypt_stream` over tokio's `AsyncRead` / `AsyncWrite`.
///
/// With several keyrings, the first generates each data key and every one
/// wraps it, so any of them can decrypt. [`EncryptorBuilder::cache`] turns
/// on data key caching ([`CachePolicy`]).
///
/// Its `Debug` names the keyrings' key ids and the cache's size, never a key.
#[derive(Clone)]
pub struct Encryptor {
    inner: Arc<Inner>,
}

struct Inner {
    /// Wrap every new data key; the first generates it.
    encrypt: Vec<Arc<dyn Keyring>>,
    /// May unwrap: `encrypt` followed by the decrypt-only keyrings.
    decrypt: Vec<Arc<dyn Keyring>>,
    cache: Option<Cache>,
    frame_len: u32,
    parse: ParseOptions,
    stream: StreamOptions,
    /// Whether some keyring needs a runtime, so the blocking methods must
    /// check (decided once: the keyrings are fixed).
    encrypt_needs_runtime: bool,
    decrypt_needs_runtime: bool,
}

impl Inner {
    fn new(builder: EncryptorBuilder) -> Self {
        let mut decrypt = builder.encrypt.clone();
        decrypt.extend(builder.decrypt_only);
        Self {
            encrypt_needs_runtime: builder.encrypt.iter().any(|k| k.needs_runtime()),
            decrypt_needs_runtime: decrypt.iter().any(|k| k.needs_runtime()),
            encrypt: builder.encrypt,
            decrypt,
            cache: builder.cache.map(Cache::new),
            frame_len: builder.frame_len,
            parse: builder.parse,
            stream: builder.stream,
        }
    }
}

/// Builds an [`Encryptor`].
#[must_use]
pub struct EncryptorBuilder {
    encrypt: Vec<Arc<dyn Keyring>>,
    decrypt_only: Vec<Arc<dyn Keyring>>,
    cache: Option<CachePolicy>,
    frame_len: u32,
    parse: ParseOptions,
    stream: StreamOptions,
}

impl Encryptor {
    /// An encryptor with one keyring and no cache.
    pub fn new(keyring: impl Keyring + 'static) -> Self {
        Self { inner: Arc::new(Inner::new(Self::builder().keyring(keyring))) }
    }

    /// A builder, for several keyrings, a cache or other options.
    pub fn builder() -> EncryptorBuilder {
        EncryptorBuilder {
            encrypt: Vec::new(),
            decrypt_only: Vec::new(),
            cache: None,
            frame_len: DEFAULT_FRAME_LEN,
            parse: ParseOptions::default(),
            stream: StreamOptions::default(),
        }
    }

    /// Encrypts a record under `context` into a single-shot envelope.
    ///
    /// # Errors
    /// [`Error::Keyring`] when a keyring fails; [`Error::Format`] when the
    /// keyrings made too many encrypted data keys; [`Error::Io`] when the
    /// system random source fails.
    pub async fn encrypt(&self, context: &EncryptionContext, plaintext: &[u8]) -> Result<Vec<u8>, Error> {
        if let Some(materials) = self.reuse(context, plaintext) {
            return seal(&materials, context, plaintext);
        }
        self.encrypt_in(Mode::Async, context, plaintext).await
    }

    /// [`Encryptor::encrypt`] without an async runtime, for keyrings that
    /// need no I/O. Do not call it from async code: it may wait for another
    /// caller's keyring call when a cache is on.
    ///
    /// # Errors
    /// As [`Encryptor::encrypt`], and [`KeyringErrorKind::Unsupported`] when
    /// a keyring needs an async runtime ([`Keyring::needs_runtime`]), even
    /// when a cached data key would need no call: whether a blocking call
    /// works does not depend on what happens to be cached.
    pub fn encrypt_sync(&self, context: &EncryptionContext, plaintext: &[u8]) -> Result<Vec<u8>, Error> {
        self.refuse_runtime_keyrings_to_encrypt()?;
        if let Some(materials) = self.reuse(context, plaintext) {
            return seal(&materials, context, plaintext);
        }
        block_on(self.encrypt_in(Mode::Sync, context, plaintext))
    }

    /// Decrypts an envelope (single-shot or framed) held in memory, after
    /// checking its context against `expected`. The plaintext is wiped when dropped.
    ///
    /// # Errors
    /// [`Error::Format`] for malformed input; [`Error::ContextMismatch`] when
    /// the context is not the expected one (no keyring is asked then);
    /// [`Error::Keyring`] when no keyring can unwrap the data key;
    /// [`Error::Authentication`] for a wrong key or altered data.
    pub async fn decrypt(&self, ciphertext: &[u8], expected: Expect<'_>) -> Result<Plaintext, Error> {
        self.decrypt_in(Mode::Async, ciphertext, expected).await
    }

    /// [`Encryptor::decrypt`] without an async runtime, for keyrings that need no I/O.
    ///
    /// # Errors
    /// As [`Encryptor::decrypt`], and [`KeyringErrorKind::Unsupported`] when
    /// a keyring that could unwrap one of the envelope's data keys needs an
    /// async runtime, cached or not.
    pub fn decrypt_sync(&self, ciphertext: &[u8], expected: Expect<'_>) -> Result<Plaintext, Error> {
        let envelope = Envelope::parse(ciphertext, &self.inner.parse)?;
        let header = envelope.header();
        expected.check(&header.context)?;
        self.refuse_runtime_keyrings_to_decrypt(header)?;
        if let Some(opened) = self.open_cached(&envelope) {
            return opened;
        }
        let key = block_on(self.unwrap(Mode::Sync, header, &|k| envelope.verify_data_key(k).is_ok()))?;
        envelope.open_plaintext(&key)
    }

    /// Encrypts everything `reader` yields into a framed envelope on
    /// `writer`, in constant memory. Returns the plaintext length. A stream
    /// always gets a data key of its own: its length is not known in advance,
    /// so it cannot be counted against a cached key's limits.
    ///
    /// # Errors
    /// As [`Encryptor::encrypt_sync`], and [`Error::Io`] when reading or
    /// writing fails; the output is then incomplete and must be discarded.
    pub fn encrypt_stream_sync(
        &self,
        context: &EncryptionContext,
        reader: impl Read,
        writer: impl Write,
    ) -> Result<u64, Error> {
        self.refuse_runtime_keyrings_to_encrypt()?;
        let materials = block_on(self.materials(Mode::Sync, context, None))?;
        encrypt_stream_with(&materials, context, self.inner.frame_len, &self.inner.stream, reader, writer)
    }

    /// Decrypts an envelope read from `reader` to `writer`, in constant memory
    /// for framed bodies, after checking its context. Returns the plaintext length.
    ///
    /// Frames are written as they verify: if this fails part way, discard
    /// what was written.
    ///
    /// # Errors
    /// As [`Encryptor::decrypt_sync`], and [`Error::Io`] when reading or writing fails.
    pub fn decrypt_stream_sync(
        &self,
        reader: impl Read,
        writer: impl Write,
        expected: Expect<'_>,
    ) -> Result<u64, Error> {
        let decryptor = StreamDecryptor::new(reader, &self.inner.parse)?;
        expected.check(&decryptor.header().context)?;
        self.refuse_runtime_keyrings_to_decrypt(decryptor.header())?;
        let key = block_on(self.checked_data_key(Mode::Sync, decryptor.header()))?;
        decryptor.decrypt_to_with(&key, &self.inner.stream, writer)
    }

    /// The frame length streams are written with.
    pub fn frame_len(&self) -> u32 {
        self.inner.frame_len
    }

    #[cfg(feature = "tokio")]
    pub(crate) fn parse_options(&self) -> &ParseOptions {
        &self.inner.parse
    }

    async fn encrypt_in(&self, mode: Mode, context: &EncryptionContext, plaintext: &[u8]) -> Result<Vec<u8>, Error> {
        let len = u64::try_from(plaintext.len()).ok();
        let materials = self.materials(mode, context, len).await?;
        seal(&materials, context, plaintext)
    }

    /// Materials for one message: cached when a cache is on and the length known.
    pub(crate) async fn materials(
        &self,
        mode: Mode,
        context: &EncryptionContext,
        len: Option<u64>,
    ) -> Result<Arc<Materials>, Error> {
        let generate = || self.generate(mode, context);
        let materials = match &self.inner.cache {
            Some(cache) => cache.materials(context, len, generate).await?,
            None => Arc::new(generate().await?),
        };
        Ok(materials)
    }

    async fn generate(&self, mode: Mode, context: &EncryptionContext) -> Result<Materials, KeyringError> {
        let keyrings = Keyrings::new(mode, &self.inner.encrypt);
        generate_materials(&keyrings.refs(), context).await
    }

    async fn decrypt_in(&self, mode: Mode, ciphertext: &[u8], expected: Expect<'_>) -> Result<Plaintext, Error> {
        let envelope = Envelope::parse(ciphertext, &self.inner.parse)?;
        let header = envelope.header();
        expected.check(&header.context)?;
        if let Some(opened) = self.open_cached(&envelope) {
            return opened;
        }
        let key = self.unwrap(mode, header, &|k| envelope.verify_data_key(k).is_ok()).await?;
        envelope.open_plaintext(&key)
    }

    /// Opens with a cached data key, if there is one. `open_plaintext` checks
    /// the commitment before decrypting: a cached key of another envelope
    /// with the same key list (a planted entry) fails there, and `None` lets
    /// the keyrings decide, as without a cache.
    fn open_cached(&self, envelope: &Envelope<'_>) -> Option<Result<Plaintext, Error>> {
        let key = self.cached_key(envelope.header())?;
        // MUST 13.2: the commitment decides, not the cache.
        match envelope.open_plaintext(&key) {
            Err(Error::Authentication) => None,
            other => Some(other),
        }
    }

    fn refuse_runtime_keyrings_to_encrypt(&self) -> Result<(), Error> {
        if !self.inner.encrypt_needs_runtime {
            return Ok(());
        }
        match self.inner.encrypt.iter().find(|k| k.needs_runtime()) {
            Some(keyring) => Err(needs_runtime_error(keyring.as_ref()).into()),
            None => Ok(()),
        }
    }

    fn refuse_runtime_keyrings_to_decrypt(&self, header: &Header) -> Result<(), Error> {
        if !self.inner.decrypt_needs_runtime {
            return Ok(());
        }
        let mut runtime = self.inner.decrypt.iter().filter(|k| k.needs_runtime());
        match runtime.find(|k| header.encrypted_data_keys.iter().any(|edk| k.can_unwrap(edk))) {
            Some(keyring) => Err(needs_runtime_error(keyring.as_ref()).into()),
            None => Ok(()),
        }
    }

    /// Materials of a cached data key with room for this message, if any.
    fn reuse(&self, context: &EncryptionContext, plaintext: &[u8]) -> Option<Arc<Materials>> {
        self.inner.cache.as_ref()?.reuse(context, u64::try_from(plaintext.len()).ok()?)
    }

    /// The data key of `header`, checked against its commitment.
    pub(crate) async fn checked_data_key(&self, mode: Mode, header: &Header) -> Result<DataKey, Error> {
        let check = |k: &DataKey| verify_commitment(header, k).is_ok();
        // MUST 13.2: a kept key must match this envelope's commitment.
        if let Some(key) = self.cached_key(header).filter(|k| check(k)) {
            return Ok(key);
        }
        self.unwrap(mode, header, &check).await
    }

    fn cached_key(&self, header: &Header) -> Option<DataKey> {
        self.inner.cache.as_ref()?.unwrapped(&header.encrypted_data_keys, &header.context)
    }

    async fn unwrap(
        &self,
        mode: Mode,
        header: &Header,
        check: &(dyn Fn(&DataKey) -> bool + Sync),
    ) -> Result<DataKey, Error> {
        let keyrings = Keyrings::new(mode, &self.inner.decrypt);
        let key =
            unwrap_data_key_checked(&keyrings.refs(), &header.encrypted_data_keys, &header.context, check).await?;
        if let Some(cache) = &self.inner.cache {
            cache.remember(&header.encrypted_data_keys, &header.context, &key);
        }
        Ok(key)
    }
}

impl fmt::Debug for Encryptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids = |keyrings: &[Arc<dyn Keyring>]| -> Vec<String> {
            keyrings.iter().map(|k| format!("{}:{}", k.provider_id(), k.key_id())).collect()
        };
        let decrypt_only = &self.inner.decrypt[self.inner.encrypt.len()..];
        f.debug_struct("Encryptor")
            .field("encrypt_keys", &ids(&self.inner.encrypt))
            .field("decrypt_only_keys", &ids(decrypt_only))
            .field("cache", &self.inner.cache)
            .field("frame_len", &self.inner.frame_len)
            .finish()
    }
}

impl EncryptorBuilder {
    /// Adds a keyring that wraps every new data key and may unwrap.
    pub fn keyring(self, keyring: impl Keyring + 'static) -> Self {
        self.shared_keyring(Arc::new(keyring))
    }

    /// [`EncryptorBuilder::keyring`] for a keyring shared with other code.
    pub fn shared_keyring(mut self, keyring: Arc<dyn Keyring>) -> Self {
        self.encrypt.push(keyring);
        self
    }

    /// Adds a keyring that may only unwrap: an old key still allowed to
    /// decrypt, say. Tried after the encrypting keyrings.
    pub fn decrypt_only_keyring(self, keyring: impl Keyring + 'static) -> Self {
        self.shared_decrypt_only_keyring(Arc::new(keyring))
    }

    /// [`EncryptorBuilder::decrypt_only_keyring`] for a keyring shared with other code.
    pub fn shared_decrypt_only_keyring(mut self, keyring: Arc<dyn Keyring>) -> Self {
        self.decrypt_only.push(keyring);
        self
    }

    /// Turns on data key caching with these limits (see [`CachePolicy`] for
    /// why reuse is safe and the bound).
    pub fn cache(mut self, policy: CachePolicy) -> Self {
        self.cache = Some(policy);
        self
    }

    /// The frame length of streams (default 64 KiB; 1 to 16 MiB).
    pub fn frame_len(mut self, frame_len: u32) -> Self {
        self.frame_len = frame_len;
        self
    }

    /// Limits applied when parsing envelopes to decrypt.
    pub fn parse_options(mut self, options: ParseOptions) -> Self {
        self.parse = options;
        self
    }

    /// Threads used to encrypt and decrypt large streams.
    pub fn stream_options(mut self, options: StreamOptions) -> Self {
        self.stream = options;
        self
    }

    /// The encryptor.
    ///
    /// # Errors
    /// [`Error::Keyring`] ([`KeyringErrorKind::Invalid`]) without any
    /// keyring; [`Error::Format`] for a frame length out of range.
    pub fn build(self) -> Result<Encryptor, Error> {
        crate::header::BodyForm::framed(self.frame_len)?;
        if self.encrypt.is_empty() && self.decrypt_only.is_empty() {
            return Err(KeyringError::new(KeyringErrorKind::Invalid, "an encryptor needs at least one keyring").into());
        }
        Ok(Encryptor { inner: Arc::new(Inner::new(self)) })
    }
}

impl fmt::Debug for EncryptorBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncryptorBuilder")
            .field("keyrings", &self.encrypt.len())
            .field("decrypt_only_keyrings", &self.decrypt_only.len())
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn futures_are_send_and_the_encryptor_is_shareable() {
        fn send<T: Send>(_: &T) {}
        fn shareable<T: Send + Sync + Clone + 'static>() {}
        shareable::<Encryptor>();
        let encryptor = Encryptor::new(crate::LocalKeyring::new(crate::LocalKey::generate("k").expect("key")));
        let context = EncryptionContext::new();
        send(&encryptor.encrypt(&context, b""));
        send(&encryptor.decrypt(b"", Expect::Contains(&context)));
    }

    #[test]
    fn exact_expectation_names_the_key_at_fault() {
        let ctx = |pairs: &[(&str, &str)]| EncryptionContext::from_pairs(pairs.iter().copied()).expect("context");
        let actual = ctx(&[("a", "1"), ("b", "2")]);
        assert!(Expect::Exactly(&actual).check(&actual).is_ok());
        assert!(Expect::Contains(&ctx(&[("b", "2")])).check(&actual).is_ok());
        let key = |r: Result<(), Error>| match r {
            Err(Error::ContextMismatch { key }) => key,
            other => panic!("expected a mismatch, got {other:?}"),
        };
        assert_eq!(key(Expect::Exactly(&ctx(&[("a", "1")])).check(&actual)), "b");
        assert_eq!(key(Expect::Exactly(&ctx(&[("a", "1"), ("b", "3")])).check(&actual)), "b");
        assert_eq!(key(Expect::Contains(&ctx(&[("c", "")])).check(&actual)), "c");
    }
}
