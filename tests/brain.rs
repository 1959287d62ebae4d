//! The brain under load and under attack, through the real binary: many users linking at
//! once, SIGKILL at random moments (crash trials), damaged files, and `deputy brain …`.

mod support;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use deputy::brain::seal::Sealer;
use deputy::brain::{admin, sled::SledStore, Brain};
use deputy::sandbox::Provider;
use rand::{Rng, SeedableRng};
use secrecy::SecretString;
use support::*;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

/// `[who] text` lines, as `shell --show-user` prints them.
fn split_reply(line: &str) -> Option<(&str, &str)> {
    line.strip_prefix('[')?.split_once("] ")
}

fn setkeys(users: std::ops::Range<usize>) -> Vec<String> {
    users
        .flat_map(|i| {
            [
                format!("/user u{i}"),
                format!("jenkins setkey u{i}:tok-{i}"),
            ]
        })
        .collect()
}

fn refs(lines: &[String]) -> Vec<&str> {
    lines.iter().map(String::as_str).collect()
}

fn stored_by(stdout: &str) -> HashSet<String> {
    stdout
        .lines()
        .filter_map(split_reply)
        .filter(|(_, text)| text.starts_with("Stored your jenkins key"))
        .map(|(who, _)| who.to_string())
        .collect()
}

#[tokio::test]
async fn a_thousand_users_link_at_once_then_ten_thousand_commands_run_as_each() {
    let jenkins = FakeJenkins::start().await;
    let deputy = Deputy::new(&jenkins.url, "");
    let lines = setkeys(0..1000);
    let run = deputy.shell(&["--show-user"], &refs(&lines)).await.ok();
    let stored = stored_by(&run.stdout());
    assert_eq!(stored.len(), 1000, "{}", run.stdout());

    // A new process: the keys come from disk. Command j is run by user (j * 7919) % 1000.
    let mut expected: BTreeMap<String, usize> = BTreeMap::new();
    let mut lines = Vec::new();
    for j in 0..10_000usize {
        let user = format!("u{}", (j * 7919) % 1000);
        *expected.entry(user.clone()).or_default() += 1;
        lines.push(format!("/user {user}"));
        lines.push("jenkins whoami".into());
    }
    let run = deputy.shell(&["--show-user"], &refs(&lines)).await.ok();
    let mut answered: BTreeMap<String, usize> = BTreeMap::new();
    for (who, text) in run.stdout().lines().filter_map(split_reply) {
        assert_eq!(text, format!("You are {who} (full name) on Jenkins."));
        *answered.entry(who.to_string()).or_default() += 1;
    }
    assert_eq!(answered, expected);
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for s in jenkins.seen() {
        assert_eq!(s.path, "/me/api/json");
        *seen
            .entry(s.user.expect("every call carried its user's own key"))
            .or_default() += 1;
    }
    assert_eq!(seen, expected);
}

/// deputy configured with the fake Jenkins and the sandbox's X.
fn deputy_with_both(jenkins: &str, x: &str) -> Deputy {
    let mut d = Deputy::new(
        jenkins,
        &format!(
            "\n[services.twitter]\nbase_url = \"{x}\"\nconsumer_key = \"{}\"\n",
            deputy::sandbox::CONSUMER_KEY
        ),
    );
    d.env.push((
        "DEPUTY_TWITTER_CONSUMER_SECRET".into(),
        deputy::sandbox::CONSUMER_SECRET.into(),
    ));
    d
}

#[derive(Debug, Default)]
struct Tally {
    trials: usize,
    acknowledged: usize,
    lost: usize,
    corrupted: usize,
    /// Written, but killed before the user was told: allowed either way.
    unacknowledged_present: usize,
}

const KEY_USERS: usize = 150;
const OAUTH_USERS: usize = 8;

