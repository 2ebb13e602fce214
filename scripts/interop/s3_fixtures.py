"""S3 fixtures made with boto3 against the local server (moto: S3 and KMS
together), the way the applications of the operations guide made them.
Used by rotate-cli/tests/s3.rs and scripts/bench-s3.sh.

  s3_fixtures.py create-bucket BUCKET [versioned]
  s3_fixtures.py edk-objects BUCKET PREFIX N EDK_KEY SSE_KEY CTX_JSON OUT_JSON
        N objects whose metadata entry `edk` holds a boto3 GenerateDataKey blob
        under EDK_KEY (base64, the guide's example), with other metadata,
        content headers, cache control, expires, tags and SSE-KMS under SSE_KEY;
        the plaintext data keys go to OUT_JSON (test material only)
  s3_fixtures.py sse-objects BUCKET PREFIX N KEY [BIG_MIB]
        N SSE-KMS objects under KEY with metadata and tags; with BIG_MIB, one
        more object of that size uploaded in 5 MiB parts
  s3_fixtures.py snapshot BUCKET PREFIX        -> JSON {key: HeadObject fields, tags, body sha256}
  s3_fixtures.py decrypt-edks BUCKET PREFIX KEY CTX_JSON -> JSON {key: base64 data key}
  s3_fixtures.py put BUCKET KEY BODY           -> overwrites one object (a concurrent writer)
  s3_fixtures.py versions BUCKET PREFIX        -> JSON {key: number of versions}
  s3_fixtures.py put-file BUCKET KEY PATH SSE_KEY -> uploads a file (multipart above 8 MiB) with
        metadata, content headers, tags and SSE-KMS under SSE_KEY
  s3_fixtures.py get BUCKET KEY PATH           -> downloads an object

The endpoint comes from AWS_ENDPOINT_URL.
"""

import base64
import datetime
import hashlib
import json
import os
import sys

import boto3
from botocore.config import Config

os.environ.setdefault("AWS_RESPONSE_CHECKSUM_VALIDATION", "when_required")
os.environ.setdefault("AWS_REQUEST_CHECKSUM_CALCULATION", "when_required")


def client(service):
    return boto3.client(
        service,
        endpoint_url=os.environ["AWS_ENDPOINT_URL"],
        region_name=os.environ.get("AWS_REGION", "us-east-1"),
        config=Config(s3={"addressing_style": "path"}, max_pool_connections=32),
    )


def keys(s3, bucket, prefix):
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            yield obj["Key"]


HEAD_FIELDS = [
    "Metadata", "ContentType", "ContentEncoding", "ContentDisposition", "ContentLanguage", "CacheControl",
    "ExpiresString", "StorageClass", "ServerSideEncryption", "SSEKMSKeyId", "BucketKeyEnabled", "ContentLength",
    "WebsiteRedirectLocation", "ETag", "VersionId",
]


