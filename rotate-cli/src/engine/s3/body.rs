//! Envelope bodies re-encrypted: read whole below a threshold, streamed
//! frame by frame in multipart parts above it.

use std::sync::Arc;

use aws_sdk_s3::Client;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};

use super::backup::keep_original;
use super::client::{MIN_PART_SIZE, io_error, item_error};
use super::copy::{carry_properties, copy_source, form_encode, parse_expires};
use super::object::{Head, still_as_read};
use crate::engine::error::{ItemError, ItemErrorCode};
use crate::engine::journal::{self, Entry, Journal, ObjectUndo};
use crate::engine::transform::StreamJob;

/// Objects up to this size are read whole; larger ones only by their header.
pub const READ_WHOLE_UP_TO: u64 = 8 << 20;

/// The largest envelope header read.
pub(super) const MAX_HEADER: usize = 4 << 20;

/// Body bytes sent with the new header in the first part of a rewrite.
pub(super) const FIRST_PART_BODY: u64 = 8 << 20;

/// Ranges copied server-side per part of a rewrite.
pub(super) const COPY_PART: u64 = 256 << 20;

/// GetObject of the version read, conditional on its ETag; a byte range or all.
pub(super) async fn get_bytes(
    client: &Client,
    bucket: &str,
    key: &str,
    read: &Head,
    range: Option<(u64, u64)>,
) -> Result<Vec<u8>, ItemError> {
    let out = client
        .get_object()
        .bucket(bucket)
        .key(key)
        .set_version_id(read.version_id.clone())
        .if_match(&read.etag)
        .set_range(range.map(|(a, b)| format!("bytes={a}-{b}")))
        .send()
        .await
        .map_err(|e| item_error("GetObject", &e))?;
    let body = out.body.collect().await.map_err(|e| io_error("cannot read the object", &e))?;
    Ok(body.into_bytes().to_vec())
}

/// The header of a framed envelope (growing ranged GETs); `None` when the
/// object is not a framed envelope.
pub(super) async fn read_header(
    client: &Client,
    bucket: &str,
    key: &str,
    read: &Head,
) -> Result<Option<Vec<u8>>, ItemError> {
    let options = envelope_core::hazmat::ParseOptions { max_encrypted_data_keys: 255 };
    let mut want: u64 = 64 << 10;
    loop {
        let end = want.min(read.size).saturating_sub(1);
        let mut bytes = get_bytes(client, bucket, key, read, Some((0, end))).await?;
        match envelope_core::hazmat::Header::parse_prefix(&bytes, &options) {
            Ok((header, _, len)) => {
                bytes.truncate(len);
                return Ok(matches!(header.body_form, envelope_core::hazmat::BodyForm::Framed { .. }).then_some(bytes));
            }
            Err(envelope_core::FormatError::Truncated(_))
                if want < read.size && usize::try_from(want).is_ok_and(|w| w < MAX_HEADER) =>
            {
                want *= 4;
            }
            Err(_) => return Ok(None),
        }
    }
}

/// The object's tags as the `x-amz-tagging` header wants them.
pub(super) async fn tagging(
    client: &Client,
    bucket: &str,
    key: &str,
    read: &Head,
) -> Result<Option<String>, ItemError> {
    let tags = client
        .get_object_tagging()
        .bucket(bucket)
        .key(key)
        .set_version_id(read.version_id.clone())
        .send()
        .await
        .map_err(|e| item_error("GetObjectTagging", &e))?;
    let pairs: Vec<String> =
        tags.tag_set().iter().map(|t| format!("{}={}", form_encode(t.key()), form_encode(t.value()))).collect();
    Ok(if pairs.is_empty() { None } else { Some(pairs.join("&")) })
}

