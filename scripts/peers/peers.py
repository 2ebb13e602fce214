"""The peers table: every row measured in one run on this machine, printed as
one Markdown table.

  .venv/bin/pip install aws-encryption-sdk-cli pycryptodomex   # once (brings aws-encryption-sdk)
  .venv/bin/python scripts/peers/peers.py              # about ten minutes
  .venv/bin/python scripts/peers/peers.py --quick      # fewer repetitions, smoke test
  .venv/bin/python scripts/peers/peers.py --build-esdk-rust   # builds the aws-esdk peer first (~7 min)

Rows: rekey's envelope on both AES-GCM backends (the `peer` binary of
rekey-benches, built twice), raw aws-lc-rs AES-256-GCM, the AWS Encryption
SDK for Python with a raw AES key (unsigned committing suite 0x0478 and the
signed default 0x0578), the AWS Encryption SDK for Rust (scripts/peers/esdk-rust,
its own cargo project outside the workspace: skipped with a message until
built), aws-encryption-cli on a 1 GiB file (against a local moto KMS, since
it only takes KMS wrapping keys), and the blog's pycryptodomex CBC scheme.

Columns: records/s at 64 B and 1 KiB (encrypt, one core, median of 5), MB/s
at 16 MiB (one message) and 1 GiB (a file on tmpfs, streamed where the peer
can stream), bytes of a 64 B record, and the peak RSS of the 1 GiB run.
"""

import base64
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PEERS = os.path.join(ROOT, "target", "peers")
ESDK_RUST = os.path.join(ROOT, "scripts", "peers", "esdk-rust")
ESDK_RUST_BIN = os.path.join(ESDK_RUST, "target", "release", "esdk-peer")
QUICK = "--quick" in sys.argv
RUNS = 3 if QUICK else 5
GIB = (64 << 20) if QUICK else (1 << 30)
MB = 1e6
notes = []


def median_rate(fn, n):
    """Calls of `fn` per second, median over RUNS runs of `n` calls."""
    rates = []
    for _ in range(RUNS):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        rates.append(n / (time.perf_counter() - t0))
    return statistics.median(rates)


def run_measured(argv, env=None):
    """Runs a command; returns (stdout, wall seconds, peak RSS in MiB) of that child alone.

    The peak is the child's VmHWM, sampled every 5 ms: a high-water mark, so a
    sample taken any time after the peak sees it. (getrusage's ru_maxrss is no
    use here: a child forked from this Python process starts from its size.)
    """
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(argv, stdout=out, stderr=err, env=env)
        peak_kib = 0
        while proc.poll() is None:
            try:
                with open(f"/proc/{proc.pid}/status") as status:
                    for line in status:
                        if line.startswith("VmHWM:"):
                            peak_kib = max(peak_kib, int(line.split()[1]))
            except (OSError, ValueError):
                pass
            time.sleep(0.005)
        seconds = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed: {err.read().decode(errors='replace')[-2000:]}")
        return out.read().decode(), seconds, peak_kib / 1024


def build_peer(features, name):
    cmd = ["cargo", "build", "--release", "-q", "-p", "rekey-benches", "--bin", "peer"] + features
    subprocess.run(cmd, cwd=ROOT, check=True)
    os.makedirs(PEERS, exist_ok=True)
    dest = os.path.join(PEERS, name)
    shutil.copy2(os.path.join(ROOT, "target", "release", "peer"), dest)
    return dest


