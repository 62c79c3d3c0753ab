#![no_main]
//! Fuzzes ferry_config's loaders: the ConfigMap `data` path, the bare JSON document and a
//! manifest (YAML or JSON). Errors are fine; panics are not.

libfuzzer_sys::fuzz_target!(|data: &[u8]| ferry_config::fuzzing::load(data));
