"""Objects written and read by the official Amazon S3 Encryption Client for
Python (amazon-s3-encryption-client-python), against the local server (moto:
S3 and KMS on one endpoint, AWS_ENDPOINT_URL). Used by rotate-cli/tests/s3ec.rs.

  s3ec.py write BUCKET PREFIX KMS_KEY SSE_KEY MANIFEST_JSON
        V3 objects (the client's default) and V2 objects (its legacy-compatible
        settings: ALG_AES_256_GCM_IV12_TAG16_NO_KDF, FORBID_ENCRYPT_ALLOW_DECRYPT),
        small and multipart (12 MiB in 5 MiB parts), with encryption contexts of
        several shapes (none, one pair, several pairs with punctuation), other
        metadata, content headers, tags and SSE-KMS under SSE_KEY. MANIFEST_JSON
        gets {key: {"context", "sha256", "format"}} (no plaintext).
  s3ec.py read BUCKET KMS_KEY MANIFEST_JSON -> JSON {key: "ok" | "error: ..."}
        each object decrypted by the client with a keyring of KMS_KEY alone and
        its encryption context, its plaintext digest compared with the manifest's.
  s3ec.py raw BUCKET KEY -> the sha256 of the stored (encrypted) body
  s3ec.py set-metadata BUCKET KEY NAME VALUE -> one metadata entry changed by a plain copy
  s3ec.py to-instruction-file BUCKET KEY
        moves the object's key entries into KEY.instruction as the specification
        lays it out (V2: every S3 Encryption Client entry; V3: x-amz-3, x-amz-w,
        x-amz-t and x-amz-m, the content entries staying on the object), the
        file marked x-amz-crypto-instr-file, as the Java client writes one
  s3ec.py foreign-key BUCKET KEY KMS_KEY -> the object's wrapped key replaced by a new data key
        under KMS_KEY made with the object's own stored context (a planted key)
"""

import base64
import hashlib
import io
import json
import os
import sys

import boto3
from botocore.config import Config
from s3_encryption import S3EncryptionClient, S3EncryptionClientConfig
from s3_encryption.materials.kms_keyring import KmsKeyring
from s3_encryption.materials.materials import AlgorithmSuite, CommitmentPolicy

os.environ.setdefault("AWS_RESPONSE_CHECKSUM_VALIDATION", "when_required")
os.environ.setdefault("AWS_REQUEST_CHECKSUM_CALCULATION", "when_required")

CONTEXTS = [
    None,
    {"tenant": "acme"},
    {"tenant": "globex", "doc": "invoice/2026-11", "region": "eu-west-1 (Paris)"},
]


def client(service):
    return boto3.client(
        service,
        endpoint_url=os.environ["AWS_ENDPOINT_URL"],
        region_name=os.environ.get("AWS_REGION", "us-east-1"),
        config=Config(s3={"addressing_style": "path"}),
    )


def s3ec(key_id, v2=False):
    keyring = KmsKeyring(kms_client=client("kms"), kms_key_id=key_id)
    if v2:
        config = S3EncryptionClientConfig(
            keyring=keyring,
            encryption_algorithm=AlgorithmSuite.ALG_AES_256_GCM_IV12_TAG16_NO_KDF,
            commitment_policy=CommitmentPolicy.FORBID_ENCRYPT_ALLOW_DECRYPT,
        )
    else:
        config = S3EncryptionClientConfig(
            keyring=keyring, commitment_policy=CommitmentPolicy.REQUIRE_ENCRYPT_ALLOW_DECRYPT
        )
    return S3EncryptionClient(wrapped_s3_client=client("s3"), config=config)


