//! Objects written by the Amazon S3 Encryption Client: their wrapped data
//! key re-wrapped by KMS under the object's own encryption context (read
//! with [`envelope_core::s3ec`]), then the one entry holding it replaced:
//! by the method-A self-copy when it is in the object's metadata, by a
//! conditional rewrite of the instruction file (its original kept as for
//! re-encryptions) when it is there. The body is never read.

use std::sync::Arc;

use aws_sdk_s3::Client;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use envelope_core::EncryptionContext;
use envelope_core::s3ec::{self, ContentMetadata, Status, Wrapping};
use serde_json::{Value, json};

use super::body::{get_bytes, reencrypt_whole};
use super::client::{item_error, status};
use super::object::{Head, KeyPlace, Shared, head};
use crate::engine::error::{Error, ErrorKind, ItemError, ItemErrorCode};
use crate::engine::item::Item;
use crate::engine::journal::Journal;

/// What a load found: the content metadata and where the key is.
pub(super) struct Found {
    pub(super) meta: ContentMetadata,
    pub(super) place: KeyPlace,
}

/// Reads an object's S3 Encryption Client metadata, from its own metadata
/// or its instruction file (`suffix`). `Ok(None)`: not such an object.
pub(super) async fn find(
    (client, bucket): (&Client, &str),
    key: &str,
    head_read: &Head,
    suffix: &str,
) -> Result<Option<Found>, ItemError> {
    let bad =
        |e: s3ec::S3ecError| ItemError::new(ItemErrorCode::BadInput, format!("S3 Encryption Client metadata: {e}"));
    match s3ec::parse(&head_read.metadata).map_err(bad)? {
        Status::Complete(meta) => {
            let entry = meta.key_entry;
            Ok(Some(Found { meta: *meta, place: KeyPlace::Metadata { entry } }))
        }
        marked @ (Status::InstructionFile | Status::NotMarked) => {
            let instruction = format!("{key}{suffix}");
            let exists = match client.head_object().bucket(bucket).key(&instruction).send().await {
                Ok(_) => true,
                Err(e) if status(&e) == Some(404) => false,
                Err(e) => return Err(item_error("HeadObject (instruction file)", &e)),
            };
            if !exists {
                return match marked {
                    Status::NotMarked => Ok(None),
                    _ => Err(ItemError::new(
                        ItemErrorCode::MissingField,
                        format!(
                            "the object has S3 Encryption Client V3 content entries but no instruction file \
                             {instruction}; name its suffix with --instruction-suffix"
                        ),
                    )),
                };
            }
            let ihead = head(client, bucket, &instruction).await?;
            if ihead.size > s3ec::MAX_INSTRUCTION_FILE_LEN as u64 {
                return Err(ItemError::input(format!(
                    "the instruction file {instruction} is {} bytes, more than any S3 Encryption Client writes",
                    ihead.size
                )));
            }
            let body = get_bytes(client, bucket, &instruction, &ihead, None).await?;
            let meta = s3ec::parse_with_instruction_file(&head_read.metadata, &body).map_err(bad)?;
            let entry = meta.key_entry;
            Ok(Some(Found {
                meta,
                place: KeyPlace::InstructionFile { key: instruction, head: Box::new(ihead), body, entry },
            }))
        }
    }
}

/// The item of a found object: the wrapped key's base64 text and the KMS
/// context it was made under; or why it cannot be re-wrapped.
pub(super) fn item_of(found: &Found, head_read: &Head, item: &mut Item) {
    let meta = &found.meta;
    match &found.place {
        KeyPlace::Metadata { entry } => {
            item.bytes = head_read.metadata.get(*entry).map(|v| v.as_bytes().to_vec()).unwrap_or_default();
        }
        KeyPlace::InstructionFile { .. } => item.bytes = STANDARD.encode(&meta.wrapped_key).into_bytes(),
    }
    let refused = |why: String| {
        Some(Err(ItemError::new(
            ItemErrorCode::BadInput,
            format!(
                "{why}; nothing was changed. Move it with `rekey reencrypt` (S3 Encryption Client objects are not \
                 re-encrypted by rekey yet) or by decrypting and writing it again with the client"
            ),
        )))
    };
    match &meta.wrapping {
        Wrapping::KmsContext => match meta.kms_context().map(|c| EncryptionContext::from_pairs(c.clone())) {
            Some(Ok(context)) => item.context = context,
            Some(Err(e)) => item.result = refused(format!("its KMS encryption context cannot be used: {e}")),
            None => item.result = refused("internal: kms+context without a context".into()),
        },
        Wrapping::KmsLegacy => {
            let key = meta.stored_context.get(s3ec::KMS_CMK_ID_CONTEXT_KEY).map_or("?", String::as_str);
            item.result = refused(format!(
                "legacy `kms` key wrapping ({} object): its KMS encryption context is the key id itself \
                 (kms_cmk_id={key}), so a data key re-wrapped under another key would no longer match it",
                meta.version
            ));
        }
        Wrapping::Raw(name) => {
            item.result = refused(format!(
                "its data key is wrapped by a raw {name} keyring, not by KMS: rekey cannot re-wrap it without that key"
            ));
        }
    }
}

