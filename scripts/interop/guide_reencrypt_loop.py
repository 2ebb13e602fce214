"""The operations guide's method A as its boto3 example does it: one
ReEncrypt per encrypted data key, one after another. The reference line of
scripts/bench-kms.sh.

  guide_reencrypt_loop.py DIR DEST_KEY_ARN
"""

import os
import sys

import boto3

directory, destination = sys.argv[1], sys.argv[2]
kms = boto3.client("kms", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name=os.environ["AWS_REGION"])
for name in sorted(os.listdir(directory)):
    path = os.path.join(directory, name)
    with open(path, "rb") as f:
        old_blob = f.read()
    resp = kms.re_encrypt(CiphertextBlob=old_blob, DestinationKeyId=destination)
    with open(path, "wb") as f:
        f.write(resp["CiphertextBlob"])
