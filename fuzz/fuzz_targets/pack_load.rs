//! Fuzz target `pack_load`: a thin wrapper over [`deputy::fuzzing::pack_load`], which the stable test
//! `tests/fuzz_corpus.rs` runs the committed corpus through.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    deputy::fuzzing::pack_load(data);
});
