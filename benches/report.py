"""Prints the criterion results (medians) as a Markdown table, with the
envelope's throughput as a ratio of raw AES-256-GCM measured in the same run.

  cargo bench -p rekey-benches --bench envelope && python3 benches/report.py
"""

import json
import os

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "target", "criterion")
SIZES = {"64 B": 64, "1 KiB": 1024, "64 KiB": 65536, "16 MiB": 16 << 20}


def median_ns(group, function, size=None):
    parts = [ROOT, group, function] + ([size] if size else []) + ["new", "estimates.json"]
    path = os.path.join(*parts)
    if not os.path.exists(path):
        return None
    return json.load(open(path))["median"]["point_estimate"]


def mbps(nbytes, ns):
    return nbytes / ns * 1e3 if ns else float("nan")


print("| size | envelope seal MB/s | envelope open MB/s | raw RustCrypto MB/s | raw aws-lc-rs MB/s | seal / raw same backend | seal / aws-lc-rs |")
print("|---|---|---|---|---|---|---|")
for name, n in SIZES.items():
    seal, open_, raw, lc = (median_ns("seal", "envelope", name), median_ns("open", "envelope", name),
                            median_ns("seal", "raw-rustcrypto", name), median_ns("seal", "raw-aws-lc-rs", name))
    if None in (seal, open_, raw, lc):
        continue
    print(f"| {name} | {mbps(n, seal):,.0f} | {mbps(n, open_):,.0f} | {mbps(n, raw):,.0f} | {mbps(n, lc):,.0f} "
          f"| {raw / seal:.2f} | {lc / seal:.2f} |")
for function in ("encrypt 1 GiB", "decrypt 1 GiB"):
    ns = median_ns("framed", function)
    if ns:
        print(f"\nframed {function}: {mbps(1 << 30, ns):,.0f} MB/s (median)")
for size in ("22 B", "1 KiB"):
    ns = median_ns("legacy", "decrypt", size)
    if ns:
        print(f"legacy CBC record decrypt, {size}: {1e9 / ns:,.0f} records/s (median)")
