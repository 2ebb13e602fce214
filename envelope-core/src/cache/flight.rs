//! One keyring call that several callers wait for: the first caller of a
//! missing context leads it, the others wait without holding a thread.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use crate::error::{KeyringError, KeyringErrorKind};

/// A poisoned lock only means another thread panicked while holding it; the
/// maps stay consistent (no user code runs under the lock), so carry on.
pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One keyring call that several callers wait for.
#[derive(Default)]
pub(super) struct Flight {
    state: Mutex<FlightState>,
}

#[derive(Default)]
pub(super) struct FlightState {
    outcome: Option<Outcome>,
    waiters: Vec<Waker>,
}

pub(super) enum Outcome {
    /// The entry is ready, or the leader gave up (cancelled): look again.
    Retry,
    /// The keyrings failed; every waiter gets the error (without its source).
    Failed(KeyringErrorKind, String),
}

impl Flight {
    pub(super) fn finish(&self, outcome: Outcome) {
        let waiters = {
            let mut state = lock(&self.state);
            state.outcome = Some(outcome);
            std::mem::take(&mut state.waiters)
        };
        for waker in waiters {
            waker.wake();
        }
    }
}

/// Waits for a flight without holding any thread: the waker is stored and
/// called by whoever finishes the flight.
pub(super) struct Wait {
    pub(super) flight: Arc<Flight>,
}

impl Future for Wait {
    type Output = Option<KeyringError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = lock(&self.flight.state);
        match &state.outcome {
            Some(Outcome::Retry) => Poll::Ready(None),
            Some(Outcome::Failed(kind, message)) => Poll::Ready(Some(KeyringError::new(*kind, message.clone()))),
            None => {
                if !state.waiters.iter().any(|w| w.will_wake(cx.waker())) {
                    state.waiters.push(cx.waker().clone());
                }
                Poll::Pending
            }
        }
    }
}
