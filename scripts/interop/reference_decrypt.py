"""An independent reader of the rekey envelope format, written from
docs/format.md alone (Python, `cryptography`), to show the document is enough
to build a compatible implementation.

Usage: reference_decrypt.py VECTORS.json
Decrypts every vector with its data key, checks the commitment, and prints
one line per vector; exits non-zero on any mismatch.
"""

import hashlib
import hmac
import json
import struct
import sys

from cryptography.hazmat.primitives.ciphers.aead import AESGCM


def hkdf_sha256(salt, ikm, info, length):
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        out += block
        counter += 1
    return out[:length]


class Cursor:
    def __init__(self, data):
        self.data, self.pos = data, 0

    def take(self, n):
        if self.pos + n > len(self.data):
            raise ValueError("truncated")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def u8(self):
        return self.take(1)[0]

    def u16(self):
        return struct.unpack(">H", self.take(2))[0]

    def u32(self):
        return struct.unpack(">I", self.take(4))[0]

    def vec16(self):
        return self.take(self.u16())


def decrypt(envelope, data_key):
    c = Cursor(envelope)
    assert c.take(3) == b"RKY" and c.u8() == 1, "magic/version"
    suite = c.u16()
    assert suite == 1, "suite"
    form = c.u8()
    frame_len = c.u32() if form == 2 else None
    message_id = c.take(32)
    pairs = [(c.vec16(), c.vec16()) for _ in range(c.u16())]
    assert [k for k, _ in pairs] == sorted(k for k, _ in pairs), "canonical context"
    commitment = c.take(32)
    core = envelope[:c.pos]
    edks = [(c.vec16(), c.vec16(), c.vec16()) for _ in range(c.u8())]
    assert edks, "at least one EDK"

    suite_id = struct.pack(">H", suite)
    prk_salt = message_id
    body_key = hkdf_sha256(prk_salt, data_key, b"rekey v1 body key" + suite_id, 32)
    expected_commitment = hkdf_sha256(prk_salt, data_key, b"rekey v1 commitment" + suite_id, 32)
    if not hmac.compare_digest(commitment, expected_commitment):
        raise ValueError("commitment mismatch")
    gcm = AESGCM(body_key)

    def open_frame(seq, final, sealed):
        position = struct.pack(">IB", seq, 1 if final else 0)
        return gcm.decrypt(b"\x00" * 7 + position, sealed, core + position)

    body = envelope[c.pos:]
    if form == 1:
        return open_frame(0, True, body)
    out, seq, b = b"", 0, Cursor(body)
    while True:
        word = b.u32()
        final, length = bool(word >> 31), word & 0x7FFFFFFF
        assert length <= frame_len and (final or length == frame_len), "frame length"
        out += open_frame(seq, final, b.take(length + 16))
        if final:
            assert b.pos == len(body), "bytes after the final frame"
            return out
        seq += 1


def main(path):
    failures = 0
    for vector in json.load(open(path, encoding="utf-8")):
        plaintext = decrypt(bytes.fromhex(vector["envelope_hex"]), bytes.fromhex(vector["data_key_hex"]))
        ok = plaintext == bytes.fromhex(vector["plaintext_hex"])
        failures += not ok
        print(("ok   " if ok else "FAIL ") + vector["description"])
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
