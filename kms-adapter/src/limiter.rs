//! A request rate limit shared by every clone of a [`Kms`](crate::Kms)
//! client: a token bucket, so bounded parallelism never exceeds the
//! operator's share of the account's KMS request quota.

use std::time::{Duration, Instant};

use tokio::sync::Mutex;

/// Hands out `rate` tokens per second, with a burst of one second's worth.
#[derive(Debug)]
pub(crate) struct TokenBucket {
    rate: f64,
    state: Mutex<(f64, Instant)>,
}

impl TokenBucket {
    pub(crate) fn new(rate: f64) -> Self {
        Self { rate, state: Mutex::new((rate.max(1.0), Instant::now())) }
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
