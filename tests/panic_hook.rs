//! Opening a sled brain silences the process's panic hook for a moment (a damaged file must
//! give an error, not a panic message). Opens at the same time must leave the hook as they
//! found it. Alone in its own test binary, since the hook is global.

use std::sync::atomic::{AtomicUsize, Ordering};

use deputy::brain::seal::{generate_secret, Sealer};
use deputy::brain::Brain;

static HOOK_CALLS: AtomicUsize = AtomicUsize::new(0);

#[test]
fn brains_opened_at_once_leave_the_panic_hook_in_place() {
    std::panic::set_hook(Box::new(|_| {
        HOOK_CALLS.fetch_add(1, Ordering::SeqCst);
    }));
    let root = tempfile::tempdir().unwrap();
    let secret = generate_secret();
    for round in 0..6 {
        std::thread::scope(|s| {
            for n in 0..6 {
                let dir = root.path().join(format!("{round}-{n}"));
                let secret = &secret;
                s.spawn(move || {
                    let brain = Brain::open_dir(&dir, Sealer::new(secret, &[]).unwrap()).unwrap();
                    drop(brain);
                });
            }
        });
    }
    let _ = std::panic::catch_unwind(|| panic!("probe"));
    let _ = std::panic::take_hook();
    assert_eq!(
        HOOK_CALLS.load(Ordering::SeqCst),
        1,
        "the hook installed before the opens no longer runs"
    );
}
