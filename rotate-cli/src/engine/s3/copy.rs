//! Copies that replace an object in place, carrying every property a copy
//! would otherwise drop, conditional on the object being as read.

use std::collections::HashMap;

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::{DateTime, DateTimeFormat};
use aws_sdk_s3::types::{
    CompletedMultipartUpload, CompletedPart, MetadataDirective, ObjectEncryption, ServerSideEncryption,
    SsekmsEncryption, TaggingDirective,
};

use super::client::{MIN_PART_SIZE, changed, describe, item_error, not_implemented, status};
use super::object::{Head, head};
use crate::engine::error::{Error, ErrorKind, ItemError, ItemErrorCode};

/// What a self-copy changes; everything else is carried over.
#[derive(Debug, Clone)]
pub(super) enum CopyChange {
    /// One user-metadata entry gets a new value.
    Metadata { name: String, value: String },
    /// The server-side encryption.
    Sse { algorithm: Option<ServerSideEncryption>, kms_key: Option<String>, bucket_key: Option<bool> },
}

/// The result of a write.
#[derive(Debug)]
pub(super) struct Written {
    pub(super) version_id: Option<String>,
}

pub(super) fn copy_source(bucket: &str, key: &str, version: Option<&str>) -> String {
    let mut source = format!("{bucket}/{}", encode_key(key));
    if let Some(v) = version {
        source.push_str("?versionId=");
        source.push_str(&encode_key(v));
    }
    source
}

/// Percent-encodes a key for `x-amz-copy-source` (slashes kept).
pub(super) fn encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub(super) fn parse_expires(head: &Head) -> Result<Option<DateTime>, ItemError> {
    match &head.expires {
        None => Ok(None),
        Some(text) => DateTime::from_str(text, DateTimeFormat::HttpDate).map(Some).map_err(|_| {
            ItemError::new(
                ItemErrorCode::BadInput,
                format!("the object's Expires header {text:?} is not an HTTP date; a copy could not keep it"),
            )
        }),
    }
}

/// Copies an object onto itself with `change`, carrying everything else
/// over; in parts above `multipart_from`.
pub(super) async fn self_copy(
    client: &Client,
    bucket: &str,
    key: &str,
    read: &Head,
    change: &CopyChange,
    multipart_from: u64,
    part_size: u64,
) -> Result<Written, ItemError> {
    let mut metadata: HashMap<String, String> = read.metadata.clone().into_iter().collect();
    let (sse, kms_key, bucket_key) = match change {
        CopyChange::Metadata { name, value } => {
            metadata.insert(name.to_ascii_lowercase(), value.clone());
            (read.sse.clone(), read.kms_key().map(str::to_owned), read.bucket_key.filter(|_| read.is_kms()))
        }
        CopyChange::Sse { algorithm, kms_key, bucket_key } => (algorithm.clone(), kms_key.clone(), *bucket_key),
    };
    let expires = parse_expires(read)?;
    if read.size > multipart_from {
        return multipart_copy(client, bucket, key, read, metadata, (sse, kms_key, bucket_key), expires, part_size)
            .await;
    }
    #[allow(deprecated)]
    let request = client
        .copy_object()
        .bucket(bucket)
        .key(key)
        .copy_source(copy_source(bucket, key, read.version_id.as_deref()))
        .copy_source_if_match(&read.etag)
        .metadata_directive(MetadataDirective::Replace)
        .set_metadata(Some(metadata))
        .tagging_directive(TaggingDirective::Copy)
        .set_content_type(read.content_type.clone())
        .set_content_encoding(read.content_encoding.clone())
        .set_content_disposition(read.content_disposition.clone())
        .set_content_language(read.content_language.clone())
        .set_cache_control(read.cache_control.clone())
        .set_expires(expires)
        .set_website_redirect_location(read.website_redirect.clone())
        .set_storage_class(read.storage_class.clone())
        .set_ssekms_encryption_context(read.context_for(sse.as_ref()))
        .set_server_side_encryption(sse)
        .set_ssekms_key_id(kms_key)
        .set_bucket_key_enabled(bucket_key)
        .set_object_lock_mode(read.lock_mode.clone())
        .set_object_lock_retain_until_date(read.lock_until)
        .set_object_lock_legal_hold_status(read.legal_hold.clone());
    let out = request.send().await.map_err(|e| item_error("CopyObject", &e))?;
    Ok(Written { version_id: out.version_id().map(str::to_owned) })
}