/// PutObject of a whole new body, every property carried over, conditional
/// (`If-Match`) on the ETag read.
pub(super) async fn put_whole(
    client: &Client,
    bucket: &str,
    key: &str,
    read: &Head,
    body: Vec<u8>,
) -> Result<(), ItemError> {
    let expires = parse_expires(read)?;
    let tags = tagging(client, bucket, key, read).await?;
    let request = client
        .put_object()
        .bucket(bucket)
        .key(key)
        .if_match(&read.etag)
        .body(aws_sdk_s3::primitives::ByteStream::from(body));
    carry_properties!(request, read, tags, expires).send().await.map_err(|e| item_error("PutObject", &e))?;
    Ok(())
}

/// Replaces the first `old_header_len` bytes of a large object by `header`:
/// a multipart upload whose first part is the new header and the body's
/// first bytes (one ranged GET), the rest ranges of the object itself copied
/// by S3 (`UploadPartCopy`, each conditional on the ETag read).
pub(super) async fn rewrite_header(
    client: &Client,
    bucket: &str,
    key: &str,
    read: &Head,
    header: &[u8],
    old_header_len: usize,
) -> Result<(), ItemError> {
    let upload_id = create_upload(client, bucket, key, read).await?;
    let result = async {
        let body_start = old_header_len as u64;
        let first_end = (body_start + FIRST_PART_BODY).min(read.size);
        let mut first = header.to_vec();
        if first_end > body_start {
            first.extend(get_bytes(client, bucket, key, read, Some((body_start, first_end - 1))).await?);
        }
        let out = client
            .upload_part()
            .bucket(bucket)
            .key(key)
            .upload_id(&upload_id)
            .part_number(1)
            .body(aws_sdk_s3::primitives::ByteStream::from(first))
            .send()
            .await
            .map_err(|e| item_error("UploadPart", &e))?;
        let mut parts = vec![CompletedPart::builder().part_number(1).set_e_tag(out.e_tag().map(str::to_owned)).build()];
        let mut start = first_end;
        let mut number = 2;
        while start < read.size {
            let end = (start + COPY_PART).min(read.size) - 1;
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
            let etag = out.copy_part_result().and_then(|r| r.e_tag()).map(str::to_owned);
            parts.push(CompletedPart::builder().part_number(number).set_e_tag(etag).build());
            start = end + 1;
            number += 1;
        }
        complete_upload(client, bucket, key, read, &upload_id, parts).await
    }
    .await;
    if result.is_err() {
        let _ = client.abort_multipart_upload().bucket(bucket).key(key).upload_id(&upload_id).send().await;
    }
    result
}

/// Starts the multipart upload of an object's replacement, with every
/// property of the object as read carried over.
pub(super) async fn create_upload(client: &Client, bucket: &str, key: &str, read: &Head) -> Result<String, ItemError> {
    let expires = parse_expires(read)?;
    let tags = tagging(client, bucket, key, read).await?;
    let request = client.create_multipart_upload().bucket(bucket).key(key);
    let created = carry_properties!(request, read, tags, expires)
        .send()
        .await
        .map_err(|e| item_error("CreateMultipartUpload", &e))?;
    Ok(created
        .upload_id()
        .ok_or_else(|| ItemError::new(ItemErrorCode::Io, "CreateMultipartUpload returned no upload id"))?
        .to_owned())
}

/// Completes a replacement only if the object is still the one read.
pub(super) async fn complete_upload(
    client: &Client,
    bucket: &str,
    key: &str,
    read: &Head,
    upload_id: &str,
    parts: Vec<CompletedPart>,
) -> Result<(), ItemError> {
    // Checked here too: some servers ignore If-Match on this call (S3 honours it).
    still_as_read(client, bucket, key, read).await?;
    client
        .complete_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(upload_id)
        .if_match(&read.etag)
        .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
        .send()
        .await
        .map_err(|e| item_error("CompleteMultipartUpload", &e))?;
    Ok(())
}

/// Parts of a streamed re-encryption: S3's least (but for the last part).
/// At most three are in memory: one filling, one queued, one uploading.
#[allow(clippy::cast_possible_truncation)] // 5 MiB
pub(super) const STREAM_PART: usize = MIN_PART_SIZE as usize;

