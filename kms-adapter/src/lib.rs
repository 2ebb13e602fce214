#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod client;
mod endpoint;
mod error;
mod keyref;
mod keyring;
mod limiter;
mod metrics;
mod suggest;

pub use client::{KeyDescription, Kms, KmsConfig, ReEncrypted, RetryMode};
pub use error::{KmsError, KmsErrorKind};
pub use keyref::KeyRef;
pub use keyring::{DiscoveryFilter, KmsKeyring, PROVIDER_ID};
pub use metrics::{MetricsSnapshot, OPERATIONS};
pub use suggest::closest;
