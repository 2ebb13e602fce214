"""Prints the criterion results (medians) as Markdown tables, each envelope
figure next to raw AES-256-GCM measured in the same run, with their ratios.

  cargo bench -p rekey-benches --bench envelope                     # RustCrypto
  cargo bench -p rekey-benches --bench envelope --features aws-lc   # aws-lc-rs
  python3 benches/report.py

Each run's groups are tagged with its backend ("seal [aws-lc-rs]"); a run
that has not been made is left out.
"""

import json
import os

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "target", "criterion")
SIZES = {"64 B": 64, "1 KiB": 1024, "64 KiB": 65536, "16 MiB": 16 << 20}
RUNS = {"aws-lc-rs": "raw-aws-lc-rs", "rustcrypto": "raw-rustcrypto"}
GIB = 1 << 30


def load():
    """Median nanoseconds by (group, function, value), from every benchmark.json."""
    found = {}
    for dirpath, _, files in os.walk(ROOT):
        if os.path.basename(dirpath) != "new" or "benchmark.json" not in files:
            continue
        meta = json.load(open(os.path.join(dirpath, "benchmark.json")))
        estimates = json.load(open(os.path.join(dirpath, "estimates.json")))
        key = (meta["group_id"], meta["function_id"], meta.get("value_str"))
        found[key] = estimates["median"]["point_estimate"]
    return found


def mbps(nbytes, ns):
    return nbytes / ns * 1e3


def ratio(a, b):
    return f"{a / b:.2f}" if a and b else "n/a"


def main():
    found = load()
    get = lambda group, function, value=None: found.get((group, function, value))

    for run, raw_same in RUNS.items():
        seal_group, open_group = f"seal [{run}]", f"open [{run}]"
        rows = []
        for name, n in SIZES.items():
            seal, open_ = get(seal_group, "envelope", name), get(open_group, "envelope", name)
            seal_into, open_into = get(seal_group, "envelope-into", name), get(open_group, "envelope-into", name)
            raw_seal, raw_open = get(seal_group, raw_same, name), get(open_group, raw_same, name)
            lc_seal, lc_open = get(seal_group, "raw-aws-lc-rs", name), get(open_group, "raw-aws-lc-rs", name)
            if None in (seal, open_, raw_seal, raw_open):
                continue
            rate = lambda ns: f"{mbps(n, ns):,.0f}" if ns else "n/a"
            rows.append(
                f"| {name} | {rate(seal)} | {rate(open_)} | {rate(seal_into)} | {rate(open_into)} "
                f"| {rate(raw_seal)} | {rate(raw_open)} "
                f"| {ratio(raw_seal, seal)} / {ratio(raw_seal, seal_into)} | {ratio(raw_open, open_)} / {ratio(raw_open, open_into)} "
                f"| {ratio(lc_seal, seal)} / {ratio(lc_seal, seal_into)} | {ratio(lc_open, open_)} / {ratio(lc_open, open_into)} |"
            )
        if rows:
            print(f"\n**Records, envelope on {run}** (cached data key; open = parse, commitment, decrypt, wipe; "
                  f"\"into\" = `seal_into` / `open_into` with an output buffer reused from record to record, "
                  f"as the raw references reuse theirs)\n")
            print(f"| size | seal MB/s | open MB/s | seal into MB/s | open into MB/s | raw {run} seal MB/s "
                  f"| raw {run} open MB/s | seal / raw (fresh / into) | open / raw (fresh / into) "
                  f"| seal / raw aws-lc-rs (fresh / into) | open / raw aws-lc-rs (fresh / into) |")
            print("|---|---|---|---|---|---|---|---|---|---|---|")
            print("\n".join(rows))
            for label, function in (("", "envelope"), ("into a reused buffer, ", "envelope-into")):
                seal64, open64 = get(seal_group, function, "64 B"), get(open_group, function, "64 B")
                if seal64 and open64:
                    print(f"\n64 B with a cached data key, {label}one core: seal {1e9 / seal64:,.0f} messages/s "
                          f"({seal64:,.0f} ns), open {1e9 / open64:,.0f} messages/s ({open64:,.0f} ns)")

        framed = f"framed [{run}]"
        lc_raw, rc_raw = get(framed, "raw-aws-lc-rs 1 GiB"), get(framed, "raw-rustcrypto 1 GiB")
        lc_all, lc_mem = get(framed, "raw-aws-lc-rs 1 GiB, all cores"), get(framed, "raw-aws-lc-rs open 1 GiB from memory")
        lc_mem_all = get(framed, "raw-aws-lc-rs open 1 GiB from memory, all cores")
        rows = []
        for op in ("encrypt", "decrypt"):
            for threads in ("1 thread", "all cores"):
                ns = get(framed, f"envelope {op} 1 GiB, {threads}")
                if ns:
                    rows.append(f"| {op}, {threads} | {mbps(GIB, ns):,.0f} | {ratio(lc_raw, ns)} | {ratio(lc_all, ns)} "
                                f"| {ratio(lc_mem, ns) if op == 'decrypt' else ''} "
                                f"| {ratio(lc_mem_all, ns) if op == 'decrypt' else ''} | {ratio(rc_raw, ns)} |")
        if rows:
            refs = ", ".join(f"{label} {mbps(GIB, ns):,.0f} MB/s" for label, ns in
                             (("aws-lc-rs one core", lc_raw), ("aws-lc-rs all cores", lc_all),
                              ("aws-lc-rs open from memory", lc_mem), ("aws-lc-rs open from memory, all cores", lc_mem_all),
                              ("RustCrypto one core", rc_raw)) if ns)
            print(f"\n**Framed 1 GiB, 64 KiB frames, envelope on {run}** (raw references, 64 KiB pieces: {refs})\n")
            print("| work | MB/s | / raw aws-lc-rs one core | / raw aws-lc-rs all cores | / raw aws-lc-rs open from memory "
                  "| / raw aws-lc-rs open from memory, all cores | / raw RustCrypto one core |")
            print("|---|---|---|---|---|---|---|")
            print("\n".join(rows))

        for size in ("22 B", "1 KiB"):
            ns = get(f"legacy [{run}]", "decrypt", size)
            if ns:
                print(f"\nlegacy CBC record decrypt, {size}: {1e9 / ns:,.0f} records/s (median)")


if __name__ == "__main__":
    main()
