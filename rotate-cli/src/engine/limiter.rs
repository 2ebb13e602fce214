//! A global request rate limit for KMS (a token bucket shared by every
//! worker), applied by wrapping a keyring, so every path that reaches KMS is
//! limited the same way.

use std::sync::Arc;
use std::time::{Duration, Instant};

use envelope_core::{DataKey, EncryptedDataKey, EncryptionContext, Keyring, KeyringFuture};
use tokio::sync::Mutex;

/// Hands out `rate` tokens per second, with a burst of one second's worth.
pub(crate) struct TokenBucket {
    rate: f64,
    state: Mutex<(f64, Instant)>,
}

impl TokenBucket {
    pub(crate) fn new(rate: f64) -> Arc<Self> {
        Arc::new(Self { rate, state: Mutex::new((rate.max(1.0), Instant::now())) })
    }

    /// Waits until a token is available and takes it.
    pub(crate) async fn acquire(&self) {
        loop {
            let wait = {
                let mut state = self.state.lock().await;
                let (tokens, last) = &mut *state;
                let now = Instant::now();
                *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * self.rate).min(self.rate.max(1.0));
                *last = now;
                if *tokens >= 1.0 {
                    *tokens -= 1.0;
                    return;
                }
                Duration::from_secs_f64((1.0 - *tokens) / self.rate)
            };
            tokio::time::sleep(wait).await;
        }
    }
}

/// A keyring whose every call first takes a token.
pub(crate) struct RateLimited {
    inner: Box<dyn Keyring>,
    bucket: Arc<TokenBucket>,
}

impl RateLimited {
    /// Wraps `inner` when a limit is set; KMS keyrings only (local ones make no requests).
    pub(crate) fn wrap(inner: Box<dyn Keyring>, bucket: Option<&Arc<TokenBucket>>) -> Box<dyn Keyring> {
        match bucket {
            Some(bucket) if inner.provider_id() != envelope_core::LOCAL_PROVIDER_ID => {
                Box::new(Self { inner, bucket: Arc::clone(bucket) })
            }
            _ => inner,
        }
    }
}

impl Keyring for RateLimited {
    fn provider_id(&self) -> &str {
        self.inner.provider_id()
    }

    fn key_id(&self) -> &str {
        self.inner.key_id()
    }

    fn can_unwrap(&self, edk: &EncryptedDataKey) -> bool {
        self.inner.can_unwrap(edk)
    }

    fn generate<'a>(&'a self, context: &'a EncryptionContext) -> KeyringFuture<'a, (DataKey, EncryptedDataKey)> {
        Box::pin(async move {
            self.bucket.acquire().await;
            self.inner.generate(context).await
        })
    }

    fn wrap<'a>(&'a self, key: &'a DataKey, context: &'a EncryptionContext) -> KeyringFuture<'a, EncryptedDataKey> {
        Box::pin(async move {
            self.bucket.acquire().await;
            self.inner.wrap(key, context).await
        })
    }

    fn unwrap<'a>(
        &'a self,
        edks: &'a [EncryptedDataKey],
        context: &'a EncryptionContext,
    ) -> KeyringFuture<'a, DataKey> {
        Box::pin(async move {
            self.bucket.acquire().await;
            self.inner.unwrap(edks, context).await
        })
    }

    fn rewrap<'a>(
        &'a self,
        edk: &'a EncryptedDataKey,
        source: &'a EncryptionContext,
        destination: &'a EncryptionContext,
    ) -> KeyringFuture<'a, EncryptedDataKey> {
        Box::pin(async move {
            self.bucket.acquire().await;
            self.inner.rewrap(edk, source, destination).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bucket_spaces_requests_at_the_rate() {
        let bucket = TokenBucket::new(50.0);
        let start = Instant::now();
        for _ in 0..100 {
            bucket.acquire().await;
        }
        // 50 in the initial burst, then 50 more at 50/s: about one second.
        let elapsed = start.elapsed();
        assert!(elapsed >= Duration::from_millis(900), "{elapsed:?}");
        assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    }
}