/// A re-encryption of an object too large to hold: the original is kept
/// first (as for small objects); the object is then read, decrypted and
/// sealed frame by frame into a multipart upload (constant memory, the
/// plaintext only in zeroized chunks in memory); the journal entry goes in
/// once the new object's hash is known, and the upload completes only if
/// the object is still the one read and every frame authenticated.
#[allow(clippy::too_many_arguments)]
pub(super) async fn reencrypt_streamed(
    client: &Client,
    bucket: &str,
    key: &str,
    read: &Head,
    journal: &Journal,
    id: &str,
    job: Arc<StreamJob>,
    backup_prefix: &str,
) -> Result<(), ItemError> {
    still_as_read(client, bucket, key, read).await?;
    let backup_key = keep_original(client, bucket, key, read, backup_prefix).await?;
    let upload_id = create_upload(client, bucket, key, read).await?;
    let result = async {
        let (parts, old_sha256, new_sha256) = upload_reencrypted(client, bucket, key, read, &upload_id, job).await?;
        let entry = Entry::Object {
            item: id.to_owned(),
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            version_id: read.version_id.clone(),
            etag: read.etag.clone(),
            undo: ObjectUndo::Original { backup_key, version_id: read.version_id.clone(), old_sha256, new_sha256 },
        };
        journal.append(&entry, true).map_err(|e| io_error("cannot write the journal", &e))?;
        complete_upload(client, bucket, key, read, &upload_id, parts).await
    }
    .await;
    match result {
        Ok(()) => journal
            .append(&Entry::Done { item: id.to_owned() }, false)
            .map_err(|e| io_error("cannot write the journal", &e)),
        Err(e) => {
            let _ = client.abort_multipart_upload().bucket(bucket).key(key).upload_id(&upload_id).send().await;
            if e.code == ItemErrorCode::ChangedDuringRotation {
                let _ = journal.append(&Entry::Abandoned { item: id.to_owned() }, false);
            }
            Err(e)
        }
    }
}

/// Reads the object (the version read, if it still has that ETag), re-encrypts
/// it and uploads the result as parts of `upload_id`; returns the parts and
/// the SHA-256 of the original and of the new object.
pub(super) async fn upload_reencrypted(
    client: &Client,
    bucket: &str,
    key: &str,
    read: &Head,
    upload_id: &str,
    job: Arc<StreamJob>,
) -> Result<(Vec<CompletedPart>, String, String), ItemError> {
    use sha2::Digest as _;
    let object = client
        .get_object()
        .bucket(bucket)
        .key(key)
        .set_version_id(read.version_id.clone())
        .if_match(&read.etag)
        .send()
        .await
        .map_err(|e| item_error("GetObject", &e))?;
    let mut body = object.body;
    let (chunks, chunks_rx) = std::sync::mpsc::sync_channel(crate::engine::files::PIPE_CHUNKS);
    let (parts_tx, mut parts_rx) = tokio::sync::mpsc::channel::<Vec<u8>>(1);
    // Three stages at once, each waiting on the next: the download into a
    // pipe, the decryption and sealing, and the upload of each full part.
    let handle = tokio::runtime::Handle::current();
    let feeding = tokio::task::spawn_blocking(move || -> Result<(), ItemError> {
        while let Some(chunk) = handle.block_on(body.next()) {
            let chunk = chunk.map_err(|e| io_error("cannot read the object", &e))?;
            if chunks.send(zeroize::Zeroizing::new(chunk.to_vec())).is_err() {
                break; // the sealing side stopped and says why
            }
        }
        Ok(())
    });
    let sealing = tokio::task::spawn_blocking(move || -> Result<(String, String), ItemError> {
        let mut reader =
            HashingPipe { pipe: crate::engine::files::PipeReader::new(chunks_rx), hash: sha2::Sha256::new() };
        let mut writer =
            PartWriter { parts: parts_tx, part: Vec::with_capacity(STREAM_PART), hash: sha2::Sha256::new() };
        crate::engine::files::reencrypt_stream(&job, &mut reader, &mut writer)?;
        writer.send_part().map_err(|e| io_error("cannot upload", &e))?;
        Ok((journal::hex(&reader.hash.finalize()), journal::hex(&writer.hash.finalize())))
    });
    let uploading = async move {
        let mut parts = Vec::new();
        let mut number = 1;
        while let Some(part) = parts_rx.recv().await {
            let out = client
                .upload_part()
                .bucket(bucket)
                .key(key)
                .upload_id(upload_id)
                .part_number(number)
                .body(aws_sdk_s3::primitives::ByteStream::from(part))
                .send()
                .await
                .map_err(|e| item_error("UploadPart", &e))?;
            parts.push(CompletedPart::builder().part_number(number).set_e_tag(out.e_tag().map(str::to_owned)).build());
            number += 1;
        }
        Ok::<_, ItemError>(parts)
    };
    let uploaded = uploading.await;
    let stopped = |_| ItemError::new(ItemErrorCode::Io, "a re-encryption thread stopped");
    let sealed = sealing.await.map_err(stopped)?;
    let fed = feeding.await.map_err(stopped)?;
    // The first stage to fail is the cause; the later ones only saw their input end.
    fed?;
    let parts = uploaded?;
    let (old_sha256, new_sha256) = sealed?;
    Ok((parts, old_sha256, new_sha256))
}

