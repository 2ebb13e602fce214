//! The one place that talks to AWS KMS: every request of the workspace goes
//! through [`Kms`], which counts it and maps its errors.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_kms::Client;
use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{DataKeySpec, KeySpec, KeyState, KeyUsageType};
use envelope_core::{DataKey, EncryptionContext};
use zeroize::Zeroizing;

use crate::endpoint::PlainHttpGuard;
use crate::error::{KmsError, KmsErrorKind};
use crate::keyref::{KeyRef, arn_region};
use crate::limiter::{RateLimiter, ThrottlesAreRetriedByTheAdapter};
use crate::metrics::{CountingInterceptor, Metrics, MetricsSnapshot};

/// The SDK's retry modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RetryMode {
    /// Exponential backoff with jitter.
    #[default]
    Standard,
    /// Standard, plus client-side rate limiting once throttled.
    Adaptive,
}

/// Client settings on top of the standard AWS configuration chain
/// (environment, profile, SSO, IMDS; `AWS_ENDPOINT_URL`, `AWS_REGION` and
/// `AWS_PROFILE` are honoured).
#[derive(Debug, Clone)]
pub struct KmsConfig {
    /// Attempts per call, retries on throttling and transient faults included.
    pub max_attempts: u32,
    /// Standard or adaptive retries.
    pub retry_mode: RetryMode,
    /// First retry delay; later ones grow exponentially (with jitter).
    pub initial_backoff: Duration,
    /// Time allowed for one attempt.
    pub attempt_timeout: Duration,
    /// Time allowed for a call, retries included.
    pub operation_timeout: Duration,
    /// Most requests per second across every clone of the client (`--max-rps`); `None` for no cap.
    pub max_requests_per_second: Option<f64>,
    /// Adapt the request rate to KMS's quota: back off on throttling, probe
    /// back up (see the `limiter` module). On by default; the cap above
    /// still applies. Off: the cap alone, or no limit.
    pub adaptive_rate: bool,
}

impl Default for KmsConfig {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            retry_mode: RetryMode::Standard,
            initial_backoff: Duration::from_millis(100),
            attempt_timeout: Duration::from_secs(10),
            operation_timeout: Duration::from_secs(60),
            max_requests_per_second: None,
            adaptive_rate: true,
        }
    }
}

/// A property DescribeKey did not report.
const UNKNOWN: &str = "unknown";

/// A KMS client with counters, for one region and profile. Cloning is cheap
/// and shares the counters and the rate limit.
///
/// Every clone can reach other regions and profiles too: a request naming a
/// key ARN goes to that ARN's region, and a key reference with a qualifier
/// (`alias/app?region=eu-west-1&profile=prod`, see [`KeyRef`]) to the
/// client for its region and profile. Those clients are made on first use,
/// kept for the life of the first client, and share its retry and timeout
/// settings, endpoint override, plain-HTTP guard, counters and rate limit.
#[derive(Debug, Clone)]
pub struct Kms {
    client: Client,
    /// The region this client signs for, if one is configured.
    region: Option<String>,
    /// The profile it was made with; `None` for the default chain.
    profile: Option<String>,
    shared: Arc<Shared>,
    limit: Arc<RateLimiter>,
    /// How long a call keeps retrying throttling answers before it fails.
    patience: Duration,
}

/// What every client made from one [`Kms`] shares.
#[derive(Debug)]
struct Shared {
    metrics: Arc<Metrics>,
    source: Source,
    /// Clients by (region asked for, profile), with the region each got.
    clients: tokio::sync::Mutex<HashMap<Scope, (Client, Option<String>)>>,
}

/// A region asked for and a profile; `None` for the configuration's own.
type Scope = (Option<String>, Option<String>);

/// How to make a client for another region or profile.
#[derive(Debug)]
enum Source {
    /// The standard AWS configuration chain, with these settings.
    Env { retry: RetryConfig, timeouts: TimeoutConfig },
    /// A fixed SDK configuration (interceptors already added): other regions
    /// by changing its region; profiles are not available.
    Fixed(Box<aws_sdk_kms::Config>),
}