/// One trial: PIN flows opened, then a storm of setkeys and `t auth PIN`s, SIGKILL after a
/// random number of acknowledgements, restart, check.
async fn crash_trial(seed: u64, jenkins: &FakeJenkins, x: &Provider, tally: &mut Tally) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let deputy = deputy_with_both(&jenkins.url, &x.url);
    let mut child = deputy.spawn(&["shell", "--show-user"]);
    let mut stdin = child.stdin.take().unwrap();
    let mut out = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    async fn next(
        out: &mut tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    ) -> Option<String> {
        tokio::time::timeout(std::time::Duration::from_secs(20), out.next_line())
            .await
            .expect("a reply within 20 s")
            .unwrap()
    }

    let mut pins = Vec::new();
    for o in 0..OAUTH_USERS {
        stdin
            .write_all(format!("/user o{o}\nt setupauth\n").as_bytes())
            .await
            .unwrap();
        let line = next(&mut out).await.expect("a setupauth reply");
        pins.push(approve_and_read_pin(&link_in(&line), &format!("o{o}")).await);
    }
    let mut storm = String::new();
    for u in 0..KEY_USERS {
        storm.push_str(&format!("/user u{u}\njenkins setkey u{u}:tok-{u}\n"));
        if u % (KEY_USERS / OAUTH_USERS) == 0 && u / (KEY_USERS / OAUTH_USERS) < OAUTH_USERS {
            let o = u / (KEY_USERS / OAUTH_USERS);
            storm.push_str(&format!("/user o{o}\nt auth {}\n", pins[o]));
        }
    }
    let total = KEY_USERS + OAUTH_USERS;
    let kill_after = rng.gen_range(1..total);
    stdin.write_all(storm.as_bytes()).await.unwrap();

    let mut acked: HashSet<String> = HashSet::new();
    let note = |acked: &mut HashSet<String>, line: &str| {
        if let Some((who, text)) = split_reply(line) {
            if text.starts_with("Stored your jenkins key") || text.starts_with("Linked to @") {
                acked.insert(who.to_string());
            } else {
                panic!("unexpected reply during the storm: {line}");
            }
        }
    };
    while acked.len() < kill_after {
        let line = next(&mut out).await.expect("deputy alive until killed");
        note(&mut acked, &line);
    }
    child.start_kill().unwrap();
    // Replies already printed reached the user too.
    while let Ok(Some(line)) = out.next_line().await {
        note(&mut acked, &line);
    }
    drop(stdin);
    child.wait().await.unwrap();

    let verify = tokio::process::Command::from(deputy.command(&["brain", "verify"]))
        .output()
        .await
        .unwrap();
    let verify_out = String::from_utf8_lossy(&verify.stdout);
    tally.corrupted += verify_out
        .lines()
        .filter(|l| l.starts_with("FAILED"))
        .count();
    assert!(
        verify.status.success(),
        "seed {seed}: verify after SIGKILL: {verify_out}\n{}",
        String::from_utf8_lossy(&verify.stderr)
    );

    let mut check = Vec::new();
    for u in 0..KEY_USERS {
        check.push(format!("/user u{u}"));
        check.push("jenkins whoami".into());
    }
    for o in 0..OAUTH_USERS {
        check.push(format!("/user o{o}"));
        check.push("t whoami".into());
    }
    let run = deputy.shell(&["--show-user"], &refs(&check)).await;
    assert_eq!(run.code(), Some(0), "seed {seed}: {}", run.stderr());
    assert!(
        !run.stderr().contains(" ERROR ") && !run.stderr().contains("panicked"),
        "seed {seed}: restart was not clean: {}",
        run.stderr()
    );
    let mut present = HashSet::new();
    for (who, text) in run.stdout().lines().filter_map(split_reply) {
        let good = if who.starts_with('u') {
            text == format!("You are {who} (full name) on Jenkins.")
        } else {
            text.ends_with(&format!("(@{who}) on X."))
        };
        if good {
            present.insert(who.to_string());
        }
    }
    tally.trials += 1;
    tally.acknowledged += acked.len();
    tally.lost += acked.difference(&present).count();
    tally.unacknowledged_present += present.difference(&acked).count();
}

