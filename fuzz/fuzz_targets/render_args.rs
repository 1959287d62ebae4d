//! Fuzz target `render_args`: a thin wrapper over [`deputy::fuzzing::render_args`], which the stable test
//! `tests/fuzz_corpus.rs` runs the committed corpus through.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    deputy::fuzzing::render_args(data);
});
