//! Talking to DynamoDB: the client built from the same configuration chain
//! as KMS and S3, a count of the throttled attempts the SDK retried, and
//! what DynamoDB's errors mean for an item.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::{BoxError, ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::client::interceptors::context::FinalizerInterceptorContextRef;

use crate::engine::error::{Error, ErrorKind, ItemError, ItemErrorCode};

/// Most attempts per DynamoDB call, retries included: throttled calls are
/// retried with the SDK's backoff rather than failed.
const MAX_ATTEMPTS: u32 = 10;

/// The error codes with which DynamoDB says "slow down".
const THROTTLING: [&str; 3] = ["ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded"];

/// A DynamoDB client and the count of its throttled attempts.
#[derive(Debug, Clone)]
pub struct DynamoClient {
    /// The SDK client.
    pub client: Client,
    throttled: Arc<AtomicU64>,
}

impl DynamoClient {
    /// A client from the standard AWS chain (`AWS_PROFILE`, `AWS_REGION`,
    /// `AWS_ENDPOINT_URL` or `AWS_ENDPOINT_URL_DYNAMODB`, SSO, IMDS).
    ///
    /// # Errors
    /// A plain `http://` endpoint off the loopback interface.
    pub async fn from_env() -> Result<Self, Error> {
        use aws_config::retry::RetryConfig;
        use aws_config::timeout::TimeoutConfig;
        let retry = RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS);
        let timeouts = TimeoutConfig::builder().operation_attempt_timeout(Duration::from_secs(60)).build();
        let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .retry_config(retry)
            .timeout_config(timeouts)
            .load()
            .await;
        let own = std::env::var("AWS_ENDPOINT_URL_DYNAMODB").ok();
        if let Some(url) = own.as_deref().or(shared.endpoint_url()) {
            crate::engine::s3::check_plain_http("DynamoDB", url)?;
        }
        let throttled = Arc::new(AtomicU64::new(0));
        let conf = aws_sdk_dynamodb::config::Builder::from(&shared)
            .interceptor(CountThrottling(Arc::clone(&throttled)))
            .build();
        Ok(Self { client: Client::from_conf(conf), throttled })
    }

    /// Attempts DynamoDB throttled so far (each retried by the SDK).
    pub fn throttled(&self) -> u64 {
        self.throttled.load(Ordering::Relaxed)
    }
}

/// Counts attempts answered with a throttling error.
#[derive(Debug)]
struct CountThrottling(Arc<AtomicU64>);

impl Intercept for CountThrottling {
    fn name(&self) -> &'static str {
        "rekey-count-throttling"
    }

    fn read_after_attempt(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(Err(e)) = context.output_or_error() else {
            return Ok(());
        };
        let Some(e) = e.as_operation_error() else {
            return Ok(());
        };
        use aws_sdk_dynamodb::operation::{get_item, scan, update_item};
        let code = e
            .downcast_ref::<scan::ScanError>()
            .and_then(ProvideErrorMetadata::code)
            .or_else(|| e.downcast_ref::<update_item::UpdateItemError>().and_then(ProvideErrorMetadata::code))
            .or_else(|| e.downcast_ref::<get_item::GetItemError>().and_then(ProvideErrorMetadata::code));
        if code.is_some_and(|c| THROTTLING.contains(&c)) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }
}

pub(super) type Response = aws_sdk_dynamodb::config::http::HttpResponse;

/// The code and message of a DynamoDB error (never the request's values).
pub(super) fn describe<E: ProvideErrorMetadata + std::error::Error + 'static>(e: &SdkError<E, Response>) -> String {
    match e {
        SdkError::ServiceError(s) => match (s.err().code(), s.err().message()) {
            (Some(c), Some(m)) => format!("{c}: {m}"),
            (Some(c), None) => c.to_owned(),
            _ => "an unnamed service error".to_owned(),
        },
        other => format!("{}", aws_sdk_dynamodb::error::DisplayErrorContext(other)),
    }
}

fn code<E: ProvideErrorMetadata>(e: &SdkError<E, Response>) -> Option<&str> {
    match e {
        SdkError::ServiceError(s) => s.err().code(),
        _ => None,
    }
}

/// A failure that stops the run (the table cannot be read).
pub(super) fn run_error<E: ProvideErrorMetadata + std::error::Error + 'static>(
    what: &str,
    e: &SdkError<E, Response>,
) -> Error {
    let err = Error::new(ErrorKind::Io, format!("{what}: {}", describe(e)));
    match code(e) {
        Some("ResourceNotFoundException") => {
            err.hint("check the table's name, the region (AWS_REGION) and the account")
        }
        Some("AccessDeniedException") => err.hint("the dry run lists the IAM actions a run needs"),
        _ => err,
    }
}

/// A failure of one item: a failed condition is a concurrent change.
pub(super) fn item_error<E: ProvideErrorMetadata + std::error::Error + 'static>(
    what: &str,
    e: &SdkError<E, Response>,
) -> ItemError {
    let code = match code(e) {
        Some("ConditionalCheckFailedException") => return changed(),
        Some(c) if THROTTLING.contains(&c) => ItemErrorCode::Throttled,
        Some("AccessDeniedException") => ItemErrorCode::AccessDenied,
        Some(_) => ItemErrorCode::Io,
        None => ItemErrorCode::Unavailable,
    };
    ItemError::new(code, format!("{what}: {}", describe(e)))
}

/// The item changed between the read and the update; the other writer won.
pub(super) fn changed() -> ItemError {
    ItemError::new(
        ItemErrorCode::ChangedDuringRotation,
        "the item changed after it was read (or its shadow attribute was filled); the other writer's value was kept",
    )
}