async fn crash_trials(n: usize) -> Tally {
    let jenkins = FakeJenkins::start().await;
    let x = Provider::start().await.unwrap();
    let mut tally = Tally::default();
    let first: u64 = rand::random();
    for i in 0..n as u64 {
        crash_trial(first.wrapping_add(i), &jenkins, &x, &mut tally).await;
    }
    println!(
        "crash trials: {} (first seed {first}); acknowledged {}, lost {}, corrupted {}, \
         stored but never acknowledged {}",
        tally.trials, tally.acknowledged, tally.lost, tally.corrupted, tally.unacknowledged_present
    );
    tally
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_trials_lose_nothing_acknowledged() {
    let tally = crash_trials(3).await;
    assert!(tally.acknowledged >= 3);
    assert_eq!((tally.lost, tally.corrupted), (0, 0), "{tally:?}");
}

/// The long form: `cargo test --test brain crash_trials_long -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long: 100 crash trials"]
async fn crash_trials_long() {
    let n = std::env::var("DEPUTY_CRASH_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let tally = crash_trials(n).await;
    assert_eq!((tally.lost, tally.corrupted), (0, 0), "{tally:?}");
}

fn sealer(secret: &str, previous: &[&str]) -> Sealer {
    let previous: Vec<SecretString> = previous
        .iter()
        .map(|p| SecretString::from(p.to_string()))
        .collect();
    Sealer::new(&SecretString::from(secret.to_string()), &previous).unwrap()
}

async fn output(deputy: &Deputy, args: &[&str]) -> Run {
    Run(tokio::process::Command::from(deputy.command(args))
        .output()
        .await
        .unwrap())
}

#[tokio::test]
async fn stats_forget_export_and_import() {
    let jenkins = FakeJenkins::start().await;
    let x = Provider::start().await.unwrap();
    let deputy = deputy_with_both(&jenkins.url, &x.url);
    let mut lines = setkeys(0..3);
    // alice has a key and a sign-in in progress; u1 in a second workspace does not exist in
    // the shell, so the forget filter is shown with services instead.
    lines.extend(["/user alice", "jenkins setkey u7:tok-7", "t setupauth"].map(String::from));
    deputy.shell(&[], &refs(&lines)).await.ok();

    let stats = output(&deputy, &["brain", "stats"]).await.ok().stdout();
    assert!(stats.contains("linked credentials: 4"), "{stats}");
    assert!(stats.contains("shell      jenkins          4"), "{stats}");
    assert!(stats.contains("pending sign-ins: 1"), "{stats}");
    assert!(stats.contains("size on disk: "), "{stats}");
    assert!(!stats.contains("tok-"), "{stats}");

    let backup = deputy.dir.path().join("backup.sealed");
    let exported = output(&deputy, &["brain", "export", backup.to_str().unwrap()])
        .await
        .ok()
        .stdout();
    assert!(exported.starts_with("exported 6 record(s)"), "{exported}");
    let raw = std::fs::read(&backup).unwrap();
    assert!(!contains(&raw, b"tok-"), "the backup is sealed");

    let forgot = output(
        &deputy,
        &[
            "brain",
            "forget",
            "--adapter",
            "shell",
            "--user",
            "alice",
            "--service",
            "jenkins",
        ],
    )
    .await
    .ok()
    .stdout();
    assert!(
        forgot.contains("erased 1 record(s) of shell user alice"),
        "{forgot}"
    );
    let forgot = output(
        &deputy,
        &["brain", "forget", "--adapter", "shell", "--user", "alice"],
    )
    .await
    .ok()
    .stdout();
    // The pending flow and its request-token index.
    assert!(forgot.contains("erased 2 record(s)"), "{forgot}");
    let stats = output(&deputy, &["brain", "stats"]).await.ok().stdout();
    assert!(stats.contains("linked credentials: 3"), "{stats}");
    assert!(stats.contains("pending sign-ins: 0"), "{stats}");
    assert!(stats.contains("records: 3"), "{stats}");

    // An export sealed under another secret is refused and changes nothing.
    let other = Deputy::new(&jenkins.url, "");
    let other = Deputy {
        secret: Some(SECRET_B.into()),
        ..other
    };
    other.shell(&[], &["jenkins setkey u9:tok-9"]).await.ok();
    let foreign = other.dir.path().join("foreign.sealed");
    output(&other, &["brain", "export", foreign.to_str().unwrap()])
        .await
        .ok();
    let refused = output(&deputy, &["brain", "import", foreign.to_str().unwrap()]).await;
    assert_eq!(refused.code(), Some(1));
    assert!(
        refused.stderr().contains("sealed under another secret"),
        "{}",
        refused.stderr()
    );
    // A truncated export: refused whole.
    let cut = deputy.dir.path().join("cut.sealed");
    std::fs::write(&cut, &raw[..raw.len() - 40]).unwrap();
    let refused = output(&deputy, &["brain", "import", cut.to_str().unwrap()]).await;
    assert_eq!(refused.code(), Some(1), "{}", refused.stderr());
    let stats = output(&deputy, &["brain", "stats"]).await.ok().stdout();
    assert!(
        stats.contains("records: 3"),
        "nothing half-imported: {stats}"
    );

    let imported = output(&deputy, &["brain", "import", backup.to_str().unwrap()])
        .await
        .ok()
        .stdout();
    assert!(imported.starts_with("imported 6 record(s)"), "{imported}");
    let run = deputy
        .shell(&[], &["/user alice", "jenkins whoami"])
        .await
        .ok();
    assert_eq!(run.stdout().trim(), "You are u7 (full name) on Jenkins.");
    let verify = output(&deputy, &["brain", "verify"]).await.ok().stdout();
    assert_eq!(verify.trim(), "all 6 record(s) open");
}

#[tokio::test]
async fn verify_names_a_tampered_record_and_exits_non_zero() {
    let deputy = Deputy::new("http://127.0.0.1:9", "");
    deputy.shell(&[], &refs(&setkeys(0..5))).await.ok();
    let dir = deputy.brain_dir();
    {
        let brain = Brain::open_dir(&dir, sealer(SECRET_A, &[])).unwrap();
        let key = brain.keys("cred/").await.unwrap().remove(2);
        let mut raw = brain.store().get(key.as_bytes()).await.unwrap().unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 1;
        brain.store().put(key.as_bytes(), raw).await.unwrap();
    }
    let run = output(&deputy, &["brain", "verify"]).await;
    assert_eq!(run.code(), Some(1));
    let failed: Vec<&str> = run
        .0
        .stdout
        .split(|b| *b == b'\n')
        .filter_map(|l| std::str::from_utf8(l).ok())
        .filter(|l| l.starts_with("FAILED"))
        .collect();
    assert_eq!(failed.len(), 1, "{}", run.stdout());
    assert!(
        failed[0].contains("cred/shell/local/u2/jenkins"),
        "{failed:?}"
    );
    assert!(
        run.stderr().contains("1 of 5 record(s) do not open"),
        "{}",
        run.stderr()
    );
    assert!(!run.stdout().contains("tok-"));
}

#[tokio::test]
async fn admin_commands_refuse_while_deputy_holds_the_brain() {
    let jenkins = FakeJenkins::start().await;
    let deputy = Deputy::new(&jenkins.url, "");
    let mut live = Live::start(&deputy, &["shell", "--user", "alice"]);
    assert!(live
        .ask(&format!("jenkins setkey {ALICE_KEY}"))
        .await
        .starts_with("Stored"));
    for args in [
        &["brain", "stats"][..],
        &["brain", "verify"],
        &["brain", "reseal"],
        &["brain", "export", "x.sealed"],
        &["brain", "forget", "--adapter", "shell", "--user", "alice"],
    ] {
        let run = output(&deputy, args).await;
        assert_eq!(run.code(), Some(1), "{args:?}");
        assert!(
            run.stderr()
                .contains("another deputy process has this brain open"),
            "{args:?}: {}",
            run.stderr()
        );
    }
    assert!(!deputy.dir.path().join("x.sealed").exists());
    assert!(live.ask("jenkins whoami").await.contains("on Jenkins"));
    live.finish().await;
}

#[tokio::test]
async fn a_reseal_killed_half_way_resumes_and_finishes() {
    let mut d = Deputy::new("http://127.0.0.1:9", "");
    let users = 20_000;
    let run = d
        .shell(&["--show-user"], &refs(&setkeys(0..users)))
        .await
        .ok();
    assert_eq!(stored_by(&run.stdout()).len(), users);
    let rotate = |d: &mut Deputy, secret: &str, previous: Option<&str>| {
        d.secret = Some(secret.into());
        d.env = previous
            .map(|p| ("DEPUTY_SECRET_PREVIOUS".to_string(), p.to_string()))
            .into_iter()
            .collect();
    };
    rotate(&mut d, SECRET_B, Some(SECRET_A));

    let mut child = tokio::process::Command::from(d.command(&["brain", "reseal"]))
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut progress = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    loop {
        let line = progress.next_line().await.unwrap().expect("progress");
        if line.starts_with("re-sealed ") {
            break;
        }
    }
    child.start_kill().unwrap();
    assert!(!child.wait().await.unwrap().success());

    // Half way: every record still opens with both keys loaded, some only with the old one.
    let both = output(&d, &["brain", "verify"]).await.ok();
    assert_eq!(both.stdout().trim(), format!("all {users} record(s) open"));
    let dir = d.brain_dir();
    let opened_by = |secret: &'static str| {
        let dir = dir.clone();
        async move {
            let store = SledStore::open(&dir.join("db"), &dir.join("commit")).unwrap();
            let brain = Brain::new(Arc::new(store), sealer(secret, &[]));
            let v = admin::verify(&brain).await.unwrap();
            v.records - v.failures.len()
        }
    };
    let stale = users - opened_by(SECRET_B).await;
    assert!(
        stale > 0 && stale < users,
        "killed half way: {stale} still stale"
    );
    rotate(&mut d, SECRET_B, None);
    let mixed = output(&d, &["brain", "verify"]).await;
    assert_eq!(
        mixed.code(),
        Some(4),
        "the canary is still the old key's: {}",
        mixed.stderr()
    );

    rotate(&mut d, SECRET_B, Some(SECRET_A));
    let again = output(&d, &["brain", "reseal"]).await.ok().stdout();
    assert!(
        again.starts_with(&format!("re-sealed {stale} record(s)")),
        "{again}"
    );
    rotate(&mut d, SECRET_B, None);
    let done = output(&d, &["brain", "verify"]).await.ok().stdout();
    assert_eq!(done.trim(), format!("all {users} record(s) open"));
    // The old secret opens nothing: not the canary, not a single record.
    rotate(&mut d, SECRET_A, None);
    assert_eq!(output(&d, &["brain", "verify"]).await.code(), Some(4));
    assert_eq!(opened_by(SECRET_A).await, 0);
    assert_eq!(opened_by(SECRET_B).await, users);
}

#[tokio::test]
async fn damaged_brain_files_are_named_at_start_up() {
    let deputy = Deputy::new("http://127.0.0.1:9", "");
    deputy.shell(&[], &refs(&setkeys(0..300))).await.ok();
    let dir = deputy.brain_dir();
    let pristine = tempfile::tempdir().unwrap();
    copy_tree(&dir, pristine.path());
    type Damage = fn(&std::path::Path);
    let cases: [(&str, Damage, &str, i32); 5] = [
        (
            "truncated database",
            |d| {
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .open(d.join("db/db"))
                    .unwrap();
                f.set_len(f.metadata().unwrap().len() / 3).unwrap();
            },
            "acknowledged writes are missing",
            1,
        ),
        (
            "database file removed",
            |d| std::fs::remove_file(d.join("db/db")).unwrap(),
            "acknowledged writes are missing",
            1,
        ),
        (
            "database folder removed",
            |d| std::fs::remove_dir_all(d.join("db")).unwrap(),
            "/db is missing",
            1,
        ),
        (
            "truncated canary",
            |d| std::fs::write(d.join("canary"), b"\x01abc").unwrap(),
            "/canary is damaged",
            1,
        ),
        (
            "garbled sled config",
            |d| std::fs::write(d.join("db/conf"), b"segment_size: x").unwrap(),
            "/db is damaged",
            1,
        ),
    ];
    for (what, damage, says, code) in cases {
        std::fs::remove_dir_all(&dir).unwrap();
        copy_tree(pristine.path(), &dir);
        damage(&dir);
        let run = deputy.shell(&[], &["jenkins whoami"]).await;
        assert_eq!(run.code(), Some(code), "{what}: {}", run.stderr());
        assert!(run.stderr().contains(says), "{what}: {}", run.stderr());
        assert!(
            !run.stderr().contains("panicked"),
            "{what}: {}",
            run.stderr()
        );
        assert!(
            run.stdout().is_empty(),
            "{what}: nothing answered: {}",
            run.stdout()
        );
    }
    // And the pristine copy still opens.
    std::fs::remove_dir_all(&dir).unwrap();
    copy_tree(pristine.path(), &dir);
    let verify = output(&deputy, &["brain", "verify"]).await.ok().stdout();
    assert_eq!(verify.trim(), "all 300 record(s) open");
}

fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
