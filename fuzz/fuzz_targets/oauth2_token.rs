//! Fuzz target `oauth2_token`: a thin wrapper over [`deputy::fuzzing::oauth2_token`], which the stable test
//! `tests/fuzz_corpus.rs` runs the committed corpus through.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    deputy::fuzzing::oauth2_token(data);
});
