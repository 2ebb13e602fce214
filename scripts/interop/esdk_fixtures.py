"""AWS Encryption SDK messages under KMS keys of the local KMS server, made
and read by the real Python SDK (aws-encryption-sdk 3.3.1): the proof that
`rekey reencrypt --items esdk` hands back what the SDK reads. Used by
rotate-cli/tests/esdk.rs.

  esdk_fixtures.py write KEY DIR     -> messages under KEY: DIR/files/*.msg (binary),
        DIR/files/text_*.b64 (base64 text), DIR/records.jsonl (base64 in the
        field "secret"), and DIR/expected.json {name: {"plaintext_hex",
        "context", "suite"}} (records named "records.jsonl#ID")
  esdk_fixtures.py suites KEY DIR  -> as `write`, but the AES-128 and AES-192 suites, two
        20 MiB plaintexts (framed and not) and an empty one; expected.json names
        each plaintext by "plaintext_sha256"
  esdk_fixtures.py one KEY OUT       -> one 0x0478 message under KEY
  esdk_fixtures.py plant KEY IN OUT  -> IN with its (only) wrapped key replaced by a
        fresh KMS data key under KEY and the same context: another data key
  esdk_fixtures.py read KEY FILE [text|lines] -> decrypts a message rekey wrote (binary;
        text: one base64 message; lines: one per line) with a strict provider of KEY
        alone under REQUIRE_ENCRYPT_REQUIRE_DECRYPT; prints one JSON line per message:
        {"plaintext_sha256", "plaintext_len", "context" (without the public key),
        "suite", "keys", "frame_length", "signed"}
  esdk_fixtures.py cli-read KEY FILE [CONTEXT_JSON] -> the same with aws-encryption-cli
        (binary or base64, --decode for a .b64 file), requiring CONTEXT_JSON's pairs;
        prints {"plaintext_sha256", "plaintext_len"}
  esdk_fixtures.py check KEY DIR [RECORDS] -> decrypts every message of DIR (as `write`
        laid it out; RECORDS names the record file, default records.jsonl) with a strict provider of KEY alone under
        REQUIRE_ENCRYPT_REQUIRE_DECRYPT; compares with DIR/expected.json;
        prints {"checked": N, "suites": {suite: n}}; exits 1 on a mismatch

The endpoint comes from AWS_ENDPOINT_URL (set by scripts/moto.sh), which
botocore reads for the SDK's KMS clients too.
"""

import base64
import hashlib
import json
import os
import struct
import subprocess
import sys
import tempfile

import aws_encryption_sdk
import boto3
import botocore.session
from aws_encryption_sdk.identifiers import Algorithm, CommitmentPolicy

PUBLIC_KEY = "aws-crypto-public-key"

# (name, algorithm, frame length (0: non-framed), context, plaintext)
FILES = [
    ("default_framed", None, 4096, {"app": "billing", "tenant": "acme"}, b"invoice 1: " + b"x" * 10000),
    ("commit_unsigned", Algorithm.AES_256_GCM_HKDF_SHA512_COMMIT_KEY, 1024, {"app": "billing"}, b"y" * 3000),
    ("commit_unsigned_nonframed", Algorithm.AES_256_GCM_HKDF_SHA512_COMMIT_KEY, 0, {"app": "hr", "id": "7"}, b"salary"),
    ("signed_nonframed", None, 0, {}, b"no context at all"),
    ("legacy_0378", Algorithm.AES_256_GCM_IV12_TAG16_HKDF_SHA384_ECDSA_P384, 4096, {"app": "old"}, b"legacy signed " * 50),
    ("legacy_0178_nonframed", Algorithm.AES_256_GCM_IV12_TAG16_HKDF_SHA256, 0, {"app": "old", "v": "1"}, b"legacy unsigned"),
    ("legacy_0078", Algorithm.AES_256_GCM_IV12_TAG16, 512, {"app": "older"}, b"no kdf at all " * 100),
]
TEXT = [
    ("text_commit", Algorithm.AES_256_GCM_HKDF_SHA512_COMMIT_KEY, 4096, {"col": "ssn"}, "123-45-6789".encode()),
    ("text_legacy", Algorithm.AES_256_GCM_IV12_TAG16_HKDF_SHA384_ECDSA_P384, 4096, {"col": "ssn"}, "987-65-4321".encode()),
]
RECORDS = 12


def session():
    return botocore.session.Session()


def provider(key):
    return aws_encryption_sdk.StrictAwsKmsMasterKeyProvider(key_ids=[key], botocore_session=session())


def encrypt(key, algorithm, frame_length, context, plaintext):
    committing = algorithm is None or algorithm in (
        Algorithm.AES_256_GCM_HKDF_SHA512_COMMIT_KEY,
        Algorithm.AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384,
    )
    policy = (
        CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT if committing else CommitmentPolicy.FORBID_ENCRYPT_ALLOW_DECRYPT
    )
    client = aws_encryption_sdk.EncryptionSDKClient(commitment_policy=policy)
    kwargs = {"source": plaintext, "key_provider": provider(key), "encryption_context": context,
              "frame_length": frame_length}
    if algorithm is not None:
        kwargs["algorithm"] = algorithm
    ciphertext, header = client.encrypt(**kwargs)
    return ciphertext, "0x%04x" % header.algorithm.algorithm_id