/// What DescribeKey says about a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyDescription {
    /// The key's ARN.
    pub arn: String,
    /// Enabled (and not pending deletion).
    pub enabled: bool,
    /// The key state, as KMS names it.
    pub state: String,
    /// The key spec, such as `SYMMETRIC_DEFAULT`.
    pub spec: String,
    /// The key usage, such as `ENCRYPT_DECRYPT`.
    pub usage: String,
}

impl KeyDescription {
    /// Fails unless the key can wrap data keys: enabled, symmetric, for
    /// encryption. A property the server leaves out (local servers do) is not held against the key.
    ///
    /// # Errors
    /// [`KmsErrorKind::KeyUnusable`] saying which property is wrong.
    pub fn check_usable(&self) -> Result<(), KmsError> {
        let problem = if !self.enabled || self.state != KeyState::Enabled.as_str() {
            format!("its state is {}", self.state)
        } else if self.spec != KeySpec::SymmetricDefault.as_str() && self.spec != UNKNOWN {
            format!("its spec is {}, not SYMMETRIC_DEFAULT", self.spec)
        } else if self.usage != KeyUsageType::EncryptDecrypt.as_str() && self.usage != UNKNOWN {
            format!("its usage is {}, not ENCRYPT_DECRYPT", self.usage)
        } else {
            return Ok(());
        };
        Err(KmsError::new(KmsErrorKind::KeyUnusable, "DescribeKey", &self.arn, problem))
    }
}

fn context_map(context: &EncryptionContext) -> Option<HashMap<String, String>> {
    (!context.is_empty()).then(|| context.iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect())
}

/// Moves a plaintext key out of a KMS response into a zeroizing `DataKey`,
/// and zeroizes the response's own copy (the SDK's `Blob` does not).
fn data_key(operation: &'static str, key: &str, blob: Option<Blob>) -> Result<DataKey, KmsError> {
    thirty_two_bytes(operation, key, &secret(operation, key, blob)?)
}

/// A plaintext key of any length out of a KMS response, zeroizing.
fn secret(operation: &'static str, key: &str, blob: Option<Blob>) -> Result<Zeroizing<Vec<u8>>, KmsError> {
    Ok(Zeroizing::new(
        blob.map(Blob::into_inner)
            .ok_or_else(|| KmsError::new(KmsErrorKind::Service, operation, key, "no plaintext in the response"))?,
    ))
}

/// The 32-byte data key rekey's formats use, from a plaintext key KMS returned.
fn thirty_two_bytes(operation: &'static str, key: &str, bytes: &[u8]) -> Result<DataKey, KmsError> {
    DataKey::try_from_slice(bytes)
        .map_err(|_| KmsError::new(KmsErrorKind::Service, operation, key, "the plaintext key is not 32 bytes"))
}

fn required<'a>(operation: &'static str, key: &str, field: &str, value: Option<&'a str>) -> Result<&'a str, KmsError> {
    value.ok_or_else(|| KmsError::new(KmsErrorKind::Service, operation, key, format!("no {field} in the response")))
}

impl Kms {
    /// A client from the standard AWS configuration chain.
    pub async fn from_env(config: &KmsConfig) -> Self {
        let retry = match config.retry_mode {
            RetryMode::Standard => RetryConfig::standard(),
            RetryMode::Adaptive => RetryConfig::adaptive(),
        }
        .with_max_attempts(config.max_attempts.max(1))
        .with_initial_backoff(config.initial_backoff);
        let timeouts = TimeoutConfig::builder()
            .operation_attempt_timeout(config.attempt_timeout)
            .operation_timeout(config.operation_timeout)
            .build();
        let shared = Arc::new(Shared {
            metrics: Arc::default(),
            source: Source::Env { retry, timeouts },
            clients: tokio::sync::Mutex::default(),
        });
        let (client, region) = shared.make(None, None).await;
        Self {
            client,
            region,
            profile: None,
            shared,
            limit: Arc::new(RateLimiter::new(None, config.adaptive_rate)),
            patience: config.operation_timeout,
        }
        .with_rate_limit(config.max_requests_per_second, config.adaptive_rate)
    }