def make_input(path, size):
    if os.path.exists(path) and os.path.getsize(path) == size:
        return
    chunk = os.urandom(1 << 20)
    with open(path, "wb") as f:
        for _ in range(size // len(chunk)):
            f.write(chunk)


def row(name, r64=None, r1k=None, mb16=None, mb1g=None, bytes64=None, rss=None):
    fmt = lambda v, f: "n/a" if v is None else f.format(v)
    return (f"| {name} | {fmt(r64, '{:,.0f}')} | {fmt(r1k, '{:,.0f}')} | {fmt(mb16, '{:,.0f}')} | "
            f"{fmt(mb1g, '{:,.0f}')} | {fmt(bytes64, '{}')} | {fmt(rss, '{:,.1f}')} |")


# ---------------------------------------------------------------- rekey and raw aws-lc-rs
def rekey_rows(workdir, big):
    rows = []
    out = os.path.join(workdir, "out.rky")
    raw = None
    for features, name, label in [([], "peer-rustcrypto", "rekey envelope, RustCrypto (default build)"),
                                  (["--features", "aws-lc"], "peer-aws-lc", "rekey envelope, aws-lc-rs (`aws-lc` feature, as the CLI)")]:
        binary = build_peer(features, name)
        records = json.loads(run_measured([binary, "records"])[0])
        stats, _, rss = run_measured([binary, "encrypt-file", big, out])
        stats = json.loads(stats)
        rows.append(row(label, records["seal_64_per_s"], records["seal_1k_per_s"], records["seal_16m_mbps"],
                        stats["bytes"] / stats["seconds"] / MB, records["record_64_bytes"], rss))
        raw = (binary, records)
    binary, records = raw
    stats, _, rss = run_measured([binary, "raw-file", big, out])
    stats = json.loads(stats)
    rows.append(row("raw aws-lc-rs AES-256-GCM (no envelope; 64 KiB pieces for the file)", records["raw_64_per_s"],
                    records["raw_1k_per_s"], records["raw_16m_mbps"], stats["bytes"] / stats["seconds"] / MB,
                    "80 (+12 nonce)", rss))
    os.remove(out)
    cli = os.path.join(ROOT, "target", "release", "rekey")
    if os.path.exists(cli):
        env = dict(os.environ, REKEY_KEYSTORE=os.path.join(workdir, "keys"))
        subprocess.run([cli, "keys", "create", "peers"], env=env, check=True, capture_output=True)
        back = os.path.join(workdir, "back.bin")
        # Median of three: a single run on tmpfs swings with the page
        # allocation of the file it writes (a `cp` of it takes 0.4 to 1.8 s).
        encrypt, decrypt = [], []
        for _ in range(3):
            _, seconds, rss = run_measured([cli, "encrypt", "--key", "local:peers", big, "-o", out], env=env)
            encrypt.append((seconds, rss))
            # The same file back: MB/s of plaintext written, peak RSS of the decrypting process.
            _, seconds, rss = run_measured([cli, "decrypt", "--key", "local:peers", out, "-o", back], env=env)
            if os.path.getsize(back) != os.path.getsize(big):
                raise SystemExit("rekey decrypt wrote the wrong length")
            decrypt.append((seconds, rss))
            os.remove(back)
            os.remove(out)
        for label, runs in (("`rekey encrypt` CLI (target/release/rekey), median of 3", encrypt),
                            ("`rekey decrypt` CLI of that file, median of 3", decrypt)):
            seconds = statistics.median(s for s, _ in runs)
            rows.append(row(label, mb1g=os.path.getsize(big) / seconds / MB, rss=max(r for _, r in runs)))
    else:
        notes.append("`rekey encrypt` CLI row skipped: build it with `cargo build --release -p rotate-cli`.")
    return rows


# ---------------------------------------------------------------- the blog's CBC scheme
def blog_rows():
    from Cryptodome.Cipher import AES

    bs, salt, key = 16, b"0123456789abcdef", os.urandom(32)
    pad = lambda s: s + (bs - len(s) % bs) * chr(bs - len(s) % bs)

    def blog_encrypt(raw):
        # The blog's shape: base64 the text, pad, CBC with a fixed IV, base64 again.
        raw = base64.b64encode(raw.encode("utf-8")).decode("utf-8")
        cipher = AES.new(key, AES.MODE_CBC, salt)
        return base64.b64encode(salt + cipher.encrypt(pad(raw).encode("utf-8")))

    m64, m1k, m16 = "x" * 64, "x" * 1024, "x" * (16 << 20)
    return [row("blog CBC scheme (pycryptodomex; unauthenticated, fixed IV)", median_rate(lambda: blog_encrypt(m64), 20000),
                median_rate(lambda: blog_encrypt(m1k), 10000), median_rate(lambda: blog_encrypt(m16), 3) * len(m16) / MB,
                None, f"{len(blog_encrypt(m64))} characters")]


# ---------------------------------------------------------------- AWS Encryption SDK for Python
def esdk_python_rows(workdir, big):
    try:
        import aws_encryption_sdk
        from aws_encryption_sdk.identifiers import Algorithm, CommitmentPolicy
    except ImportError:
        notes.append("AWS Encryption SDK for Python rows skipped: `.venv/bin/pip install aws-encryption-sdk`.")
        return []
    rows = []
    for suite in ("AES_256_GCM_HKDF_SHA512_COMMIT_KEY", "AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384"):
        client, provider = esdk_client()
        algorithm = getattr(Algorithm, suite)
        enc = lambda data: client.encrypt(source=data, key_provider=provider, algorithm=algorithm)[0]
        r64 = median_rate(lambda: enc(b"x" * 64), 300)
        r1k = median_rate(lambda: enc(b"x" * 1024), 300)
        mb16 = median_rate(lambda: enc(b"x" * (16 << 20)), 1 if QUICK else 3) * (16 << 20) / MB
        out = os.path.join(workdir, "out.esdk")
        _, seconds, rss = run_measured([sys.executable, __file__, "--esdk-stream", suite, big, out])
        os.remove(out)
        label = ("unsigned, committing (0x0478)" if "ECDSA" not in suite else "default, committing, ECDSA P-384 (0x0578)")
        rows.append(row(f"AWS Encryption SDK for Python {aws_encryption_sdk.__version__}, raw AES key, {label}",
                        r64, r1k, mb16, os.path.getsize(big) / seconds / MB, len(enc(b"x" * 64)), rss))
    return rows


def esdk_client():
    import aws_encryption_sdk
    from aws_encryption_sdk.identifiers import CommitmentPolicy, EncryptionKeyType, WrappingAlgorithm
    from aws_encryption_sdk.internal.crypto.wrapping_keys import WrappingKey
    from aws_encryption_sdk.key_providers.raw import RawMasterKeyProvider

    class StaticProvider(RawMasterKeyProvider):
        provider_id = "static"

        def _get_raw_key(self, key_id):
            return WrappingKey(WrappingAlgorithm.AES_256_GCM_IV12_TAG16_NO_PADDING, b"k" * 32, EncryptionKeyType.SYMMETRIC)

    provider = StaticProvider()
    provider.add_master_key(b"wrapping-key")
    client = aws_encryption_sdk.EncryptionSDKClient(commitment_policy=CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT)
    return client, provider


def esdk_stream(suite, source, dest):
    """Child process: streams `source` through the SDK into `dest` (for time and peak RSS)."""
    from aws_encryption_sdk.identifiers import Algorithm

    client, provider = esdk_client()
    with open(source, "rb") as src, open(dest, "wb") as out:
        with client.stream(mode="e", source=src, key_provider=provider, algorithm=getattr(Algorithm, suite)) as stream:
            for chunk in stream:
                out.write(chunk)


# ---------------------------------------------------------------- aws-encryption-cli against moto
def cli_rows(workdir, big):
    cli = os.path.join(os.path.dirname(sys.executable), "aws-encryption-cli")
    moto = os.path.join(os.path.dirname(sys.executable), "moto_server")
    if not (os.path.exists(cli) and os.path.exists(moto)):
        notes.append("aws-encryption-cli row skipped: `.venv/bin/pip install aws-encryption-sdk-cli moto flask flask-cors`.")
        return []
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    server = subprocess.Popen([moto, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(150):
            try:
                urllib.request.urlopen(url + "/moto-api/", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        env = dict(os.environ, AWS_ENDPOINT_URL=url, AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test",
                   AWS_DEFAULT_REGION="us-east-1", AWS_REGION="us-east-1")
        import boto3

        kms = boto3.client("kms", endpoint_url=url, region_name="us-east-1", aws_access_key_id="test",
                           aws_secret_access_key="test")
        arn = kms.create_key()["KeyMetadata"]["Arn"]
        rows = []
        for label, suite in [("unsigned, committing", "AES_256_GCM_HKDF_SHA512_COMMIT_KEY"),
                             ("default, committing, ECDSA P-384", None)]:
            out = os.path.join(workdir, "out.cli")
            argv = [cli, "-e", "-i", big, "-o", out, "-S", "-w", f"key={arn}",
                    "--commitment-policy", "require-encrypt-require-decrypt"]
            if suite:
                argv += ["--algorithm", suite]
            _, seconds, rss = run_measured(argv, env=env)
            os.remove(out)
            rows.append(row(f"aws-encryption-cli, AWS KMS key on moto, {label}", mb1g=os.path.getsize(big) / seconds / MB,
                            rss=rss))
        return rows
    finally:
        server.terminate()
        server.wait()


# ---------------------------------------------------------------- AWS Encryption SDK for Rust
def esdk_rust_rows():
    if "--build-esdk-rust" in sys.argv:
        subprocess.run(["cargo", "build", "--release", "--manifest-path", os.path.join(ESDK_RUST, "Cargo.toml")],
                       check=True, env=dict(os.environ, CARGO_TARGET_DIR=os.path.join(ESDK_RUST, "target")))
    if not os.path.exists(ESDK_RUST_BIN):
        notes.append("AWS Encryption SDK for Rust row skipped: not built (its own project in scripts/peers/esdk-rust, "
                     "outside the workspace; rerun with `--build-esdk-rust`, about 7 minutes cold).")
        return []
    out, _, _ = run_measured([ESDK_RUST_BIN])
    rows = []
    for line in out.splitlines():
        r = json.loads(line)
        rows.append(row(f"AWS Encryption SDK for Rust (aws-esdk), raw AES keyring, {r['suite']}", r["per_s_64"],
                        r["per_s_1k"], r["mbps_16m"], None, r["bytes_64"]))
    return rows


def cpu_model():
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def main():
    if sys.argv[1:2] == ["--esdk-stream"]:
        esdk_stream(*sys.argv[2:5])
        return
    workdir = tempfile.mkdtemp(prefix="rekey-peers-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    try:
        big = os.path.join(workdir, "input.bin")
        make_input(big, GIB)
        rows = rekey_rows(workdir, big) + esdk_python_rows(workdir, big) + esdk_rust_rows() + cli_rows(workdir, big) + blog_rows()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    size = "64 MiB (--quick)" if QUICK else "1 GiB"
    print(f"Peers, measured in one run on {cpu_model()}, {os.cpu_count()} cores "
          f"(`.venv/bin/python scripts/peers/peers.py`); encrypt only, but for the `rekey decrypt` row; file on tmpfs\n")
    print(f"| peer | records/s, 64 B | records/s, 1 KiB | MB/s, 16 MiB | MB/s, {size} | bytes of a 64 B record | peak RSS on {size}, MiB |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    for note in notes:
        print(f"\n- {note}")


if __name__ == "__main__":
    main()