/// Writes a re-wrapped key into the instruction file: journal (the
/// original kept, as for re-encryptions), then a conditional PutObject of
/// the file with only that entry changed.
pub(super) async fn write_instruction_file(
    shared: &Arc<Shared>,
    journal: &Journal,
    id: &str,
    (key, ihead, body, entry): (&str, &Head, &[u8], &str),
    new_value: &str,
    backup_prefix: &str,
) -> Result<(), ItemError> {
    let new = s3ec::replace_instruction_key(body, entry, new_value)
        .map_err(|e| ItemError::input(format!("cannot rewrite the instruction file {key}: {e}")))?;
    reencrypt_whole(&shared.client, &shared.bucket, key, ihead, journal, id, body, new, backup_prefix).await
}

/// Under `--verify`, for V3: the new wrapped key (`new_value`, base64)
/// opened by the destination alone must be the key the object's stored
/// commitment (`x-amz-d`) was made for; otherwise the object was tampered
/// with (or its key swapped) and is not written.
pub(super) async fn check_commitment(
    shared: &Shared,
    (read, place): (&Head, &KeyPlace),
    context: &EncryptionContext,
    new_value: &str,
) -> Result<(), ItemError> {
    let Some(transform) = shared.probe.as_ref().map(|p| &p.transform).filter(|t| t.verifies()) else {
        return Ok(());
    };
    let meta = match place {
        KeyPlace::Metadata { .. } => match s3ec::parse(&read.metadata) {
            Ok(Status::Complete(meta)) => *meta,
            _ => return Ok(()),
        },
        KeyPlace::InstructionFile { body, .. } => match s3ec::parse_with_instruction_file(&read.metadata, body) {
            Ok(meta) => meta,
            Err(_) => return Ok(()),
        },
    };
    if meta.key_commitment.is_none() {
        return Ok(());
    }
    let Some(destination) = transform.destination() else {
        return Ok(());
    };
    let blob = STANDARD
        .decode(new_value.trim_ascii())
        .map_err(|_| ItemError::input("internal: a new key that is not base64"))?;
    let edk = envelope_core::EncryptedDataKey::new(destination.provider_id(), destination.key_id(), blob)
        .map_err(|e| ItemError::input(e.to_string()))?;
    let data_key = destination.unwrap(std::slice::from_ref(&edk), context).await?;
    if meta.commits_to(data_key.expose_secret()) == Some(true) {
        Ok(())
    } else {
        Err(ItemError::new(
            ItemErrorCode::VerifyFailed,
            "the object's key commitment (x-amz-d) is not that of its data key: its metadata was tampered with or \
             its wrapped key swapped; nothing was written (the S3 Encryption Client refuses this object too)",
        ))
    }
}

/// `rekey inspect s3://BUCKET/KEY`: what one object's S3 Encryption
/// Client metadata (or its instruction file) says, without any key.
///
/// # Errors
/// The object cannot be read, or its S3 Encryption Client metadata does not parse.
pub async fn inspect_object(client: &Client, bucket: &str, key: &str, suffix: &str) -> Result<Value, Error> {
    let fail = |e: ItemError| Error::new(ErrorKind::BadInput, format!("s3://{bucket}/{key}: {}", e.message));
    let read = head(client, bucket, key).await.map_err(fail)?;
    let found = find((client, bucket), key, &read, suffix).await.map_err(fail)?;
    let mut report = json!({
        "object": format!("s3://{bucket}/{key}"),
        "size": read.size,
        "server_side_encryption": read.sse.as_ref().map(|s| s.as_str().to_owned()),
        "sse_kms_key": read.kms_key(),
    });
    let Some(found) = found else {
        report["s3_encryption_client"] = json!(false);
        return Ok(report);
    };
    let meta = &found.meta;
    report["s3_encryption_client"] = json!(true);
    report["format_version"] = json!(meta.version.to_string());
    report["wrapping"] = json!(meta.wrapping.to_string());
    report["content_cipher"] = json!(meta.cipher.to_string());
    report["authenticated"] = json!(meta.cipher.authenticated());
    report["key_entry"] = json!(meta.key_entry);
    report["wrapped_key_bytes"] = json!(meta.wrapped_key.len());
    report["key_in"] = match &found.place {
        KeyPlace::Metadata { .. } => json!("object metadata"),
        KeyPlace::InstructionFile { key, .. } => json!(format!("instruction file s3://{bucket}/{key}")),
    };
    if let Some(context) = meta.kms_context() {
        report["kms_encryption_context"] = json!(context);
    }
    if let Some(kms_key) = meta.stored_context.get(s3ec::KMS_CMK_ID_CONTEXT_KEY) {
        report["kms_key"] = json!(kms_key);
    }
    let mut rotation = match &meta.wrapping {
        Wrapping::KmsContext => "rekey rewrap --items s3ec re-wraps its data key (the body is not read)".to_owned(),
        Wrapping::KmsLegacy => "legacy kms wrapping: its context names the key, so it cannot be re-wrapped".to_owned(),
        Wrapping::Raw(_) => "raw-keyring wrapping: rekey cannot re-wrap it".to_owned(),
    };
    if !meta.cipher.authenticated() {
        rotation.push_str("; unauthenticated content (AES/CBC): migrate it to V3");
    }
    report["rotation"] = json!(rotation);
    Ok(report)
}