def main(argv):
    command = argv[0]
    s3 = client("s3")
    if command == "create-bucket":
        s3.create_bucket(Bucket=argv[1])
        if len(argv) > 2 and argv[2] == "versioned":
            s3.put_bucket_versioning(Bucket=argv[1], VersioningConfiguration={"Status": "Enabled"})
    elif command == "edk-objects":
        bucket, prefix, n, edk_key, sse_key, ctx, out = argv[1], argv[2], int(argv[3]), argv[4], argv[5], json.loads(argv[6]), argv[7]
        kms = client("kms")
        expected = {}
        expires = datetime.datetime(2031, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
        for i in range(n):
            key = f"{prefix}obj{i:04d}.bin"
            data_key = kms.generate_data_key(KeyId=edk_key, KeySpec="AES_256", EncryptionContext=ctx)
            expected[key] = base64.b64encode(data_key["Plaintext"]).decode()
            s3.put_object(
                Bucket=bucket,
                Key=key,
                Body=f"ciphertext body {i}".encode() * (1 + i % 7),
                Metadata={"edk": base64.b64encode(data_key["CiphertextBlob"]).decode(), "owner": f"user-{i}", "app": "vault"},
                ContentType="application/x-vault" if i % 2 else "text/plain; charset=utf-8",
                ContentDisposition=f'attachment; filename="doc{i}.bin"',
                ContentLanguage="ko-KR",
                ContentEncoding="identity",
                CacheControl="max-age=3600, private",
                Expires=expires,
                StorageClass="STANDARD_IA" if i % 3 == 0 else "STANDARD",
                ServerSideEncryption="aws:kms",
                SSEKMSKeyId=sse_key,
                BucketKeyEnabled=True,
                Tagging=f"team=storage&index={i}",
            )
        with open(out, "w", encoding="utf-8") as f:
            json.dump(expected, f)
    elif command == "sse-objects":
        bucket, prefix, n, key_id = argv[1], argv[2], int(argv[3]), argv[4]
        for i in range(n):
            s3.put_object(
                Bucket=bucket,
                Key=f"{prefix}log{i:04d}.txt",
                Body=f"log line {i}\n".encode() * (1 + i % 11),
                Metadata={"source": f"host-{i % 5}"},
                ContentType="text/plain",
                CacheControl="no-cache",
                ServerSideEncryption="aws:kms",
                SSEKMSKeyId=key_id,
                Tagging=f"kind=log&n={i}",
            )
        if len(argv) > 5:
            size = int(argv[5]) << 20
            key = f"{prefix}big.bin"
            up = s3.create_multipart_upload(
                Bucket=bucket, Key=key, Metadata={"source": "big"}, ContentType="application/octet-stream",
                ServerSideEncryption="aws:kms", SSEKMSKeyId=key_id, Tagging="kind=big",
            )
            parts, part, number = [], 5 << 20, 1
            for start in range(0, size, part):
                body = bytes((start // part + j) % 251 for j in range(min(part, size - start)))
                r = s3.upload_part(Bucket=bucket, Key=key, UploadId=up["UploadId"], PartNumber=number, Body=body)
                parts.append({"PartNumber": number, "ETag": r["ETag"]})
                number += 1
            s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=up["UploadId"], MultipartUpload={"Parts": parts})
    elif command == "snapshot":
        bucket, prefix = argv[1], argv[2]
        snap = {}
        for key in keys(s3, bucket, prefix):
            head = s3.head_object(Bucket=bucket, Key=key)
            fields = {f: head.get(f) for f in HEAD_FIELDS}
            fields["Tags"] = sorted((t["Key"], t["Value"]) for t in s3.get_object_tagging(Bucket=bucket, Key=key)["TagSet"])
            fields["BodySha256"] = hashlib.sha256(s3.get_object(Bucket=bucket, Key=key)["Body"].read()).hexdigest()
            snap[key] = fields
        json.dump(snap, sys.stdout, default=str)
    elif command == "decrypt-edks":
        bucket, prefix, key_id, ctx = argv[1], argv[2], argv[3], json.loads(argv[4])
        kms = client("kms")
        out = {}
        for key in keys(s3, bucket, prefix):
            blob = base64.b64decode(s3.head_object(Bucket=bucket, Key=key)["Metadata"]["edk"])
            plain = kms.decrypt(CiphertextBlob=blob, KeyId=key_id, EncryptionContext=ctx)
            assert plain["KeyId"].endswith(key_id.split("/")[-1]), plain["KeyId"]
            out[key] = base64.b64encode(plain["Plaintext"]).decode()
        json.dump(out, sys.stdout)
    elif command == "versions":
        counts = {}
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=argv[1], Prefix=argv[2]):
            for v in page.get("Versions", []):
                counts[v["Key"]] = counts.get(v["Key"], 0) + 1
        json.dump(counts, sys.stdout)
    elif command == "put-file":
        bucket, key, path, sse_key = argv[1:5]
        s3.upload_file(path, bucket, key, ExtraArgs={
            "Metadata": {"app": "vault", "name": os.path.basename(path)},
            "ContentType": "application/vnd.rekey.envelope",
            "CacheControl": "no-store",
            "ServerSideEncryption": "aws:kms",
            "SSEKMSKeyId": sse_key,
            "Tagging": "kind=envelope",
        })
    elif command == "get":
        s3.download_file(argv[1], argv[2], argv[3])
    elif command == "put":
        s3.put_object(Bucket=argv[1], Key=argv[2], Body=argv[3].encode(), Metadata={"edk": "b3RoZXI="})
    else:
        sys.exit(f"unknown command {command}")


if __name__ == "__main__":
    main(sys.argv[1:])