    /// Limits this client and its clones to `rate` requests per second
    /// (`None` or a non-positive rate: no cap), adapting below it to KMS's
    /// throttling when `adaptive`. The clients it makes for other regions
    /// and profiles afterwards share the same budget.
    #[must_use]
    pub fn with_rate_limit(mut self, rate: Option<f64>, adaptive: bool) -> Self {
        let cap = rate.filter(|r| r.is_finite() && *r > 0.0);
        self.limit = Arc::new(RateLimiter::new(cap, adaptive));
        self
    }

    /// How long one call keeps retrying ThrottlingException answers (paced
    /// by the adaptive rate) before it fails with
    /// [`KmsErrorKind::Throttled`]. The operation timeout by default.
    #[must_use]
    pub fn with_throttle_patience(mut self, patience: Duration) -> Self {
        self.patience = patience;
        self
    }

    /// The request rate the limiter allows now, per second (adaptive: where
    /// it settled under KMS's quota).
    pub fn rate(&self) -> f64 {
        self.limit.rate()
    }

    /// A client from an SDK configuration builder (tests use this with a
    /// scripted HTTP client); the counting interceptor is added here, and the
    /// guard that refuses plain `http://` endpoints off the loopback interface
    /// (see [`KmsErrorKind::InsecureEndpoint`]). Clients for other regions
    /// are this configuration with another region; profiles need
    /// [`Kms::from_env`].
    pub fn from_sdk_config(builder: aws_sdk_kms::config::Builder) -> Self {
        let metrics = Arc::new(Metrics::default());
        let conf = builder
            .interceptor(PlainHttpGuard)
            .interceptor(CountingInterceptor(Arc::clone(&metrics)))
            .retry_classifier(ThrottlesAreRetriedByTheAdapter)
            .build();
        let region = conf.region().map(ToString::to_string);
        let client = Client::from_conf(conf.clone());
        let shared =
            Arc::new(Shared { metrics, source: Source::Fixed(Box::new(conf)), clients: tokio::sync::Mutex::default() });
        let defaults = KmsConfig::default();
        Self {
            client,
            region,
            profile: None,
            shared,
            limit: Arc::new(RateLimiter::new(None, defaults.adaptive_rate)),
            patience: defaults.operation_timeout,
        }
    }

    /// The region this client sends requests to, if one is configured.
    pub fn region(&self) -> Option<&str> {
        self.region.as_deref()
    }

    /// The AWS profile this client was made with; `None` for the default chain.
    pub fn profile(&self) -> Option<&str> {
        self.profile.as_deref()
    }

    /// The client for `region` and `profile` (each `None`: this client's;
    /// with another profile and no region, the profile's region), made on
    /// first use and kept, sharing this client's counters, rate limit and
    /// settings.
    ///
    /// # Errors
    /// [`KmsErrorKind::Invalid`] for a profile when this client was made
    /// from a fixed SDK configuration.
    pub async fn scoped(&self, region: Option<&str>, profile: Option<&str>) -> Result<Self, KmsError> {
        let profile = profile.or(self.profile.as_deref());
        if region.is_none_or(|r| Some(r) == self.region.as_deref()) && profile == self.profile.as_deref() {
            return Ok(self.clone());
        }
        // Another profile brings its own region unless one is asked for.
        let region = if profile == self.profile.as_deref() { region.or(self.region.as_deref()) } else { region };
        let (client, actual_region) = {
            let key = (region.map(str::to_owned), profile.map(str::to_owned));
            let mut clients = self.shared.clients.lock().await;
            if let Some(found) = clients.get(&key) {
                found.clone()
            } else {
                if profile.is_some() && matches!(self.shared.source, Source::Fixed(_)) {
                    return Err(KmsError::new(
                        KmsErrorKind::Invalid,
                        "key reference",
                        &format!("?profile={}", profile.unwrap_or_default()),
                        "an AWS profile needs a client from the standard configuration chain (Kms::from_env)",
                    ));
                }
                let made = self.shared.make(region, profile).await;
                clients.insert(key, made.clone());
                made
            }
        };
        Ok(Self {
            client,
            region: actual_region,
            profile: profile.map(str::to_owned),
            shared: Arc::clone(&self.shared),
            limit: Arc::clone(&self.limit),
            patience: self.patience,
        })
    }

