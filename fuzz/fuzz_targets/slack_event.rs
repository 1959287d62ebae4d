//! Fuzz target `slack_event`: a thin wrapper over [`deputy::fuzzing::slack_event`], which the stable test
//! `tests/fuzz_corpus.rs` runs the committed corpus through.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    deputy::fuzzing::slack_event(data);
});
