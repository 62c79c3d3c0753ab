#![no_main]
//! Fuzzes ferry_repo::fuzzing::aes_ctr (see that function for what it asserts).

libfuzzer_sys::fuzz_target!(|data: &[u8]| ferry_repo::fuzzing::aes_ctr(data));
