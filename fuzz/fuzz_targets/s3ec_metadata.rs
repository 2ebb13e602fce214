#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| envelope_core::fuzzing::s3ec_metadata(data));
