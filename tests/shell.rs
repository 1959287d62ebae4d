//! Black-box tests of the core slice: the real `deputy` binary driven through its shell
//! adapter, against a Jenkins-like server on 127.0.0.1 that checks Basic auth.

mod support;

use std::time::Duration;

use support::*;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

fn setkey(key: &str) -> String {
    format!("jenkins setkey {key}")
}

/// A deputy whose brain holds alice's Jenkins key.
async fn alice_linked(jenkins: &FakeJenkins) -> Deputy {
    let deputy = Deputy::new(&jenkins.url, "");
    deputy
        .shell(&["--user", "alice"], &[&setkey(ALICE_KEY)])
        .await
        .ok();
    deputy
}

/// A `packs` folder beside the config with one pack whose line 9 is wrong.
fn broken_pack(deputy: &Deputy) -> std::path::PathBuf {
    let packs = deputy.dir.path().join("packs");
    std::fs::create_dir(&packs).unwrap();
    std::fs::write(
        packs.join("broken.toml"),
        "[service]\nname = \"broken\"\nprefixes = [\"b\"]\nbase_url = \"http://127.0.0.1:1\"\n\n[[command]]\nname = \"x\"\nhelp = \"x\"\npath = \"/{{ nope }}\"\n",
    )
    .unwrap();
    packs
}

#[tokio::test]
async fn setkey_in_dm_then_build_runs_as_that_user() {
    let jenkins = FakeJenkins::start().await;
    let deputy = Deputy::new(&jenkins.url, "");
    let run = deputy
        .shell(
            &["--user", "alice"],
            &[
                &setkey(ALICE_KEY),
                "@deputy jenkins build deploy env=prod tag=a&b",
            ],
        )
        .await
        .ok();
    let out = run.stdout();
    assert!(out.contains("Stored your jenkins key (encrypted)"), "{out}");
    assert!(out.contains("Started deploy as alice"), "{out}");
    assert!(out.contains("queue/item/17"), "{out}");
    assert_eq!(
        jenkins.seen(),
        vec![Seen {
            user: Some("alice".into()),
            method: "POST".into(),
            path: "/job/deploy/buildWithParameters".into(),
            // Each parameter encoded on its own: `&` inside a value cannot add a parameter.
            query: "env=prod&tag=a%26b".into(),
        }]
    );
    // The key survives a restart: it was flushed before the reply.
    let again = deputy
        .shell(&["--user", "alice"], &["j last deploy"])
        .await
        .ok();
    assert!(
        again.stdout().contains("deploy #42: SUCCESS"),
        "{}",
        again.stdout()
    );
    assert_eq!(jenkins.seen()[1].user.as_deref(), Some("alice"));
}

#[tokio::test]
async fn two_users_interleaved_each_call_carries_its_own_key() {
    let jenkins = FakeJenkins::start().await;
    let deputy = Deputy::new(&jenkins.url, "");
    let lines = [
        "/user alice",
        &setkey(ALICE_KEY),
        "/user bob",
        &setkey(BOB_KEY),
        "/user alice",
        "jenkins build alice-job-1",
        "/user bob",
        "jenkins build bob-job-1",
        "/user alice",
        "jenkins build alice-job-2",
        "/user bob",
        "jenkins build bob-job-2",
        "/user carol",
        "jenkins build carol-job",
    ];
    let run = deputy.shell(&[], &lines).await.ok();
    let out = run.stdout();
    assert!(
        out.contains("You haven't linked your jenkins account yet"),
        "{out}"
    );
    let seen = jenkins.seen();
    assert_eq!(seen.len(), 4, "carol has no key, so no call: {seen:?}");
    for s in &seen {
        let job = s.path.split('/').nth(2).unwrap();
        let owner = job.split('-').next().unwrap();
        assert_eq!(s.user.as_deref(), Some(owner), "{s:?}");
    }
}