/// A copy in parts: CreateMultipartUpload with every property, UploadPartCopy
/// per range (each conditional on the ETag read), CompleteMultipartUpload;
/// the upload is aborted on any failure.
#[allow(clippy::too_many_arguments)]
pub(super) async fn multipart_copy(
    client: &Client,
    bucket: &str,
    key: &str,
    read: &Head,
    metadata: HashMap<String, String>,
    (sse, kms_key, bucket_key): (Option<ServerSideEncryption>, Option<String>, Option<bool>),
    expires: Option<DateTime>,
    part_size: u64,
) -> Result<Written, ItemError> {
    let part_size = part_size.max(MIN_PART_SIZE);
    let tags = client
        .get_object_tagging()
        .bucket(bucket)
        .key(key)
        .set_version_id(read.version_id.clone())
        .send()
        .await
        .map_err(|e| item_error("GetObjectTagging", &e))?;
    let tagging: Vec<String> =
        tags.tag_set().iter().map(|t| format!("{}={}", form_encode(t.key()), form_encode(t.value()))).collect();
    #[allow(deprecated)]
    let created = client
        .create_multipart_upload()
        .bucket(bucket)
        .key(key)
        .set_metadata(Some(metadata))
        .set_tagging(if tagging.is_empty() { None } else { Some(tagging.join("&")) })
        .set_content_type(read.content_type.clone())
        .set_content_encoding(read.content_encoding.clone())
        .set_content_disposition(read.content_disposition.clone())
        .set_content_language(read.content_language.clone())
        .set_cache_control(read.cache_control.clone())
        .set_expires(expires)
        .set_website_redirect_location(read.website_redirect.clone())
        .set_storage_class(read.storage_class.clone())
        .set_ssekms_encryption_context(read.context_for(sse.as_ref()))
        .set_server_side_encryption(sse)
        .set_ssekms_key_id(kms_key)
        .set_bucket_key_enabled(bucket_key)
        .set_object_lock_mode(read.lock_mode.clone())
        .set_object_lock_retain_until_date(read.lock_until)
        .set_object_lock_legal_hold_status(read.legal_hold.clone())
        .send()
        .await
        .map_err(|e| item_error("CreateMultipartUpload", &e))?;
    let upload_id = created
        .upload_id()
        .ok_or_else(|| ItemError::new(ItemErrorCode::Io, "CreateMultipartUpload returned no upload id"))?
        .to_owned();
    let parts = async {
        let mut parts = Vec::new();
        let mut start = 0u64;
        let mut number = 1i32;
        while start < read.size {
            let end = (start + part_size).min(read.size) - 1;
            let out = client
                .upload_part_copy()
                .bucket(bucket)
                .key(key)
                .upload_id(&upload_id)
                .part_number(number)
                .copy_source(copy_source(bucket, key, read.version_id.as_deref()))
                .copy_source_if_match(&read.etag)
                .copy_source_range(format!("bytes={start}-{end}"))
                .send()
                .await
                .map_err(|e| item_error("UploadPartCopy", &e))?;
            let etag = out.copy_part_result().and_then(|r| r.e_tag()).unwrap_or_default().to_owned();
            parts.push(CompletedPart::builder().part_number(number).e_tag(etag).build());
            start = end + 1;
            number += 1;
        }
        let done = client
            .complete_multipart_upload()
            .bucket(bucket)
            .key(key)
            .upload_id(&upload_id)
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
            .send()
            .await
            .map_err(|e| item_error("CompleteMultipartUpload", &e))?;
        Ok::<_, ItemError>(Written { version_id: done.version_id().map(str::to_owned) })
    }
    .await;
    if parts.is_err() {
        let _ = client.abort_multipart_upload().bucket(bucket).key(key).upload_id(&upload_id).send().await;
    }
    parts
}

