//! How the `_sync` methods of [`Encryptor`](crate::Encryptor) call keyrings
//! without a runtime: each keyring is seen through [`Immediate`], which
//! refuses one that needs network access and turns a future that is not ready
//! at once into an error rather than a hang; [`block_on`] drives what is left.

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use crate::context::EncryptionContext;
use crate::error::{KeyringError, KeyringErrorKind};
use crate::key::{DataKey, EncryptedDataKey};
use crate::keyring::{Keyring, KeyringFuture};

/// Whether keyring futures may wait for I/O (async callers) or must be
/// ready at once (the `_sync` methods, which have no runtime to drive them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Async,
    Sync,
}

/// The keyrings of one operation, each wrapped in [`Immediate`] for a
/// blocking caller so the shared keyring helpers can be used unchanged.
pub(crate) enum Keyrings<'a> {
    Async(&'a [Arc<dyn Keyring>]),
    Sync(Vec<Immediate<'a>>),
}

impl<'a> Keyrings<'a> {
    pub(crate) fn new(mode: Mode, keyrings: &'a [Arc<dyn Keyring>]) -> Self {
        match mode {
            Mode::Async => Self::Async(keyrings),
            Mode::Sync => Self::Sync(keyrings.iter().map(|k| Immediate(k.as_ref())).collect()),
        }
    }

    pub(crate) fn refs(&self) -> Vec<&dyn Keyring> {
        match self {
            Self::Async(keyrings) => keyrings.iter().map(|k| k.as_ref() as &dyn Keyring).collect(),
            Self::Sync(keyrings) => keyrings.iter().map(|k| k as &dyn Keyring).collect(),
        }
    }
}

/// A keyring seen by a blocking caller: one that needs a runtime is refused
/// before it is called (a KMS future polled outside its runtime could panic),
/// and a future that is not ready at once is an error rather than a hang.
pub(crate) struct Immediate<'a>(&'a dyn Keyring);

pub(crate) fn needs_runtime_error(keyring: &dyn Keyring) -> KeyringError {
    let message = format!(
        "the key {}:{} needs network access: use the async encrypt/decrypt, not the _sync ones",
        keyring.provider_id(),
        keyring.key_id()
    );
    KeyringError::new(KeyringErrorKind::Unsupported, message)
}

fn needs_async<T: Send + 'static>(keyring: &dyn Keyring) -> KeyringFuture<'static, T> {
    Box::pin(std::future::ready(Err(needs_runtime_error(keyring))))
}

fn at_once<'a, T: Send + 'a>(keyring: &dyn Keyring, mut future: KeyringFuture<'a, T>) -> KeyringFuture<'a, T> {
    let result = match future.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(result) => result,
        Poll::Pending => Err(KeyringError::new(
            KeyringErrorKind::Unsupported,
            format!(
                "the key {}:{} did not answer at once: use the async encrypt/decrypt",
                keyring.provider_id(),
                keyring.key_id()
            ),
        )),
    };
    Box::pin(std::future::ready(result))
}

impl Keyring for Immediate<'_> {
    fn provider_id(&self) -> &str {
        self.0.provider_id()
    }

    fn key_id(&self) -> &str {
        self.0.key_id()
    }

    fn can_unwrap(&self, edk: &EncryptedDataKey) -> bool {
        self.0.can_unwrap(edk)
    }

    fn needs_runtime(&self) -> bool {
        false
    }

    fn generate<'a>(&'a self, context: &'a EncryptionContext) -> KeyringFuture<'a, (DataKey, EncryptedDataKey)> {
        if self.0.needs_runtime() {
            return needs_async(self.0);
        }
        at_once(self.0, self.0.generate(context))
    }

    fn wrap<'a>(&'a self, key: &'a DataKey, context: &'a EncryptionContext) -> KeyringFuture<'a, EncryptedDataKey> {
        if self.0.needs_runtime() {
            return needs_async(self.0);
        }
        at_once(self.0, self.0.wrap(key, context))
    }

    fn unwrap<'a>(
        &'a self,
        edks: &'a [EncryptedDataKey],
        context: &'a EncryptionContext,
    ) -> KeyringFuture<'a, DataKey> {
        if self.0.needs_runtime() {
            return needs_async(self.0);
        }
        at_once(self.0, self.0.unwrap(edks, context))
    }
}

/// Runs a future on this thread. Keyring calls are ready at once here
/// ([`Immediate`]); what may wait is a cache miss another caller is
/// resolving, whose end wakes this thread.
pub(crate) fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    // The common case completes in one poll: no waker to allocate.
    if let Poll::Ready(output) = future.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        return output;
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        match future.as_mut().poll(&mut cx) {
            Poll::Ready(output) => return output,
            // A spurious wake-up only costs another poll.
            Poll::Pending => std::thread::park(),
        }
    }
}

struct Unpark(std::thread::Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}