#[tokio::test]
async fn setkey_in_public_is_refused_and_nothing_is_stored() {
    let jenkins = FakeJenkins::start().await;
    let deputy = Deputy::new(&jenkins.url, "");
    let run = deputy
        .shell(
            &["--user", "alice", "--public"],
            &[
                &format!("@deputy {}", setkey(ALICE_KEY)),
                // A misspelt service still holds a key: refused all the same.
                &format!("@deputy jenkns setkey {ALICE_KEY}"),
                "/dm",
                "jenkins build deploy",
            ],
        )
        .await
        .ok();
    let out = run.stdout();
    assert_eq!(out.matches("I did not store").count(), 2, "{out}");
    assert!(out.contains("treat it as exposed: rotate it"), "{out}");
    assert!(out.contains("delete it yourself"), "{out}");
    assert!(
        out.contains("You haven't linked your jenkins account yet"),
        "{out}"
    );
    assert!(
        !out.contains("11a2b3c4d5e6alicetoken"),
        "the key must not be echoed: {out}"
    );
    assert!(jenkins.seen().is_empty());
    for (path, bytes) in snapshot(&deputy.brain_dir()) {
        assert!(!contains(&bytes, b"alicetoken"), "{path:?}");
    }
    let db_records = snapshot(&deputy.brain_dir().join("db"));
    assert!(
        db_records.iter().all(|(_, b)| !contains(b, b"cred/")),
        "no credential record"
    );
}

#[tokio::test]
async fn wrong_secret_refuses_to_start_and_changes_no_file() {
    let jenkins = FakeJenkins::start().await;
    let mut deputy = alice_linked(&jenkins).await;
    let before = snapshot(&deputy.brain_dir());
    deputy.secret = Some(SECRET_B.into());
    for args in [&["shell"][..], &["run"], &["check"]] {
        let run = deputy.run_with_input(args, &["jenkins build deploy"]).await;
        assert_eq!(run.code(), Some(4), "{args:?}: {}", run.stderr());
        assert!(
            run.stderr().contains("DEPUTY_SECRET does not match"),
            "{}",
            run.stderr()
        );
        assert!(
            !run.stderr().contains(SECRET_B),
            "the secret must not be echoed"
        );
    }
    assert_eq!(
        before,
        snapshot(&deputy.brain_dir()),
        "a wrong secret must write nothing"
    );
    assert!(jenkins.seen().is_empty());

    // No secret at all: `run` refuses; a malformed one is named as such.
    deputy.secret = None;
    let run = deputy.run_with_input(&["run"], &[]).await;
    assert_eq!(run.code(), Some(4));
    assert!(
        run.stderr().contains("DEPUTY_SECRET is not set"),
        "{}",
        run.stderr()
    );
    deputy.secret = Some("too-short".into());
    let run = deputy.run_with_input(&["run"], &[]).await;
    assert_eq!(run.code(), Some(4));
    assert!(
        run.stderr().contains("at least 32 random bytes"),
        "{}",
        run.stderr()
    );
    assert!(!run.stderr().contains("too-short"));

    // The right secret still opens everything.
    deputy.secret = Some(SECRET_A.into());
    let run = deputy
        .shell(&["--user", "alice"], &["jenkins whoami"])
        .await
        .ok();
    assert!(
        run.stdout()
            .contains("You are alice (full name) on Jenkins."),
        "{}",
        run.stdout()
    );
}

#[tokio::test]
async fn brain_files_and_logs_never_hold_the_key_in_plain_text() {
    let jenkins = FakeJenkins::start().await;
    let deputy = Deputy::new(&jenkins.url, "");
    let mut cmd = deputy.command(&["shell", "--user", "alice"]);
    // Everything any crate logs, at the most verbose level.
    cmd.env("RUST_LOG", "trace");
    let mut child = tokio::process::Command::from(cmd)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(format!("{}\njenkins whoami\njenkins last boom\n", setkey(ALICE_KEY)).as_bytes())
        .await
        .unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("You are alice"), "{stdout}");
    let basic = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, ALICE_KEY);
    let token = ALICE_KEY.split_once(':').unwrap().1;
    for (what, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        assert!(!contains(bytes, token.as_bytes()), "{what} holds the token");
        assert!(
            !contains(bytes, basic.as_bytes()),
            "{what} holds the Basic header"
        );
    }
    assert!(
        contains(&out.stderr, b"deputy::audit"),
        "an audit line per call"
    );
    let files = snapshot(&deputy.brain_dir());
    assert!(files.len() >= 3, "{files:?}");
    for (path, bytes) in files {
        assert!(
            !contains(&bytes, token.as_bytes()),
            "{path:?} holds the token"
        );
        assert!(
            !contains(&bytes, basic.as_bytes()),
            "{path:?} holds the Basic header"
        );
        assert!(
            !contains(&bytes, SECRET_A.as_bytes()),
            "{path:?} holds DEPUTY_SECRET"
        );
    }
}

