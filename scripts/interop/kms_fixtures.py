"""Test fixtures made with boto3 against the local KMS server, the way the
applications rekey migrates made them. Used by rotate-cli's moto tests.

  kms_fixtures.py [--region R] create-key [--multi-region] -> prints a new key ARN
  kms_fixtures.py [--region R] create-alias alias/NAME KEY  -> points a new alias at KEY
  kms_fixtures.py [--region R] replicate-key KEY REPLICA_REGION -> prints the replica's ARN
  kms_fixtures.py legacy-export KEY N OUT EDK_OUT  -> N legacy CBC records in JSON Lines,
        made by the blog's own code with one boto3 data key; the data key's
        CiphertextBlob goes to EDK_OUT; the plaintexts to OUT.expected
  kms_fixtures.py bare-edks KEY N DIR CTX_JSON     -> N CiphertextBlob files (binary),
        and DIR.expected.json with each data key (base64; test material only)
  kms_fixtures.py decrypt-edks DIR CTX_JSON        -> JSON {file: base64 data key}, via boto3 Decrypt

The endpoint comes from AWS_ENDPOINT_URL (set by scripts/test.sh); the
region from --region, else AWS_REGION, else us-east-1.
"""

import base64
import json
import os
import sys

import boto3

try:
    from Cryptodome.Cipher import AES  # pycryptodomex, which the blog installs
except ImportError:  # pragma: no cover
    from Crypto.Cipher import AES


def kms(region=None):
    region = region or os.environ.get("AWS_REGION", "us-east-1")
    return boto3.client("kms", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name=region)


# The blog's record scheme, in its own shape: pad the base64 *string*, one
# fixed 16-character IV ("salt") for every record, IV stored in front.
BS = 16
salt = "0123456789abcdef".encode()
pad = lambda s: s + (BS - len(s) % BS) * chr(BS - len(s) % BS)


def blog_encrypt(plaintext_key, raw):
    raw = raw.encode("utf-8")
    raw = base64.b64encode(raw)
    raw = raw.decode("utf-8")
    raw = pad(raw).encode("utf-8")
    cipher = AES.new(plaintext_key, AES.MODE_CBC, salt)
    return base64.b64encode(salt + cipher.encrypt(raw))


def main(argv):
    region = None
    if argv[:1] == ["--region"]:
        region, argv = argv[1], argv[2:]
    command = argv[0]
    client = kms(region)
    if command == "create-key":
        multi_region = argv[1:] == ["--multi-region"]
        key = client.create_key(KeyUsage="ENCRYPT_DECRYPT", KeySpec="SYMMETRIC_DEFAULT", MultiRegion=multi_region)
        print(key["KeyMetadata"]["Arn"])
    elif command == "create-alias":
        client.create_alias(AliasName=argv[1], TargetKeyId=argv[2])
    elif command == "replicate-key":
        print(client.replicate_key(KeyId=argv[1].split(":key/")[-1], ReplicaRegion=argv[2])["ReplicaKeyMetadata"]["Arn"])
    elif command == "legacy-export":
        key, n, out, edk_out = argv[1], int(argv[2]), argv[3], argv[4]
        data_key = client.generate_data_key(KeyId=key, KeySpec="AES_256")
        plaintext_key, encrypted_key = data_key["Plaintext"], data_key["CiphertextBlob"]
        with open(edk_out, "wb") as f:
            f.write(encrypted_key)
        with open(out, "w", encoding="utf-8") as f, open(out + ".expected", "w", encoding="utf-8") as expected:
            for i in range(n):
                text = f"i want to back to home {i} 집에 가고 싶어"
                record = {"id": i, "name": f"user{i}", "ssn": blog_encrypt(plaintext_key, text).decode()}
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
                expected.write(json.dumps({"id": i, "ssn": text}, ensure_ascii=False) + "\n")
        plaintext_key = None  # as the blog does
    elif command == "bare-edks":
        key, n, directory, context = argv[1], int(argv[2]), argv[3], json.loads(argv[4])
        os.makedirs(directory, exist_ok=True)
        expected = {}
        for i in range(n):
            data_key = client.generate_data_key(KeyId=key, KeySpec="AES_256", EncryptionContext=context)
            name = f"key{i:04}.bin"
            with open(os.path.join(directory, name), "wb") as f:
                f.write(data_key["CiphertextBlob"])
            expected[name] = base64.b64encode(data_key["Plaintext"]).decode()
        with open(directory.rstrip("/") + ".expected.json", "w") as f:
            json.dump(expected, f)
    elif command == "decrypt-edks":
        directory, context = argv[1], json.loads(argv[2])
        result = {}
        for name in sorted(os.listdir(directory)):
            with open(os.path.join(directory, name), "rb") as f:
                blob = f.read()
            result[name] = base64.b64encode(client.decrypt(CiphertextBlob=blob, EncryptionContext=context)["Plaintext"]).decode()
        print(json.dumps(result))
    else:
        raise SystemExit(f"unknown command {command}")


if __name__ == "__main__":
    main(sys.argv[1:])