def write(bucket, prefix, key_id, sse_key, manifest_path):
    manifest = {}
    for fmt in ("v3", "v2"):
        enc = s3ec(key_id, v2=(fmt == "v2"))
        for i, context in enumerate(CONTEXTS):
            for size in ("small", "big"):
                key = f"{prefix}{fmt}/{size}-{i}"
                body = os.urandom(12 << 20 if size == "big" else 1000 + i)
                extra = {
                    "Metadata": {"owner": "team-x", "note": f"object {i}"},
                    "ContentType": "application/x-test",
                    "CacheControl": "max-age=60",
                    "ServerSideEncryption": "aws:kms",
                    "SSEKMSKeyId": sse_key,
                }
                if context is not None:
                    extra["EncryptionContext"] = dict(context)
                if size == "big":
                    enc.upload_fileobj(io.BytesIO(body), bucket, key, multipart_chunksize=5 << 20, **extra)
                else:
                    enc.put_object(Bucket=bucket, Key=key, Body=body, **extra)
                client("s3").put_object_tagging(
                    Bucket=bucket, Key=key, Tagging={"TagSet": [{"Key": "team", "Value": "x"}]}
                )
                manifest[key] = {"context": context, "sha256": hashlib.sha256(body).hexdigest(), "format": fmt}
    with open(manifest_path, "w") as f:
        json.dump(manifest, f)


def read(bucket, key_id, manifest_path):
    with open(manifest_path) as f:
        manifest = json.load(f)
    enc = s3ec(key_id)
    result = {}
    for key, want in manifest.items():
        extra = {"EncryptionContext": want["context"]} if want["context"] else {}
        try:
            body = enc.get_object(Bucket=bucket, Key=key, **extra)["Body"].read()
            result[key] = "ok" if hashlib.sha256(body).hexdigest() == want["sha256"] else "error: other plaintext"
        except Exception as e:  # noqa: BLE001 - the report names every failure
            result[key] = f"error: {type(e).__name__}: {e}"
    print(json.dumps(result))


def main(argv):
    if argv[0] == "write":
        write(*argv[1:6])
    elif argv[0] == "read":
        read(*argv[1:4])
    elif argv[0] == "raw":
        body = client("s3").get_object(Bucket=argv[1], Key=argv[2])["Body"].read()
        print(hashlib.sha256(body).hexdigest())
    elif argv[0] == "set-metadata":
        s3 = client("s3")
        bucket, key, name, value = argv[1:5]
        head = s3.head_object(Bucket=bucket, Key=key)
        metadata = dict(head["Metadata"])
        metadata[name] = value
        s3.copy_object(
            Bucket=bucket, Key=key, CopySource={"Bucket": bucket, "Key": key},
            Metadata=metadata, MetadataDirective="REPLACE",
        )
    elif argv[0] == "to-instruction-file":
        s3 = client("s3")
        bucket, key = argv[1:3]
        metadata = dict(s3.head_object(Bucket=bucket, Key=key)["Metadata"])
        if "x-amz-3" in metadata:
            moved = ["x-amz-3", "x-amz-w", "x-amz-t", "x-amz-m"]
        else:
            moved = ["x-amz-key-v2", "x-amz-wrap-alg", "x-amz-matdesc", "x-amz-iv", "x-amz-cek-alg", "x-amz-tag-len"]
        instruction = {name: metadata.pop(name) for name in moved if name in metadata}
        s3.put_object(
            Bucket=bucket, Key=key + ".instruction", Body=json.dumps(instruction).encode(),
            Metadata={"x-amz-crypto-instr-file": ""},
        )
        s3.copy_object(
            Bucket=bucket, Key=key, CopySource={"Bucket": bucket, "Key": key},
            Metadata=metadata, MetadataDirective="REPLACE",
        )
    elif argv[0] == "foreign-key":
        bucket, key, kms_key = argv[1:4]
        metadata = client("s3").head_object(Bucket=bucket, Key=key)["Metadata"]
        entry = "x-amz-3" if "x-amz-3" in metadata else "x-amz-key-v2"
        context = json.loads(metadata.get("x-amz-t") or metadata.get("x-amz-matdesc") or "{}")
        blob = client("kms").generate_data_key(KeyId=kms_key, KeySpec="AES_256", EncryptionContext=context)
        main(["set-metadata", bucket, key, entry, base64.b64encode(blob["CiphertextBlob"]).decode()])
    else:
        sys.exit(f"unknown command {argv[0]}")


if __name__ == "__main__":
    main(sys.argv[1:])