#[tokio::test]
async fn upstream_failures_get_clear_replies_and_the_next_command_works() {
    let jenkins = FakeJenkins::start().await;
    let deputy = Deputy::new(&jenkins.url, "timeout_secs = 1");
    let run = deputy
        .shell(
            &["--user", "alice"],
            &[
                &setkey(ALICE_KEY),
                "jenkins last boom",
                "jenkins last ok1",
                "jenkins last garbage",
                "jenkins last ok2",
                "jenkins last hang",
                "jenkins last ok3",
                "jenkins last busy",
                "jenkins last missing",
                "jenkins jobs",
                // A key Jenkins does not know: 401.
                "jenkins setkey alice:revoked-token",
                "jenkins last ok4",
            ],
        )
        .await
        .ok();
    let out = run.stdout();
    let lines: Vec<&str> = out.lines().collect();
    let expect = [
        "Stored your jenkins key",
        "jenkins had a server error (HTTP 500); try again later.",
        "ok1 #42: SUCCESS",
        "jenkins answered with something I couldn't read (expected JSON).",
        "ok2 #42: SUCCESS",
        "jenkins did not answer within 1 s; try again later.",
        "ok3 #42: SUCCESS",
        "jenkins is rate-limiting requests; try again in 7 s.",
        "jenkins says that does not exist (HTTP 404)",
        "• deploy (blue)",
        "• nightly (red)",
        "Stored your jenkins key",
        "Your jenkins credential was rejected (HTTP 401). Run `jenkins setkey <your Jenkins user name and an API token: user:token>` in a direct message to me",
    ];
    assert_eq!(lines.len(), expect.len(), "{out}");
    for (line, want) in lines.iter().zip(expect) {
        assert!(line.starts_with(want), "got {line:?}, want {want:?}\n{out}");
    }
    assert!(!out.contains("revoked-token"));
}

async fn next(out: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>) -> String {
    tokio::time::timeout(Duration::from_secs(20), out.next_line())
        .await
        .expect("a reply within 20 s")
        .unwrap()
        .expect("deputy is still running")
}

async fn send(stdin: &mut tokio::process::ChildStdin, lines: String) {
    stdin
        .write_all(format!("{lines}\n").as_bytes())
        .await
        .unwrap();
}

#[tokio::test]
async fn a_slow_upstream_delays_no_one_else_and_one_user_stays_in_order() {
    let jenkins = FakeJenkins::start().await;
    let deputy = Deputy::new(&jenkins.url, "");
    let mut child = deputy.spawn(&["shell"]);
    let mut stdin = child.stdin.take().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    send(&mut stdin, format!("/user alice\n{}", setkey(ALICE_KEY))).await;
    assert!(next(&mut out).await.contains("Stored"));
    send(&mut stdin, format!("/user bob\n{}", setkey(BOB_KEY))).await;
    assert!(next(&mut out).await.contains("Stored"));
    // alice's call hangs until released; her second message must wait behind it, while
    // bob's call is answered at once.
    send(
        &mut stdin,
        "/user alice\njenkins last slow\njenkins last after".into(),
    )
    .await;
    send(&mut stdin, "/user bob\njenkins last quick".into()).await;
    assert_eq!(
        next(&mut out).await,
        "quick #42: SUCCESS (http://jenkins.test/job/quick/42/)"
    );
    jenkins.state.release_slow.notify_one();
    assert!(next(&mut out).await.starts_with("slow #42"));
    assert!(next(&mut out).await.starts_with("after #42"));
    drop(stdin);
    assert!(child.wait().await.unwrap().success());
}