def write(key, directory):
    os.makedirs(os.path.join(directory, "files"), exist_ok=True)
    expected = {}
    for name, algorithm, frame, context, plaintext in FILES:
        message, suite = encrypt(key, algorithm, frame, context, plaintext)
        with open(os.path.join(directory, "files", name + ".msg"), "wb") as f:
            f.write(message)
        expected["files/" + name + ".msg"] = {"plaintext_hex": plaintext.hex(), "context": context, "suite": suite}
    for name, algorithm, frame, context, plaintext in TEXT:
        message, suite = encrypt(key, algorithm, frame, context, plaintext)
        with open(os.path.join(directory, "files", name + ".b64"), "w") as f:
            f.write(base64.b64encode(message).decode() + "\n")
        expected["files/" + name + ".b64"] = {"plaintext_hex": plaintext.hex(), "context": context, "suite": suite}
    suites = [None, Algorithm.AES_256_GCM_HKDF_SHA512_COMMIT_KEY, Algorithm.AES_256_GCM_IV12_TAG16_HKDF_SHA384_ECDSA_P384]
    with open(os.path.join(directory, "records.jsonl"), "w") as f:
        for i in range(RECORDS):
            context = {"table": "users", "row": str(i)}
            plaintext = f"record {i}: secret".encode()
            message, suite = encrypt(key, suites[i % 3], 4096, context, plaintext)
            f.write(json.dumps({"id": i, "secret": base64.b64encode(message).decode()}) + "\n")
            expected[f"records.jsonl#{i}"] = {"plaintext_hex": plaintext.hex(), "context": context, "suite": suite}
    with open(os.path.join(directory, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1)


# The AES-128 and AES-192 suites (every one the Python SDK writes), and
# large and empty plaintexts: (name, algorithm, frame length, context, size)
SUITES = [
    ("aes128_0014", Algorithm.AES_128_GCM_IV12_TAG16, 4096, {"s": "0014"}, 5000),
    ("aes192_0046", Algorithm.AES_192_GCM_IV12_TAG16, 0, {"s": "0046"}, 300),
    ("aes128_0114", Algorithm.AES_128_GCM_IV12_TAG16_HKDF_SHA256, 1024, {"s": "0114"}, 3000),
    ("aes192_0146", Algorithm.AES_192_GCM_IV12_TAG16_HKDF_SHA256, 4096, {"s": "0146"}, 100),
    ("aes128_0214", Algorithm.AES_128_GCM_IV12_TAG16_HKDF_SHA256_ECDSA_P256, 4096, {"s": "0214"}, 9000),
    ("aes192_0346", Algorithm.AES_192_GCM_IV12_TAG16_HKDF_SHA384_ECDSA_P384, 512, {"s": "0346"}, 2000),
    ("big_default", None, 4096, {"size": "20MiB"}, 20 << 20),
    ("big_nonframed", Algorithm.AES_256_GCM_HKDF_SHA512_COMMIT_KEY, 0, {"size": "20MiB"}, 20 << 20),
    ("empty", Algorithm.AES_256_GCM_HKDF_SHA512_COMMIT_KEY, 4096, {"size": "0"}, 0),
]


def write_suites(key, directory):
    """SUITES under KEY, laid out as `write` does (no records): plaintexts
    are random, made here, and named by their SHA-256 in expected.json."""
    os.makedirs(os.path.join(directory, "files"), exist_ok=True)
    expected = {}
    for name, algorithm, frame, context, size in SUITES:
        plaintext = os.urandom(size)
        message, suite = encrypt(key, algorithm, frame, context, plaintext)
        with open(os.path.join(directory, "files", name + ".msg"), "wb") as f:
            f.write(message)
        expected["files/" + name + ".msg"] = {
            "plaintext_sha256": hashlib.sha256(plaintext).hexdigest(), "context": context, "suite": suite}
    open(os.path.join(directory, "records.jsonl"), "w").close()
    with open(os.path.join(directory, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1)


def messages(directory, records="records.jsonl"):
    """Every message of a `write` layout: (name, bytes)."""
    for name in sorted(os.listdir(os.path.join(directory, "files"))):
        with open(os.path.join(directory, "files", name), "rb") as f:
            data = f.read()
        yield "files/" + name, base64.b64decode(data) if name.endswith(".b64") else data
    with open(os.path.join(directory, records)) as f:
        for line in f:
            record = json.loads(line)
            yield f"records.jsonl#{record['id']}", base64.b64decode(record["secret"])


def check(key, directory, records):
    with open(os.path.join(directory, "expected.json")) as f:
        expected = json.load(f)
    client = aws_encryption_sdk.EncryptionSDKClient(commitment_policy=CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT)
    strict = provider(key)
    suites, checked, bad = {}, 0, []
    for name, message in messages(directory, records):
        plaintext, header = client.decrypt(source=message, key_provider=strict)
        want = expected[name]
        context = {k: v for k, v in header.encryption_context.items() if k != PUBLIC_KEY}
        same = (hashlib.sha256(plaintext).hexdigest() == want["plaintext_sha256"] if "plaintext_sha256" in want
                else plaintext.hex() == want["plaintext_hex"])
        if not same or context != want["context"]:
            bad.append(name)
        signed_before = want["suite"] in ("0x0578", "0x0378", "0x0346", "0x0214")
        suite = "0x%04x" % header.algorithm.algorithm_id
        if suite != ("0x0578" if signed_before else "0x0478"):
            bad.append(f"{name}: suite {suite}")
        if [k.key_provider.key_info.decode() for k in header.encrypted_data_keys] != [key]:
            bad.append(f"{name}: wrapped keys")
        suites[suite] = suites.get(suite, 0) + 1
        checked += 1
    print(json.dumps({"checked": checked, "suites": suites, "bad": bad}))
    if bad:
        sys.exit(1)


def plant(key, source, out):
    """Replaces the message's wrapped key (parsed from the header) with a
    fresh data key under the same KMS key and context."""
    with open(source, "rb") as f:
        message = f.read()
    client = aws_encryption_sdk.EncryptionSDKClient(commitment_policy=CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT)
    # The header's context, as the SDK parses it (decrypting with the right key).
    _, header = client.decrypt(source=message, key_provider=provider(key))
    (edk,) = header.encrypted_data_keys
    old = edk.encrypted_data_key
    kms = boto3.client("kms", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
    new = kms.generate_data_key(KeyId=key, KeySpec="AES_256", EncryptionContext=dict(header.encryption_context))[
        "CiphertextBlob"
    ]
    before = struct.pack(">H", len(old)) + old
    assert message.count(before) == 1
    with open(out, "wb") as f:
        f.write(message.replace(before, struct.pack(">H", len(new)) + new))


def read(key, path, form):
    """Decrypts rekey's messages with the SDK: strict provider, strictest policy."""
    with open(path, "rb") as f:
        data = f.read()
    if form == "lines":
        messages = [base64.b64decode(line) for line in data.splitlines()]
    elif form == "text":
        messages = [base64.b64decode(data)]
    else:
        messages = [data]
    client = aws_encryption_sdk.EncryptionSDKClient(commitment_policy=CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT)
    strict = provider(key)
    for message in messages:
        plaintext, header = client.decrypt(source=message, key_provider=strict)
        context = {k: v for k, v in header.encryption_context.items() if k != PUBLIC_KEY}
        print(json.dumps({
            "plaintext_sha256": hashlib.sha256(plaintext).hexdigest(),
            "plaintext_len": len(plaintext),
            "context": context,
            "suite": "0x%04x" % header.algorithm.algorithm_id,
            "keys": [k.key_provider.key_info.decode() for k in header.encrypted_data_keys],
            "frame_length": header.frame_length,
            "signed": PUBLIC_KEY in header.encryption_context,
        }))


def cli_read(key, path, context):
    """Decrypts one message with aws-encryption-cli, strictest policy, the context required."""
    cli = os.path.join(os.path.dirname(sys.executable), "aws-encryption-cli")
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "plaintext")
        command = [cli, "--decrypt", "--input", path, "--output", out, "--wrapping-keys", "key=" + key,
                   "--commitment-policy", "require-encrypt-require-decrypt", "--suppress-metadata"]
        if path.endswith(".b64"):
            command.append("--decode")
        if context:
            command += ["--encryption-context"] + [f"{k}={v}" for k, v in context.items()]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise SystemExit("aws-encryption-cli refused %s: %s" % (path, result.stderr.strip()))
        with open(out, "rb") as f:
            plaintext = f.read()
    print(json.dumps({"plaintext_sha256": hashlib.sha256(plaintext).hexdigest(), "plaintext_len": len(plaintext)}))


def main(argv):
    command = argv[0]
    if command == "write":
        write(argv[1], argv[2])
    elif command == "suites":
        write_suites(argv[1], argv[2])
    elif command == "one":
        message, _ = encrypt(argv[1], Algorithm.AES_256_GCM_HKDF_SHA512_COMMIT_KEY, 4096, {"who": "someone else"}, b"not yours")
        with open(argv[2], "wb") as f:
            f.write(message)
    elif command == "plant":
        plant(argv[1], argv[2], argv[3])
    elif command == "read":
        read(argv[1], argv[2], argv[3] if len(argv) > 3 else "binary")
    elif command == "cli-read":
        cli_read(argv[1], argv[2], json.loads(argv[3]) if len(argv) > 3 else {})
    elif command == "check":
        check(argv[1], argv[2], argv[3] if len(argv) > 3 else "records.jsonl")
    else:
        raise SystemExit(f"unknown command {command}")


if __name__ == "__main__":
    main(sys.argv[1:])
