#!/usr/bin/env python3
"""Decrypts messages rekey's AWS Encryption SDK writer produced with the
real Python SDK and the real CLI, under the strictest commitment policy
(REQUIRE_ENCRYPT_REQUIRE_DECRYPT).

    .venv/bin/python scripts/interop/esdk_read.py DIR

DIR holds the messages and manifest.json (written by the ignored test
`python_sdk_and_cli_read_our_messages` in envelope-core/tests/esdk.rs):
{"keys": {name: {"namespace", "name", "key_hex"}}, "messages": [{"file",
"plaintext_sha256", "context", "suite"}]}.

The CLI takes wrapping keys only from master key provider plugins (entry
points in the group aws_encryption_sdk_cli.master_key_providers), so this
script writes a throwaway plugin into a temporary directory and puts it on
PYTHONPATH: a raw AES provider whose keys come from an environment variable.
"""

import hashlib
import json
import os
import subprocess
import sys
import tempfile

import aws_encryption_sdk
from aws_encryption_sdk.identifiers import CommitmentPolicy, EncryptionKeyType, WrappingAlgorithm
from aws_encryption_sdk.internal.crypto.wrapping_keys import WrappingKey
from aws_encryption_sdk.key_providers.raw import RawMasterKey

ALGORITHMS = {
    16: WrappingAlgorithm.AES_128_GCM_IV12_TAG16_NO_PADDING,
    24: WrappingAlgorithm.AES_192_GCM_IV12_TAG16_NO_PADDING,
    32: WrappingAlgorithm.AES_256_GCM_IV12_TAG16_NO_PADDING,
}

PLUGIN = '''
import json, os
from aws_encryption_sdk.identifiers import EncryptionKeyType, WrappingAlgorithm
from aws_encryption_sdk.internal.crypto.wrapping_keys import WrappingKey
from aws_encryption_sdk.key_providers.raw import RawMasterKeyProvider

ALGORITHMS = {16: WrappingAlgorithm.AES_128_GCM_IV12_TAG16_NO_PADDING,
              24: WrappingAlgorithm.AES_192_GCM_IV12_TAG16_NO_PADDING,
              32: WrappingAlgorithm.AES_256_GCM_IV12_TAG16_NO_PADDING}

def provider(**_kwargs):
    keys = json.loads(os.environ["REKEY_RAW_KEYS"])

    class Raw(RawMasterKeyProvider):
        provider_id = keys["namespace"]

        def _get_raw_key(self, key_id):
            key = bytes.fromhex(keys["keys"][key_id.decode()])
            return WrappingKey(wrapping_algorithm=ALGORITHMS[len(key)], wrapping_key=key,
                               wrapping_key_type=EncryptionKeyType.SYMMETRIC)

    return Raw()
'''


def master_key(k):
    key = bytes.fromhex(k["key_hex"])
    return RawMasterKey(
        provider_id=k["namespace"],
        key_id=k["name"].encode(),
        wrapping_key=WrappingKey(
            wrapping_algorithm=ALGORITHMS[len(key)], wrapping_key=key, wrapping_key_type=EncryptionKeyType.SYMMETRIC
        ),
    )


def check_sdk(directory, manifest):
    client = aws_encryption_sdk.EncryptionSDKClient(commitment_policy=CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT)
    count = 0
    for m in manifest["messages"]:
        with open(os.path.join(directory, m["file"]), "rb") as f:
            ciphertext = f.read()
        for name, k in manifest["keys"].items():
            plaintext, header = client.decrypt(source=ciphertext, key_provider=master_key(k))
            if hashlib.sha256(plaintext).hexdigest() != m["plaintext_sha256"]:
                raise SystemExit("%s with %s: wrong plaintext" % (m["file"], name))
            if header.algorithm.algorithm_id != int(m["suite"], 16):
                raise SystemExit("%s: suite %s" % (m["file"], header.algorithm))
            for key, value in m["context"].items():
                if header.encryption_context.get(key) != value:
                    raise SystemExit("%s: context %s" % (m["file"], key))
            count += 1
    return count


def check_cli(directory, manifest):
    cli = os.path.join(os.path.dirname(sys.executable), "aws-encryption-cli")
    k = next(iter(manifest["keys"].values()))
    with tempfile.TemporaryDirectory() as tmp:
        plugin_dir = os.path.join(tmp, "plugin")
        dist = os.path.join(plugin_dir, "rekey_raw_plugin-0.0.0.dist-info")
        os.makedirs(dist)
        with open(os.path.join(plugin_dir, "rekey_raw_plugin.py"), "w") as f:
            f.write(PLUGIN)
        with open(os.path.join(dist, "METADATA"), "w") as f:
            f.write("Metadata-Version: 2.1\nName: rekey-raw-plugin\nVersion: 0.0.0\n")
        with open(os.path.join(dist, "entry_points.txt"), "w") as f:
            f.write("[aws_encryption_sdk_cli.master_key_providers]\nrekey-raw = rekey_raw_plugin:provider\n")
        env = dict(os.environ)
        env["PYTHONPATH"] = plugin_dir
        env["REKEY_RAW_KEYS"] = json.dumps({"namespace": k["namespace"], "keys": {k["name"]: k["key_hex"]}})
        count = 0
        for m in manifest["messages"]:
            out = os.path.join(tmp, m["file"] + ".decrypted")
            command = [
                cli,
                "--decrypt",
                "--input",
                os.path.join(directory, m["file"]),
                "--output",
                out,
                "--wrapping-keys",
                "provider=rekey-raw",
                "key=" + k["name"],
                "--commitment-policy",
                "require-encrypt-require-decrypt",
                "--suppress-metadata",
            ]
            result = subprocess.run(command, env=env, capture_output=True, text=True)
            if result.returncode != 0:
                raise SystemExit("CLI refused %s: %s" % (m["file"], result.stderr.strip()))
            with open(out, "rb") as f:
                if hashlib.sha256(f.read()).hexdigest() != m["plaintext_sha256"]:
                    raise SystemExit("CLI: %s: wrong plaintext" % m["file"])
            count += 1
        return count


def main():
    directory = sys.argv[1]
    with open(os.path.join(directory, "manifest.json")) as f:
        manifest = json.load(f)
    sdk = check_sdk(directory, manifest)
    cli = check_cli(directory, manifest)
    print(
        "aws-encryption-sdk %s: %d decryptions ok; aws-encryption-cli: %d files ok"
        % (aws_encryption_sdk.__version__, sdk, cli)
    )


if __name__ == "__main__":
    main()