#[tokio::test]
async fn help_and_typos_get_useful_replies() {
    let jenkins = FakeJenkins::start().await;
    let deputy = Deputy::new(&jenkins.url, "");
    let run = deputy
        .shell(
            &["--user", "alice", "--public"],
            &[
                "@deputy help",
                "deputy: jenkns last x",
                "@deputy jenkins bild x",
                "@deputy jenkins help",
                "@deputy jenkins build",
                "@deputy jenkins build \"unclosed",
                "not for the bot",
            ],
        )
        .await
        .ok();
    let out = run.stdout();
    assert!(out.contains("• jenkins (`jenkins`, `j`)"), "{out}");
    assert!(out.contains("• gitlab (`gitlab`, `gl`)"), "{out}");
    assert!(
        out.contains("I don't know `jenkns`. Did you mean `jenkins`?"),
        "{out}"
    );
    assert!(out.contains("Did you mean `jenkins build`?"), "{out}");
    assert!(
        out.contains("`jenkins build <job> [params...]` — Start a build"),
        "{out}"
    );
    assert!(out.contains("`jenkins setkey <your Jenkins user name and an API token: user:token>` — link it (in a direct message only"), "{out}");
    assert!(
        out.contains("missing <job>. Usage: `jenkins build <job> [params...]`"),
        "{out}"
    );
    assert!(out.contains("a quote is not closed"), "{out}");
    assert!(!out.contains("not for the bot"), "{out}");
    assert!(jenkins.seen().is_empty());
}

#[tokio::test]
async fn broken_pack_names_file_and_line_and_blocks_start() {
    let jenkins = FakeJenkins::start().await;
    let deputy = Deputy::new(&jenkins.url, "");
    broken_pack(&deputy);
    std::fs::write(
        deputy.config(),
        "[bot]\npacks = \"packs\"\n[brain]\npath = \"data\"\n",
    )
    .unwrap();
    for args in [&["check"][..], &["shell"]] {
        let run = deputy.run_with_input(args, &[]).await;
        assert_eq!(run.code(), Some(3), "{args:?}");
        let err = run.stderr();
        assert!(
            err.contains("broken.toml:9: broken/x: path template: unknown variable(s) nope"),
            "{err}"
        );
    }
    assert!(
        !deputy.brain_dir().exists(),
        "nothing is created before the packs load"
    );

    // A config typo is named with its line too.
    std::fs::write(
        deputy.config(),
        "[bot]\npacks = \"packs\"\n[brian]\npath = \"data\"\n",
    )
    .unwrap();
    let run = deputy.run_with_input(&["check"], &[]).await;
    assert_eq!(run.code(), Some(3));
    assert!(run.stderr().contains("deputy.toml:3:"), "{}", run.stderr());
}

#[tokio::test]
async fn a_broken_pack_blocks_the_start_of_an_existing_brain_and_loses_nothing() {
    // A brain already on disk opens while the packs load; the packs' error must still come
    // first (before a wrong secret's), and the brain must come through as it was.
    let jenkins = FakeJenkins::start().await;
    let mut deputy = alice_linked(&jenkins).await;
    let before = snapshot(&deputy.brain_dir());
    let packs = broken_pack(&deputy);
    deputy.use_packs(&packs);
    for secret in [SECRET_B, SECRET_A] {
        deputy.secret = Some(secret.into());
        for args in [&["shell"][..], &["run"]] {
            let run = deputy.run_with_input(args, &["jenkins build deploy"]).await;
            let err = run.stderr();
            assert_eq!(run.code(), Some(3), "{args:?}: {err}");
            assert!(
                err.contains("broken.toml:9: broken/x: path template"),
                "{err}"
            );
            assert!(!err.contains("DEPUTY_SECRET"), "{err}");
        }
        if secret == SECRET_B {
            assert_eq!(
                before,
                snapshot(&deputy.brain_dir()),
                "a wrong secret writes nothing"
            );
        }
    }
    assert!(jenkins.seen().is_empty());

    deputy.use_packs(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("commands"));
    let run = deputy
        .shell(&["--user", "alice"], &["jenkins build deploy"])
        .await
        .ok();
    assert!(
        run.stdout().contains("Started deploy as alice"),
        "{}",
        run.stdout()
    );
}

#[tokio::test]
async fn check_reports_what_is_loaded() {
    let jenkins = FakeJenkins::start().await;
    let deputy = Deputy::new(&jenkins.url, "[services.gitlab]\nenabled = false");
    let run = deputy.run_with_input(&["check"], &[]).await.ok();
    let out = run.stdout();
    assert!(out.contains("service jenkins (jenkins, j) from"), "{out}");
    assert!(
        out.contains(&jenkins.url),
        "the operator's base_url override applies: {out}"
    );
    assert!(!out.contains("service gitlab"), "disabled: {out}");
    assert!(out.contains("secret: ok"), "{out}");
    assert!(!deputy.brain_dir().exists(), "check writes nothing");
}

