"""The peers, measured on this machine in one run (medians of 5):
the blog's pycryptodomex CBC record scheme, and the AWS Encryption SDK for
Python with a raw AES wrapping key (committing suites, unsigned and the
signed default).

  .venv/bin/pip install aws-encryption-sdk   # once; pycryptodomex comes with scripts/test.sh
  .venv/bin/python scripts/peers/peers.py
"""

import base64
import os
import statistics
import time

from Cryptodome.Cipher import AES


def median_rate(fn, n, runs=5):
    rates = []
    for _ in range(runs):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        rates.append(n / (time.perf_counter() - t0))
    return statistics.median(rates)


# The blog's scheme, in its own shape.
BS = 16
salt = "0123456789abcdef".encode()
pad = lambda s: s + (BS - len(s) % BS) * chr(BS - len(s) % BS)
unpad = lambda s: s[0:-s[-1]]
key = os.urandom(32)


def blog_encrypt(raw):
    raw = base64.b64encode(raw.encode("utf-8")).decode("utf-8")
    cipher = AES.new(key, AES.MODE_CBC, salt)
    return base64.b64encode(salt + cipher.encrypt(pad(raw).encode("utf-8")))


def blog_decrypt(enc):
    enc = base64.b64decode(enc)
    cipher = AES.new(key, AES.MODE_CBC, enc[:16])
    return base64.b64decode(unpad(cipher.decrypt(enc[16:]))).decode("utf-8")


message = "i want to back to home"
record = blog_encrypt(message)
print("| peer | measure | median |")
print("|---|---|---|")
print(f"| blog CBC scheme (pycryptodomex) | encrypt 22 B | {median_rate(lambda: blog_encrypt(message), 20000):,.0f} records/s |")
print(f"| blog CBC scheme (pycryptodomex) | decrypt 22 B | {median_rate(lambda: blog_decrypt(record), 20000):,.0f} records/s |")
print(f"| blog CBC scheme | record size, 22 B text | {len(record)} characters |")

try:
    import aws_encryption_sdk
    from aws_encryption_sdk.identifiers import Algorithm, CommitmentPolicy, EncryptionKeyType, WrappingAlgorithm
    from aws_encryption_sdk.internal.crypto.wrapping_keys import WrappingKey
    from aws_encryption_sdk.key_providers.raw import RawMasterKeyProvider
except ImportError:
    print("\n(aws-encryption-sdk not installed: `.venv/bin/pip install aws-encryption-sdk`)")
    raise SystemExit(0)


class StaticProvider(RawMasterKeyProvider):
    provider_id = "static"

    def _get_raw_key(self, key_id):
        return WrappingKey(WrappingAlgorithm.AES_256_GCM_IV12_TAG16_NO_PADDING, b"k" * 32, EncryptionKeyType.SYMMETRIC)


provider = StaticProvider()
provider.add_master_key(b"wrapping-key")
client = aws_encryption_sdk.EncryptionSDKClient(commitment_policy=CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT)
small, big = b"x" * 64, b"x" * (1 << 20)
for name, suite in [
    ("unsigned, committing (0x0478)", Algorithm.AES_256_GCM_HKDF_SHA512_COMMIT_KEY),
    ("default, committing, ECDSA P-384 (0x0578)", Algorithm.AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384),
]:
    enc = lambda data: client.encrypt(source=data, key_provider=provider, algorithm=suite)[0]
    rate = median_rate(lambda: enc(small), 300)
    mbps = median_rate(lambda: enc(big), 5) * (1 << 20) / 1e6
    print(f"| AWS Encryption SDK for Python {aws_encryption_sdk.__version__}, {name} | encrypt 64 B | {rate:,.0f} msg/s |")
    print(f"| same | ciphertext size, 64 B | {len(enc(small))} bytes |")
    print(f"| same | encrypt 1 MiB | {mbps:,.0f} MB/s |")
