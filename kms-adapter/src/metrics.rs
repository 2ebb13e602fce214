//! Counters of KMS use, for the summary an operator reads: calls per
//! operation, attempts (so retries), and throttling answers. Attempts and
//! throttles are counted by an SDK interceptor, so they include the retries
//! the SDK makes on its own.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use aws_sdk_kms::error::ProvideErrorMetadata;
use aws_sdk_kms::operation::{
    decrypt::DecryptError, describe_key::DescribeKeyError, encrypt::EncryptError,
    generate_data_key::GenerateDataKeyError, re_encrypt::ReEncryptError,
};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeTransmitInterceptorContextRef, FinalizerInterceptorContextRef,
};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;

/// The KMS operations the adapter uses.
pub const OPERATIONS: [&str; 6] = ["GenerateDataKey", "Decrypt", "ReEncrypt", "Encrypt", "DescribeKey", "ListAliases"];

/// Shared counters; cheap to update from any task.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    calls: [AtomicU64; 6],
    attempts: AtomicU64,
    throttles: AtomicU64,
}

impl Metrics {
    pub(crate) fn call(&self, operation: &'static str) {
        if let Some(i) = OPERATIONS.iter().position(|o| *o == operation) {
            self.calls[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A consistent-enough copy of the counters.
    pub(crate) fn snapshot(&self) -> MetricsSnapshot {
        let calls: Vec<(&'static str, u64)> =
            OPERATIONS.iter().zip(&self.calls).map(|(op, n)| (*op, n.load(Ordering::Relaxed))).collect();
        let total: u64 = calls.iter().map(|(_, n)| n).sum();
        let attempts = self.attempts.load(Ordering::Relaxed);
        MetricsSnapshot {
            calls,
            retries: attempts.saturating_sub(total),
            throttles: self.throttles.load(Ordering::Relaxed),
        }
    }
}

/// The counters at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsSnapshot {
    /// Calls per operation, as the caller made them (retries not counted).
    pub calls: Vec<(&'static str, u64)>,
    /// Attempts beyond the first, over all calls.
    pub retries: u64,
    /// Attempts answered with ThrottlingException.
    pub throttles: u64,
}

impl MetricsSnapshot {
    /// Calls of one operation.
    pub fn calls_of(&self, operation: &str) -> u64 {
        self.calls.iter().find(|(op, _)| *op == operation).map_or(0, |(_, n)| *n)
    }

    /// Whether KMS was used at all.
    pub fn is_empty(&self) -> bool {
        self.calls.iter().all(|(_, n)| *n == 0)
    }
}

impl fmt::Display for MetricsSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let calls: Vec<String> = self.calls.iter().filter(|(_, n)| *n > 0).map(|(op, n)| format!("{op} {n}")).collect();
        write!(
            f,
            "calls: {}; retries {}; throttled {}",
            if calls.is_empty() { "none".into() } else { calls.join(", ") },
            self.retries,
            self.throttles
        )
    }
}

/// The interceptor that counts attempts and throttling answers.
#[derive(Debug)]
pub(crate) struct CountingInterceptor(pub(crate) std::sync::Arc<Metrics>);

impl Intercept for CountingInterceptor {
    fn name(&self) -> &'static str {
        "RekeyCountingInterceptor"
    }

    fn read_before_attempt(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.0.attempts.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn read_after_attempt(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(Err(err)) = context.output_or_error()
            && err.as_operation_error().is_some_and(|e| error_code(e) == Some("ThrottlingException"))
        {
            self.0.throttles.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// The error code of a type-erased KMS operation error.
pub(crate) fn error_code(err: &aws_smithy_runtime_api::client::interceptors::context::Error) -> Option<&str> {
    err.downcast_ref::<DecryptError>()
        .and_then(ProvideErrorMetadata::code)
        .or_else(|| err.downcast_ref::<ReEncryptError>().and_then(ProvideErrorMetadata::code))
        .or_else(|| err.downcast_ref::<GenerateDataKeyError>().and_then(ProvideErrorMetadata::code))
        .or_else(|| err.downcast_ref::<EncryptError>().and_then(ProvideErrorMetadata::code))
        .or_else(|| err.downcast_ref::<DescribeKeyError>().and_then(ProvideErrorMetadata::code))
}