#[tokio::test]
async fn header_key_pack_sends_the_users_token_and_a_json_body() {
    let jenkins = FakeJenkins::start().await;
    let (gitlab, seen) = fake_gitlab().await;
    let deputy = Deputy::new(
        &jenkins.url,
        &format!("[services.gitlab]\nbase_url = \"{gitlab}\""),
    );
    let run = deputy
        .shell(
            &["--user", "alice"],
            &[
                "gl whoami",
                &format!("gl setkey {GITLAB_TOKEN}"),
                "gl whoami",
                r#"gl issue team/app Deploy "fails" on café"#,
                "gl logout",
                "gl whoami",
            ],
        )
        .await
        .ok();
    let out = run.stdout();
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("You haven't linked your gitlab account yet"),
        "{out}"
    );
    assert!(lines[1].starts_with("Stored your gitlab key"), "{out}");
    assert_eq!(lines[2], "You are Alice A (@alice) on GitLab.");
    assert_eq!(
        lines[3],
        "Opened #7 on team/app: http://gitlab.test/team/app/-/issues/7"
    );
    assert!(lines[4].starts_with("Deleted your gitlab key"), "{out}");
    assert!(
        lines[5].starts_with("You haven't linked your gitlab account yet"),
        "{out}"
    );
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "no call without a key: {seen:?}");
    assert!(seen.iter().all(|(ok, ..)| *ok));
    assert_eq!(seen[1].2, "/api/v4/projects/team%2Fapp/issues");
    assert_eq!(
        seen[1].3,
        serde_json::json!({"title": "Deploy fails on café"})
    );
}

#[tokio::test]
async fn a_huge_line_is_refused_without_reading_it_and_the_next_one_is_answered() {
    let jenkins = FakeJenkins::start().await;
    let deputy = Deputy::new(&jenkins.url, "");
    let huge = format!("jenkins setkey {}", "x".repeat(10 * 1024 * 1024));
    let run = deputy
        .shell(&["--user", "alice"], &[&huge, "jenkins whoami"])
        .await
        .ok();
    let out = run.stdout();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out:.300}");
    assert!(
        lines[0].starts_with("That message is longer than 64 KiB"),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].contains("haven't linked"),
        "nothing was stored: {}",
        lines[1]
    );
}

#[tokio::test]
async fn admins_see_links_and_revoke_them_and_everyone_else_is_refused() {
    let jenkins = FakeJenkins::start().await;
    let deputy = Deputy::new(&jenkins.url, "");
    let config = std::fs::read_to_string(deputy.config()).unwrap();
    std::fs::write(
        deputy.config(),
        config.replace("[bot]\n", "[bot]\nadmins = [\"shell:local:root\"]\n"),
    )
    .unwrap();
    let mut live = Live::start(&deputy, &["shell", "--user", "alice"]);
    assert!(live
        .ask(&format!("jenkins setkey {ALICE_KEY}"))
        .await
        .starts_with("Stored"));
    live.send("/user bob").await;
    assert!(live.ask("admin links alice").await.starts_with(
        "Only deputy's operators can use `admin` commands, and you (shell:local:bob) are not one."
    ));
    live.send("/user root").await;
    assert_eq!(
        live.ask("admin links alice").await,
        "shell:local:alice has linked: jenkins."
    );
    assert_eq!(
        live.ask("admin links shell:local:bob").await,
        "shell:local:bob has linked no service."
    );
    assert!(live
        .ask("admin stats")
        .await
        .starts_with("1 linked account(s), 0 sign-in(s) in progress:"));
    let mut stats = Vec::new();
    for _ in 0..4 {
        stats.push(live.line().await);
    }
    assert!(
        stats.contains(&"• jenkins: 1 linked".to_string()),
        "{stats:?}"
    );
    let revoke = live.ask("admin revoke alice jenkins").await;
    assert!(revoke.starts_with("For shell:local:alice:"), "{revoke}");
    assert!(revoke.contains("jenkins"), "{revoke}");
    assert!(
        !revoke.contains(ALICE_KEY.split(':').nth(1).unwrap()),
        "no secret shown"
    );
    assert!(live
        .ask("admin frobnicate")
        .await
        .starts_with("Admin commands: `admin links <user>`"));
    live.send("/user alice").await;
    assert!(live.ask("jenkins whoami").await.contains("haven't linked"));
    let log = live.finish_with_log().await;
    assert!(
        log.contains("admin command") && log.contains("outcome=\"refused\""),
        "{log}"
    );
    assert!(log.contains("action=\"revoke\""), "{log}");
}

