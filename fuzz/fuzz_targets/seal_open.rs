//! Fuzz target `seal_open`: a thin wrapper over [`deputy::fuzzing::seal_open`], which the stable test
//! `tests/fuzz_corpus.rs` runs the committed corpus through.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    deputy::fuzzing::seal_open(data);
});