/// The sealing stage's input: the downloaded chunks, hashed as read.
pub(super) struct HashingPipe {
    pub(super) pipe: crate::engine::files::PipeReader,
    pub(super) hash: sha2::Sha256,
}

impl std::io::Read for HashingPipe {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use sha2::Digest as _;
        let n = self.pipe.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

/// The sealing stage's output: parts of at least `STREAM_PART` bytes (but
/// the last) handed to the upload, hashed as written.
pub(super) struct PartWriter {
    pub(super) parts: tokio::sync::mpsc::Sender<Vec<u8>>,
    pub(super) part: Vec<u8>,
    pub(super) hash: sha2::Sha256,
}

impl PartWriter {
    /// Hands over what is gathered (also an empty last part: an upload needs one).
    pub(super) fn send_part(&mut self) -> std::io::Result<()> {
        let part = std::mem::replace(&mut self.part, Vec::with_capacity(STREAM_PART));
        self.parts.blocking_send(part).map_err(|_| std::io::Error::other("the upload stopped"))
    }
}

impl std::io::Write for PartWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        use sha2::Digest as _;
        self.part.extend_from_slice(buf);
        self.hash.update(buf);
        if self.part.len() >= STREAM_PART {
            self.send_part()?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn reencrypt_whole(
    client: &Client,
    bucket: &str,
    key: &str,
    read: &Head,
    journal: &Journal,
    id: &str,
    original: &[u8],
    new: Vec<u8>,
    backup_prefix: &str,
) -> Result<(), ItemError> {
    still_as_read(client, bucket, key, read).await?;
    let backup_key = keep_original(client, bucket, key, read, backup_prefix).await?;
    let entry = Entry::Object {
        item: id.to_owned(),
        bucket: bucket.to_owned(),
        key: key.to_owned(),
        version_id: read.version_id.clone(),
        etag: read.etag.clone(),
        undo: ObjectUndo::Original {
            backup_key,
            version_id: read.version_id.clone(),
            old_sha256: journal::sha256(original),
            new_sha256: journal::sha256(&new),
        },
    };
    journal.append(&entry, true).map_err(|e| io_error("cannot write the journal", &e))?;
    match put_whole(client, bucket, key, read, new).await {
        Ok(()) => journal
            .append(&Entry::Done { item: id.to_owned() }, false)
            .map_err(|e| io_error("cannot write the journal", &e)),
        Err(e) => {
            if e.code == ItemErrorCode::ChangedDuringRotation {
                let _ = journal.append(&Entry::Abandoned { item: id.to_owned() }, false);
            }
            Err(e)
        }
    }
}
