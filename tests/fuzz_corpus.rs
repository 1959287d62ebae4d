//! The committed fuzz corpora as ordinary tests: every file of `fuzz/corpus/<target>/` goes
//! through the function in `deputy::fuzzing` that the cargo-fuzz target of that name calls, so
//! CI (stable, no fuzzer) replays exactly what was fuzzed, every finding's input included.

use std::path::{Path, PathBuf};

fn corpus(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Runs every input of a corpus, naming the file that fails. A corpus that went missing, or
/// one whose inputs all stop before the part under test (`run` returns whether it got there),
/// would pass having checked nothing: both fail.
fn replay(target: &str, run: fn(&[u8]) -> bool) {
    let files = corpus(target);
    assert!(
        files.len() >= 5,
        "fuzz/corpus/{target} has {} inputs",
        files.len()
    );
    let mut reached = 0;
    for file in &files {
        let data = std::fs::read(file).unwrap();
        match std::panic::catch_unwind(|| run(&data)) {
            Ok(deep) => reached += usize::from(deep),
            Err(_) => panic!("{} fails", file.display()),
        }
    }
    // Minimised corpora are mostly the many ways to be refused early; the seeds (`seed-*`,
    // realistic inputs from fuzz/seeds/make_seeds.py) and what grew from them go deep.
    assert!(
        reached >= 3,
        "only {reached} of {} inputs in fuzz/corpus/{target} reach what it fuzzes",
        files.len()
    );
}

#[test]
fn dispatch_corpus() {
    replay("dispatch", deputy::fuzzing::dispatch);
}

#[test]
fn pack_load_corpus() {
    replay("pack_load", deputy::fuzzing::pack_load);
}

#[test]
fn render_args_corpus() {
    replay("render_args", deputy::fuzzing::render_args);
}

#[test]
fn oauth1_token_corpus() {
    replay("oauth1_token", deputy::fuzzing::oauth1_token);
}

#[test]
fn oauth2_token_corpus() {
    replay("oauth2_token", deputy::fuzzing::oauth2_token);
}

#[test]
fn seal_open_corpus() {
    replay("seal_open", deputy::fuzzing::seal_open);
}

#[test]
fn slack_event_corpus() {
    replay("slack_event", deputy::fuzzing::slack_event);
}

#[test]
fn discord_event_corpus() {
    replay("discord_event", deputy::fuzzing::discord_event);
}