/// Decodes `%XX` escapes (and `+` as a space, as S3 Inventory writes them).
pub(super) fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// `application/x-www-form-urlencoded` for the tagging header.
pub(super) fn form_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `UpdateObjectEncryption`: the new SSE-KMS key, no data moved.
/// `Ok(false)` when the endpoint says it does not implement the operation.
pub(super) async fn update_encryption(
    client: &Client,
    bucket: &str,
    key: &str,
    read: &Head,
    to: &str,
    bucket_key: Option<bool>,
) -> Result<bool, ItemError> {
    let encryption = SsekmsEncryption::builder()
        .kms_key_arn(to)
        .set_bucket_key_enabled(bucket_key)
        .build()
        .map_err(|e| ItemError::new(ItemErrorCode::BadInput, format!("UpdateObjectEncryption: {e}")))?;
    let sent = client
        .update_object_encryption()
        .bucket(bucket)
        .key(key)
        .set_version_id(read.version_id.clone())
        .object_encryption(ObjectEncryption::Ssekms(encryption))
        .send()
        .await;
    match sent {
        Ok(_) => Ok(true),
        Err(e) if not_implemented(&e) => Ok(false),
        Err(e) => Err(item_error("UpdateObjectEncryption", &e)),
    }
}

/// Whether the endpoint really implements `UpdateObjectEncryption`, asked
/// once before any object is touched, on a key that does not exist: S3
/// answers 404. A server that does not know the operation may answer that it
/// does not implement it, or (as moto does) take the request for a PutObject
/// and create an object holding the XML body, which would destroy a real
/// object's data: that object is deleted again and the answer is no.
///
/// # Errors
/// Failures that say nothing about the operation (network, access).
pub async fn update_supported(client: &Client, bucket: &str, prefix: &str, to: &str) -> Result<bool, Error> {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let key = format!("{prefix}.rekey-update-probe-{}-{nanos}", std::process::id());
    let encryption = SsekmsEncryption::builder()
        .kms_key_arn(to)
        .build()
        .map_err(|e| Error::usage(format!("UpdateObjectEncryption: {e}")))?;
    let sent = client
        .update_object_encryption()
        .bucket(bucket)
        .key(&key)
        .object_encryption(ObjectEncryption::Ssekms(encryption))
        .send()
        .await;
    match sent {
        Err(e) if status(&e) == Some(404) => Ok(true),
        Err(e) if not_implemented(&e) => Ok(false),
        Err(e) => Err(Error::new(
            ErrorKind::Io,
            format!("cannot tell whether the endpoint implements UpdateObjectEncryption: {}", describe(&e)),
        )
        .hint("pass --method copy to use self-copies, or check s3:UpdateObjectEncryption permissions")),
        Ok(_) => {
            tracing::warn!(
                "the endpoint accepted UpdateObjectEncryption on a missing key (it took it for a PutObject); \
                 removing {key} and copying instead"
            );
            let _ = client.delete_object().bucket(bucket).key(&key).send().await;
            Ok(false)
        }
    }
}

