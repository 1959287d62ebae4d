//! Fuzz target `oauth1_token`: a thin wrapper over [`deputy::fuzzing::oauth1_token`], which the stable test
//! `tests/fuzz_corpus.rs` runs the committed corpus through.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    deputy::fuzzing::oauth1_token(data);
});