    /// The client for a key reference and the key part to send: a
    /// qualified reference goes to its region and profile, a key or alias
    /// ARN to its region (with this client's profile), anything else to
    /// this client. A string that is not a reference (a key id from an
    /// envelope, say) goes to this client as it is, for KMS to judge.
    async fn route<'k>(&self, key: &'k str) -> Result<(Self, &'k str), KmsError> {
        if key.contains('?') {
            let parsed = KeyRef::parse(key)?;
            let scoped = self.scoped(parsed.region(), parsed.profile()).await?;
            return Ok((scoped, &key[..parsed.key().len()]));
        }
        match arn_region(key) {
            Some(region) => Ok((self.scoped(Some(region), None).await?, key)),
            None => Ok((self.clone(), key)),
        }
    }

    /// The counters so far, over every region and profile.
    pub fn metrics(&self) -> MetricsSnapshot {
        self.shared.metrics.snapshot()
    }

    /// Makes one call of `operation` (counted once), `attempt` sending it:
    /// each attempt waits for the rate limiter, and ThrottlingException
    /// answers are retried here, paced by the adaptive rate, for up to the
    /// client's patience. The SDK's own retries (transient faults, timeouts)
    /// happen inside each attempt; it leaves throttling to this loop
    /// ([`ThrottlesAreRetriedByTheAdapter`]), so its retry budget is never
    /// spent on throttles and retried requests also wait for the limiter.
    async fn send<T, E, R, F, Fut>(&self, operation: &'static str, key: &str, attempt: F) -> Result<T, KmsError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, SdkError<E, R>>>,
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug + 'static,
    {
        self.shared.metrics.call(operation);
        let deadline = Instant::now() + self.patience;
        loop {
            self.limit.acquire().await;
            match attempt().await {
                Err(e) if is_throttling(&e) => {
                    self.limit.throttled();
                    if Instant::now() >= deadline {
                        return Err(KmsError::from_sdk(operation, key, e));
                    }
                }
                Err(e @ SdkError::ServiceError(_)) => {
                    self.limit.admitted();
                    return Err(KmsError::from_sdk(operation, key, e));
                }
                Err(e) => return Err(KmsError::from_sdk(operation, key, e)),
                Ok(out) => {
                    self.limit.admitted();
                    return Ok(out);
                }
            }
        }
    }

    /// ListAliases, first page (up to 100): the alias names of this
    /// client's region and account, and whether there are more.
    ///
    /// # Errors
    /// A [`KmsError`]; [`KmsErrorKind::AccessDenied`] when the caller may
    /// not list aliases.
    pub(crate) async fn alias_names(&self) -> Result<(Vec<String>, bool), KmsError> {
        const OP: &str = "ListAliases";
        let request = self.client.list_aliases().limit(100);
        let out = self.send(OP, "", || request.clone().send()).await?;
        let names = out.aliases().iter().filter_map(|a| a.alias_name().map(str::to_owned)).collect();
        Ok((names, out.truncated()))
    }

    /// DescribeKey.
    ///
    /// # Errors
    /// A [`KmsError`] naming the key.
    pub async fn describe(&self, key: &str) -> Result<KeyDescription, KmsError> {
        const OP: &str = "DescribeKey";
        let (kms, sent) = self.route(key).await?;
        let request = kms.client.describe_key().key_id(sent);
        let out = match kms.send(OP, key, || request.clone().send()).await {
            Ok(out) => out,
            Err(err) => {
                if err.kind() != KmsErrorKind::KeyNotFound {
                    return Err(err);
                }
                return Err(kms.explain_not_found(key, err).await);
            }
        };
        let meta =
            out.key_metadata().ok_or_else(|| KmsError::new(KmsErrorKind::Service, OP, key, "no key metadata"))?;
        Ok(KeyDescription {
            arn: required(OP, key, "key ARN", meta.arn())?.to_owned(),
            enabled: meta.enabled(),
            state: meta.key_state().map_or(UNKNOWN, KeyState::as_str).to_owned(),
            spec: meta.key_spec().map_or(UNKNOWN, KeySpec::as_str).to_owned(),
            usage: meta.key_usage().map_or(UNKNOWN, KeyUsageType::as_str).to_owned(),
        })
    }

    /// GenerateDataKey (AES_256): the data key, its ciphertext blob, and the key ARN.
    ///
    /// # Errors
    /// A [`KmsError`] naming the key.
    pub async fn generate_data_key(
        &self,
        key: &str,
        context: &EncryptionContext,
    ) -> Result<(DataKey, Vec<u8>, String), KmsError> {
        const OP: &str = "GenerateDataKey";
        let (kms, sent) = self.route(key).await?;
        let request = kms
            .client
            .generate_data_key()
            .key_id(sent)
            .key_spec(DataKeySpec::Aes256)
            .set_encryption_context(context_map(context));
        let mut out = kms.send(OP, key, || request.clone().send()).await?;
        let data_key = data_key(OP, key, out.plaintext.take())?;
        let blob =
            out.ciphertext_blob().ok_or_else(|| KmsError::new(KmsErrorKind::Service, OP, key, "no ciphertext"))?;
        Ok((data_key, blob.as_ref().to_vec(), required(OP, key, "key id", out.key_id())?.to_owned()))
    }

    /// Decrypt, pinned to `key` when given (always, in strict mode).
    /// Returns the data key and the ARN of the key that decrypted it.
    ///
    /// # Errors
    /// A [`KmsError`] naming the key.
    pub async fn decrypt(
        &self,
        blob: &[u8],
        key: Option<&str>,
        context: &EncryptionContext,
    ) -> Result<(DataKey, String), KmsError> {
        let (secret, used) = self.decrypt_any_len(blob, key, context).await?;
        Ok((thirty_two_bytes("Decrypt", key.unwrap_or(""), &secret)?, used))
    }

    /// [`Kms::decrypt`] of a key of any length (the AWS Encryption SDK's
    /// AES-128 and AES-192 suites wrap 16- and 24-byte data keys), zeroized
    /// on drop.
    ///
    /// # Errors
    /// A [`KmsError`] naming the key.
    pub async fn decrypt_any_len(
        &self,
        blob: &[u8],
        key: Option<&str>,
        context: &EncryptionContext,
    ) -> Result<(Zeroizing<Vec<u8>>, String), KmsError> {
        const OP: &str = "Decrypt";
        let named = key.unwrap_or("");
        let (kms, sent) = match key {
            Some(key) => {
                let (kms, sent) = self.route(key).await?;
                (kms, Some(sent))
            }
            None => (self.clone(), None),
        };
        let request = kms
            .client
            .decrypt()
            .ciphertext_blob(Blob::new(blob))
            .set_key_id(sent.map(str::to_owned))
            .set_encryption_context(context_map(context));
        let mut out = kms.send(OP, named, || request.clone().send()).await?;
        let data_key = secret(OP, named, out.plaintext.take())?;
        Ok((data_key, required(OP, named, "key id", out.key_id())?.to_owned()))
    }

    /// Encrypt an existing data key under `key`: the blob and the key ARN.
    ///
    /// # Errors
    /// A [`KmsError`] naming the key.
    pub async fn encrypt(
        &self,
        key: &str,
        data_key: &DataKey,
        context: &EncryptionContext,
    ) -> Result<(Vec<u8>, String), KmsError> {
        const OP: &str = "Encrypt";
        let (kms, sent) = self.route(key).await?;
        let request = kms
            .client
            .encrypt()
            .key_id(sent)
            // The SDK copies this into a `Blob` and a request body it does not
            // zeroize; there is no way to hand it a buffer it would wipe (nor
            // to the clone a retry of a throttled attempt sends).
            .plaintext(Blob::new(data_key.expose_secret().as_slice()))
            .set_encryption_context(context_map(context));
        let out = kms.send(OP, key, || request.clone().send()).await?;
        let blob =
            out.ciphertext_blob().ok_or_else(|| KmsError::new(KmsErrorKind::Service, OP, key, "no ciphertext"))?;
        Ok((blob.as_ref().to_vec(), required(OP, key, "key id", out.key_id())?.to_owned()))
    }

    /// ReEncrypt a ciphertext blob to `destination` inside KMS: the
    /// plaintext never leaves it. Returns the new blob, the destination ARN
    /// and the ARN of the key KMS decrypted with (its `SourceKeyId`), which
    /// the caller checks: a server that ignores the pinned source key (local
    /// test servers do) is caught there.
    ///
    /// # Errors
    /// A [`KmsError`] naming the destination key.
    pub async fn reencrypt(
        &self,
        blob: &[u8],
        source_key: Option<&str>,
        source_context: &EncryptionContext,
        destination: &str,
        destination_context: &EncryptionContext,
    ) -> Result<ReEncrypted, KmsError> {
        const OP: &str = "ReEncrypt";
        // ReEncrypt runs in the destination key's region; a source key in
        // another region is the caller's to avoid (KmsKeyring::rewrap does).
        let (kms, sent) = self.route(destination).await?;
        let request = kms
            .client
            .re_encrypt()
            .ciphertext_blob(Blob::new(blob))
            .set_source_key_id(source_key.filter(|k| !k.is_empty()).map(str::to_owned))
            .set_source_encryption_context(context_map(source_context))
            .destination_key_id(sent)
            .set_destination_encryption_context(context_map(destination_context));
        let out = kms.send(OP, destination, || request.clone().send()).await?;
        let blob = out
            .ciphertext_blob()
            .ok_or_else(|| KmsError::new(KmsErrorKind::Service, OP, destination, "no ciphertext"))?;
        Ok(ReEncrypted {
            blob: blob.as_ref().to_vec(),
            destination_key: required(OP, destination, "key id", out.key_id())?.to_owned(),
            source_key: required(OP, destination, "source key id", out.source_key_id())?.to_owned(),
        })
    }
}