#[tokio::test]
async fn a_command_allowed_to_a_group_refuses_others_and_says_who_can() {
    let jenkins = FakeJenkins::start().await;
    let deputy = Deputy::new(
        &jenkins.url,
        "\n[permissions]\ndeployers = [\"shell:local:alice\"]\n",
    );
    let packs = deputy.dir.path().join("packs");
    std::fs::create_dir(&packs).unwrap();
    let pack = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/commands/jenkins.toml"
    ))
    .unwrap()
    .replace(
        "name = \"build\"\n",
        "name = \"build\"\nallow = [\"deployers\"]\n",
    );
    std::fs::write(packs.join("jenkins.toml"), pack).unwrap();
    deputy.use_packs(&packs);
    let mut live = Live::start(&deputy, &["shell", "--user", "bob"]);
    assert!(live
        .ask(&format!("jenkins setkey {BOB_KEY}"))
        .await
        .starts_with("Stored"));
    assert_eq!(
        live.ask("jenkins build deploy").await,
        "You (shell:local:bob) may not run `jenkins build`. Members of deployers (shell:local:alice) can; ask an operator to add you."
    );
    // Other commands are everyone's.
    assert!(live.ask("jenkins last deploy").await.contains("deploy #42"));
    live.send("/user alice").await;
    assert!(live
        .ask(&format!("jenkins setkey {ALICE_KEY}"))
        .await
        .starts_with("Stored"));
    assert!(live
        .ask("jenkins build deploy")
        .await
        .starts_with("Started deploy as alice"));
    live.finish().await;
    let builds: Vec<Option<String>> = jenkins
        .seen()
        .into_iter()
        .filter(|s| s.method == "POST")
        .map(|s| s.user)
        .collect();
    assert_eq!(
        builds,
        [Some("alice".to_string())],
        "bob's build never left deputy"
    );
}

#[tokio::test]
async fn a_command_that_asks_first_runs_only_after_the_same_users_typed_yes() {
    let jenkins = FakeJenkins::start().await;
    let deputy = Deputy::new(&jenkins.url, "");
    deputy
        .shell(&["--user", "alice"], &[&setkey(ALICE_KEY)])
        .await
        .ok();
    let run = deputy
        .shell(
            &["--user", "alice", "--show-user", "--public"],
            &[
                "@deputy jenkins abort deploy",
                // Someone else's yes, in the same channel, confirms nothing.
                "/user bob",
                "@deputy yes",
                "/user alice",
                "yes",
                // Used once: a second yes finds nothing waiting.
                "@deputy yes",
            ],
        )
        .await
        .ok();
    let out = run.stdout();
    assert!(
        out.contains("[alice] Run `jenkins abort deploy` as you? (Abort the running (last) build of <job>.) Type `yes` to confirm or `no` to cancel, within 120 s."),
        "{out}"
    );
    assert!(
        out.contains("[bob] Nothing here is waiting for your yes or no"),
        "{out}"
    );
    assert!(
        out.contains("[alice] Asked Jenkins to abort the last build of deploy, as alice."),
        "{out}"
    );
    assert!(
        out.contains("[alice] Nothing here is waiting for your yes or no"),
        "{out}"
    );
    assert_eq!(jenkins.seen(), vec![Seen::abort("alice", "deploy")]);
}

#[tokio::test]
async fn a_typed_no_or_an_expired_question_runs_nothing() {
    let jenkins = FakeJenkins::start().await;
    let deputy = Deputy::new(&jenkins.url, "");
    let run = deputy
        .shell(
            &["--user", "alice"],
            &[&setkey(ALICE_KEY), "jenkins abort deploy", "no", "yes"],
        )
        .await
        .ok();
    let out = run.stdout();
    assert!(
        out.contains("Cancelled: `jenkins abort` was not run."),
        "{out}"
    );
    assert!(
        out.contains("Nothing here is waiting for your yes or no"),
        "{out}"
    );
    assert!(jenkins.seen().is_empty(), "{:?}", jenkins.seen());

    // A confirmation that lives 0 s has expired by the time the yes comes: no clock to wait for.
    deputy.bot("confirm_ttl_secs = 0");
    let run = deputy
        .shell(&["--user", "alice"], &["jenkins abort deploy", "yes"])
        .await
        .ok();
    let out = run.stdout();
    assert!(out.contains("within 0 s"), "{out}");
    assert!(
        out.contains("That button or form has expired or was already used"),
        "{out}"
    );
    assert!(jenkins.seen().is_empty(), "{:?}", jenkins.seen());
}

