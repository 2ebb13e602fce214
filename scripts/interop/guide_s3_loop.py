"""The operations guide's method A for S3 objects as its boto3 example does
it, one object after another: HeadObject, KMS ReEncrypt of the `edk`
metadata entry, CopyObject onto itself with the metadata replaced. The
reference line of scripts/bench-s3.sh.

  guide_s3_loop.py BUCKET PREFIX DEST_KEY SOURCE_CTX_JSON DEST_CTX_JSON
"""

import base64
import json
import os
import sys

import boto3
from botocore.config import Config

bucket, prefix, destination = sys.argv[1], sys.argv[2], sys.argv[3]
source_ctx, dest_ctx = json.loads(sys.argv[4]), json.loads(sys.argv[5])
cfg = Config(s3={"addressing_style": "path"})
s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"], config=cfg)
kms = boto3.client("kms", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
n = 0
for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
    for obj in page.get("Contents", []):
        key = obj["Key"]
        head = s3.head_object(Bucket=bucket, Key=key)
        meta = head.get("Metadata", {})
        old_blob = base64.b64decode(meta["edk"])
        resp = kms.re_encrypt(
            CiphertextBlob=old_blob,
            DestinationKeyId=destination,
            SourceEncryptionContext=source_ctx,
            DestinationEncryptionContext=dest_ctx,
        )
        new_metadata = meta.copy()
        new_metadata["edk"] = base64.b64encode(resp["CiphertextBlob"]).decode("utf-8")
        s3.copy_object(
            Bucket=bucket,
            CopySource={"Bucket": bucket, "Key": key},
            Key=key,
            Metadata=new_metadata,
            MetadataDirective="REPLACE",
        )
        n += 1
print(n)