/// What ReEncrypt answered.
#[derive(Debug, Clone)]
pub struct ReEncrypted {
    /// The new ciphertext blob.
    pub blob: Vec<u8>,
    /// The ARN of the key it is now encrypted under.
    pub destination_key: String,
    /// The ARN of the key KMS decrypted the old blob with.
    pub source_key: String,
}

impl Shared {
    /// A client for `region` and `profile` (`None`: the configuration's
    /// own), and the region it ends up with.
    async fn make(&self, region: Option<&str>, profile: Option<&str>) -> (Client, Option<String>) {
        let conf = match &self.source {
            Source::Env { retry, timeouts } => {
                let mut loader = aws_config::defaults(BehaviorVersion::latest())
                    .retry_config(retry.clone())
                    .timeout_config(timeouts.clone());
                if let Some(region) = region {
                    loader = loader.region(Region::new(region.to_owned()));
                }
                if let Some(profile) = profile {
                    loader = loader.profile_name(profile);
                }
                let sdk = loader.load().await;
                aws_sdk_kms::config::Builder::from(&sdk)
                    .interceptor(PlainHttpGuard)
                    .interceptor(CountingInterceptor(Arc::clone(&self.metrics)))
                    .retry_classifier(ThrottlesAreRetriedByTheAdapter)
                    .build()
            }
            Source::Fixed(conf) => {
                let mut builder = conf.to_builder();
                if let Some(region) = region {
                    builder = builder.region(Region::new(region.to_owned()));
                }
                builder.build()
            }
        };
        let region = conf.region().map(ToString::to_string);
        (Client::from_conf(conf), region)
    }
}

/// Whether KMS answered that the request was over its quota.
fn is_throttling<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> bool {
    matches!(err, SdkError::ServiceError(_))
        && matches!(err.code(), Some("ThrottlingException" | "LimitExceededException"))
}