#[tokio::test]
async fn help_says_which_commands_ask_first_and_bare_setkey_in_the_shell_asks_for_the_key() {
    let jenkins = FakeJenkins::start().await;
    let deputy = Deputy::new(&jenkins.url, "");
    let run = deputy
        .shell(&["--user", "alice"], &["jenkins help", "jenkins setkey"])
        .await
        .ok();
    let out = run.stdout();
    assert!(
        out.contains("`jenkins abort <job>` — Abort the running (last) build of <job> (asks you to confirm first)"),
        "{out}"
    );
    assert!(out.contains("Send the key after the command"), "{out}");
    assert!(!out.contains("Link your account"), "{out}");
}

#[tokio::test]
async fn a_proxy_named_in_the_environment_carries_pack_calls() {
    // Pack calls normally go straight to the service. With `HTTP_PROXY` set they go through
    // the proxy: the fake Jenkins plays the proxy (it routes on the path of the absolute-form
    // request line), and the pack's base URL is a closed port no request could reach itself.
    let jenkins = FakeJenkins::start().await;
    let mut deputy = Deputy::new("http://127.0.0.1:9", "[http]\nretries = 0");
    let direct = deputy
        .shell(
            &["--user", "alice"],
            &[&setkey(ALICE_KEY), "jenkins whoami"],
        )
        .await
        .ok();
    assert!(
        direct
            .stdout()
            .contains("I couldn't reach jenkins (connection failed)"),
        "{}",
        direct.stdout()
    );
    assert!(jenkins.seen().is_empty());
    deputy.env.push(("HTTP_PROXY".into(), jenkins.url.clone()));
    let proxied = deputy
        .shell(&["--user", "alice"], &["jenkins whoami"])
        .await
        .ok();
    assert!(
        proxied
            .stdout()
            .contains("You are alice (full name) on Jenkins."),
        "{}",
        proxied.stdout()
    );
    let seen = jenkins.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].user.as_deref(), Some("alice"));
    assert_eq!(seen[0].path, "/me/api/json");
}

#[tokio::test]
async fn a_file_or_a_pipe_on_stdin_reads_alike_and_the_pipe_is_left_as_it_was() {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    use std::io::Write;
    use std::os::fd::AsRawFd;
    use std::process::Stdio;
    let jenkins = FakeJenkins::start().await;
    let deputy = Deputy::new(&jenkins.url, "");
    let input = "@deputy jenkins help\n@deputy jenkins bild x\n";
    let args = ["shell", "--user", "alice", "--public"];
    // A file cannot be polled: the shell reads it the blocking way.
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(input.as_bytes()).unwrap();
    let from_file = deputy
        .command(&args)
        .stdin(std::fs::File::open(file.path()).unwrap())
        .output()
        .unwrap();
    // A pipe is read through the runtime's poller, which needs it non-blocking. This test
    // keeps a handle on the same pipe, as a parent shell might, and finds it as it was.
    let (reader, mut writer) = std::io::pipe().unwrap();
    let ours = reader.try_clone().unwrap();
    let child = deputy
        .command(&args)
        .stdin(reader)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writer.write_all(input.as_bytes()).unwrap();
    drop(writer);
    let from_pipe = child.wait_with_output().unwrap();
    let (file_out, pipe_out) = (
        String::from_utf8_lossy(&from_file.stdout),
        String::from_utf8_lossy(&from_pipe.stdout),
    );
    assert!(
        pipe_out.contains("Did you mean `jenkins build`?"),
        "{pipe_out}"
    );
    assert!(pipe_out.contains("— Start a build"), "{pipe_out}");
    assert_eq!(file_out, pipe_out);
    let flags = OFlag::from_bits_truncate(fcntl(ours.as_raw_fd(), FcntlArg::F_GETFL).unwrap());
    assert!(
        !flags.contains(OFlag::O_NONBLOCK),
        "deputy left its stdin pipe non-blocking"
    );
}
