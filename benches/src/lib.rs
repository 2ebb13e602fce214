//! Shared helpers of the benchmarks, and the per-message overhead figure.
//!
//! `cargo bench -p rekey-benches --bench envelope`, then
//! `python3 benches/report.py` for the table of medians and ratios.

use envelope_core::{EncryptionContext, LocalKey, LocalKeyring};

use envelope_core::hazmat::{Materials, encode_text, seal};

/// Encryption materials from a fresh local key.
///
/// # Panics
/// Never: the key name is valid and the local keyring needs no I/O.
pub fn local_materials(context: &EncryptionContext) -> (LocalKeyring, Materials) {
    let keyring = LocalKeyring::new(LocalKey::generate("bench").expect("valid name"));
    let (data_key, edk) = keyring.generate_sync(context).expect("local generate");
    (keyring, Materials { data_key, encrypted_data_keys: vec![edk] })
}

/// Bytes an envelope adds to a `len`-byte record with the local keyring:
/// (binary, text form), for the given context.
///
/// # Panics
/// Never for valid contexts.
pub fn overhead(len: usize, context: &EncryptionContext) -> (usize, usize) {
    let (_, materials) = local_materials(context);
    let sealed = seal(&materials, context, &vec![0u8; len]).expect("seal");
    (sealed.len() - len, encode_text(&sealed).len() - len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overhead_of_a_64_byte_record() {
        // Header core 3+1+2+1+32+2+32, EDK list 1+(2+11 "rekey-local")+(2+8 "bench/v1")+(2+60), tag 16.
        let (binary, _) = overhead(64, &EncryptionContext::new());
        assert_eq!(binary, 73 + 86 + 16);
    }
}