/// Every property of the object as read (a [`Head`]) on a request that
/// replaces it (PutObject, CreateMultipartUpload): the two SDK builders
/// share these setters but no trait.
macro_rules! carry_properties {
    ($request:expr, $read:expr, $tags:expr, $expires:expr) => {{
        let read: &Head = $read;
        #[allow(deprecated)] // `expires`, kept as the object had it
        let request = $request
            .set_metadata(Some(read.metadata.clone().into_iter().collect()))
            .set_tagging($tags)
            .set_content_type(read.content_type.clone())
            .set_content_encoding(read.content_encoding.clone())
            .set_content_disposition(read.content_disposition.clone())
            .set_content_language(read.content_language.clone())
            .set_cache_control(read.cache_control.clone())
            .set_expires($expires)
            .set_website_redirect_location(read.website_redirect.clone())
            .set_storage_class(read.storage_class.clone())
            .set_ssekms_encryption_context(read.context_for(read.sse.as_ref()))
            .set_server_side_encryption(read.sse.clone())
            .set_ssekms_key_id(read.kms_key().map(str::to_owned))
            .set_bucket_key_enabled(read.bucket_key.filter(|_| read.is_kms()))
            .set_object_lock_mode(read.lock_mode.clone())
            .set_object_lock_retain_until_date(read.lock_until)
            .set_object_lock_legal_hold_status(read.legal_hold.clone());
        request
    }};
}

/// CopyObject from `from` (a key, a version of it, and the ETag it must
/// still have) to `to`, keeping metadata, tags
/// and content headers (`COPY` directives) and resending the source's
/// storage class and server-side encryption; conditional on `to_etag` being
/// the destination's current ETag when given (checked by a read just before),
/// and on `to` not existing without it (a read just before, and
/// `If-None-Match: *`, which S3 enforces on copies).
pub(super) async fn copy_object_to(
    client: &Client,
    bucket: &str,
    (from, from_version, from_etag): (&str, Option<&str>, Option<&str>),
    to: &str,
    to_etag: Option<&str>,
    sse_context: Option<&str>,
) -> Result<(), ItemError> {
    let source = client
        .head_object()
        .bucket(bucket)
        .key(from)
        .set_version_id(from_version.map(str::to_owned))
        .send()
        .await
        .map_err(|e| item_error("HeadObject", &e))?;
    if from_etag.is_some_and(|etag| source.e_tag() != Some(etag)) {
        return Err(ItemError::new(
            ItemErrorCode::ChangedDuringRotation,
            format!("s3://{bucket}/{from} changed while it was being checked"),
        ));
    }
    if let Some(etag) = to_etag {
        let now = head(client, bucket, to).await?;
        if now.etag != etag {
            return Err(changed());
        }
    } else {
        match client.head_object().bucket(bucket).key(to).send().await {
            Ok(_) => {
                return Err(ItemError::new(
                    ItemErrorCode::Io,
                    format!("s3://{bucket}/{to} already exists, and a backup is never written over"),
                ));
            }
            Err(e) if status(&e) == Some(404) => {}
            Err(e) => return Err(item_error("HeadObject", &e)),
        }
    }
    let is_kms = matches!(
        source.server_side_encryption(),
        Some(ServerSideEncryption::AwsKms | ServerSideEncryption::AwsKmsDsse)
    );
    let copy = client
        .copy_object()
        .bucket(bucket)
        .key(to)
        .copy_source(copy_source(bucket, from, from_version))
        .set_copy_source_if_match(source.e_tag().map(str::to_owned))
        .metadata_directive(MetadataDirective::Copy)
        .tagging_directive(TaggingDirective::Copy)
        .set_storage_class(source.storage_class().cloned())
        .set_server_side_encryption(source.server_side_encryption().cloned())
        .set_ssekms_encryption_context(sse_context.filter(|_| is_kms).map(str::to_owned))
        .set_ssekms_key_id(source.ssekms_key_id().filter(|_| is_kms).map(str::to_owned))
        .set_bucket_key_enabled(source.bucket_key_enabled().filter(|_| is_kms));
    let fresh = to_etag.is_none();
    match copy.clone().set_if_none_match(fresh.then(|| "*".to_owned())).send().await {
        Ok(_) => Ok(()),
        // A server without conditional copies: the name was seen free just before.
        Err(e) if fresh && not_implemented(&e) => {
            copy.send().await.map_err(|e| item_error("CopyObject", &e))?;
            Ok(())
        }
        Err(e) => Err(item_error("CopyObject", &e)),
    }
}

pub(super) use carry_properties;
