//! Packs built into the binary: an installed deputy works from any folder, a packs folder
//! adds to and replaces them, and `deputy packs new` writes a skeleton `check` accepts.

mod support;

use std::process::Command;

use support::*;

/// deputy in `dir` with no config file and no packs folder of its own.
fn bare(dir: &std::path::Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_deputy"));
    c.args(args)
        .current_dir(dir)
        .env_remove("DEPUTY_SECRET")
        .env_remove("DEPUTY_SECRET_PREVIOUS")
        .env("RUST_LOG", "info");
    c
}

fn run(mut c: Command, input: &str) -> Run {
    use std::io::Write;
    let mut child = c
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    Run(child.wait_with_output().unwrap())
}

#[test]
fn the_shipped_packs_work_from_any_folder() {
    let dir = tempfile::tempdir().unwrap();
    let listed = run(bare(dir.path(), &["packs"]), "").ok().stdout();
    for name in ["github", "gitlab", "jenkins", "twitter"] {
        let line = listed
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} missing: {listed}"));
        assert!(line.ends_with("built in"), "{line}");
    }
    let out = run(
        bare(dir.path(), &["shell", "--sandbox", "--user", "alice"]),
        "jenkins setkey alice:sandbox-token\njenkins last deploy\n",
    )
    .ok()
    .stdout();
    assert!(out.contains("Stored your jenkins key"), "{out}");
    assert!(out.contains("deploy #"), "{out}");
}

#[test]
fn a_packs_folder_adds_packs_and_replaces_a_built_in_one_saying_so() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("commands")).unwrap();
    let jenkins = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/commands/jenkins.toml"
    ))
    .unwrap()
    .replace(
        "Build and inspect Jenkins jobs as yourself",
        "Our own Jenkins",
    );
    std::fs::write(dir.path().join("commands/jenkins.toml"), jenkins).unwrap();
    let listed = run(bare(dir.path(), &["packs"]), "").ok();
    let line = listed
        .stdout()
        .lines()
        .find(|l| l.starts_with("jenkins"))
        .unwrap()
        .to_string();
    assert!(line.ends_with("commands/jenkins.toml"), "{line}");
    assert!(
        listed
            .stderr()
            .contains("the packs folder replaces a built-in pack"),
        "{}",
        listed.stderr()
    );
    let secret = run(bare(dir.path(), &["keygen"]), "").ok().stdout();
    let mut shell = bare(dir.path(), &["shell"]);
    shell.env("DEPUTY_SECRET", secret.trim());
    let help = run(shell, "help\n").ok().stdout();
    assert!(help.contains("Our own Jenkins"), "{help}");
    assert!(help.contains("twitter"), "the other built-ins stay: {help}");
}

#[test]
fn packs_new_writes_a_skeleton_that_check_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let wrote = run(bare(dir.path(), &["packs", "new", "weather"]), "")
        .ok()
        .stdout();
    assert!(
        wrote.starts_with("wrote ./commands/weather.toml"),
        "{wrote}"
    );
    let secret = run(bare(dir.path(), &["keygen"]), "").ok().stdout();
    let mut check = bare(dir.path(), &["check"]);
    check.env("DEPUTY_SECRET", secret.trim());
    let checked = run(check, "").ok().stdout();
    assert!(
        checked.contains("service weather (weather) from ./commands/weather.toml"),
        "{checked}"
    );
    let again = run(bare(dir.path(), &["packs", "new", "weather"]), "");
    assert_eq!(again.code(), Some(2));
    assert!(again
        .stderr()
        .contains("exists already; nothing was written"));
    let bad = run(bare(dir.path(), &["packs", "new", "../evil"]), "");
    assert_eq!(bad.code(), Some(2));
    assert!(
        bad.stderr().contains("is not a pack name"),
        "{}",
        bad.stderr()
    );
    assert!(!dir.path().join("evil.toml").exists());
}

#[test]
fn version_completions_help_and_the_environment_check_reads() {
    let dir = tempfile::tempdir().unwrap();
    let version = run(bare(dir.path(), &["--version"]), "").ok().stdout();
    let rev = String::from_utf8(
        Command::new("git")
            .args(["rev-parse", "--short=12", "HEAD"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert_eq!(
        version.trim(),
        format!("deputy {} ({})", env!("CARGO_PKG_VERSION"), rev.trim())
    );
    for shell in ["bash", "zsh", "fish"] {
        let script = run(bare(dir.path(), &["completions", shell]), "")
            .ok()
            .stdout();
        assert!(script.contains("deputy"), "{shell}");
        assert!(
            script.contains("reseal"),
            "{shell}: subcommands are completed"
        );
    }
    let help = run(bare(dir.path(), &["--help"]), "").ok().stdout();
    for var in [
        "DEPUTY_SECRET",
        "DEPUTY_SECRET_PREVIOUS",
        "DEPUTY_REDIS_PASSWORD",
        "DISCORD_TOKEN",
        "SLACK_APP_TOKEN",
        "SLACK_BOT_TOKEN",
        "DEPUTY_<SERVICE>_CONSUMER_SECRET",
        "DEPUTY_<SERVICE>_CLIENT_SECRET",
        "RUST_LOG",
    ] {
        assert!(help.contains(var), "--help names {var}");
    }
    let mut check = bare(dir.path(), &["check"]);
    check.env("DEPUTY_SECRET", SECRET_A);
    check.env("DEPUTY_TWITTER_CONSUMER_SECRET", "s3cr3t-consumer-value");
    // A proxy URL may carry a password: the name is shown, never the value.
    check.env("HTTPS_PROXY", "http://ops:pr0xy-pass@127.0.0.1:3128");
    let checked = run(check, "").ok().stdout();
    let line = checked
        .lines()
        .find(|l| l.starts_with("environment read: "))
        .unwrap_or_else(|| panic!("{checked}"));
    assert!(line.contains("DEPUTY_SECRET (set)"), "{line}");
    assert!(
        line.contains("DEPUTY_TWITTER_CONSUMER_SECRET (set)"),
        "{line}"
    );
    assert!(line.contains("DEPUTY_GITHUB_CLIENT_ID (not set)"), "{line}");
    assert!(line.contains("HTTPS_PROXY (set)"), "{line}");
    assert!(!checked.contains(SECRET_A) && !checked.contains("s3cr3t-consumer-value"));
    assert!(!checked.contains("pr0xy-pass"), "{checked}");
}

/// The sandbox's greeting to the person at the terminal, not a log line.
fn sandbox_banner(line: &str) -> bool {
    line.starts_with("deputy sandbox:") || line.starts_with("  ")
}

#[test]
fn json_logs_are_one_object_per_line_with_a_stable_audit_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut shell = bare(
        dir.path(),
        &[
            "--log-format",
            "json",
            "shell",
            "--sandbox",
            "--user",
            "alice",
        ],
    );
    shell.env("DEPUTY_SECRET", SECRET_A);
    let out = run(
        shell,
        "jenkins setkey alice:sandbox-token\njenkins last deploy\n",
    )
    .ok();
    let lines: Vec<serde_json::Value> = out
        .stderr()
        .lines()
        .filter(|l| !sandbox_banner(l))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let audit: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["target"] == "deputy::audit")
        .collect();
    assert_eq!(audit.len(), 1, "{lines:?}");
    let a = audit[0].as_object().unwrap();
    let mut keys: Vec<&str> = a.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "adapter",
            "command",
            "level",
            "message",
            "ms",
            "service",
            "status",
            "target",
            "timestamp",
            "user",
            "workspace"
        ]
    );
    assert_eq!(a["user"], "alice");
    assert_eq!(a["service"], "jenkins");
    assert_eq!(a["command"], "last");
    assert_eq!(a["status"], "200");
    // (The sandbox's greeting suggests its fake token on purpose; no log line holds it.)
    assert!(
        lines
            .iter()
            .all(|l| !l.to_string().contains("sandbox-token")),
        "no secret in the logs"
    );
    // DEPUTY_LOG_FORMAT does the same.
    let mut shell = bare(dir.path(), &["shell", "--sandbox"]);
    shell
        .env("DEPUTY_SECRET", SECRET_A)
        .env("DEPUTY_LOG_FORMAT", "json");
    let out = run(shell, "help\n").ok();
    for l in out.stderr().lines().filter(|l| !sandbox_banner(l)) {
        serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| panic!("{e}: {l}"));
    }
}

#[tokio::test]
async fn metrics_are_scraped_in_the_prometheus_format_with_no_user_in_a_label() {
    let jenkins = FakeJenkins::start().await;
    let port = free_port();
    let deputy = Deputy::new(
        &jenkins.url,
        &format!("[web]\nlisten = \"127.0.0.1:{port}\""),
    );
    let mut live = Live::start(&deputy, &["shell", "--user", "alice"]);
    assert!(live
        .ask(&format!("jenkins setkey {ALICE_KEY}"))
        .await
        .starts_with("Stored"));
    assert!(live.ask("jenkins whoami").await.contains("on Jenkins"));
    assert!(live.ask("jenkins last deploy").await.contains("deploy #42"));
    live.ask("jenkins last missing").await;
    let body = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    live.finish().await;
    let scrape = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string())))
        .unwrap_or_else(|e| panic!("not the Prometheus text format ({e}):\n{body}"));
    let value = |name: &str, labels: &[(&str, &str)]| -> f64 {
        scrape
            .samples
            .iter()
            .filter(|s| s.metric == name)
            .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => 0.0,
            })
            .sum()
    };
    assert_eq!(
        value("deputy_messages_total", &[("adapter", "shell")]),
        4.0,
        "{body}"
    );
    assert_eq!(
        value(
            "deputy_commands_total",
            &[("service", "jenkins"), ("outcome", "ok")]
        ),
        2.0,
        "{body}"
    );
    assert_eq!(
        value(
            "deputy_commands_total",
            &[("service", "jenkins"), ("outcome", "not_found")]
        ),
        1.0,
        "{body}"
    );
    assert_eq!(
        value("deputy_signins_completed_total", &[("kind", "api_key")]),
        1.0
    );
    assert_eq!(value("deputy_linked_users", &[("service", "jenkins")]), 1.0);
    assert!(
        scrape
            .samples
            .iter()
            .any(|s| s.metric == "deputy_upstream_seconds_count"
                || s.metric == "deputy_upstream_seconds"),
        "a latency histogram: {body}"
    );
    for s in &scrape.samples {
        for (k, v) in s.labels.iter() {
            assert!(
                !v.contains("alice") && !v.contains("token"),
                "label {k}={v} on {} names a user or a secret",
                s.metric
            );
        }
    }
    assert!(!body.contains(ALICE_KEY.split(':').nth(1).unwrap()));
}

/// The systemd unit in contrib/ passes `systemd-analyze verify` (when the tool is installed,
/// as on Debian with systemd), pointed at the binary under test.
#[test]
fn the_systemd_unit_verifies() {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/contrib/deputy.service"
    ))
    .unwrap();
    for hardening in [
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "StateDirectory=deputy",
    ] {
        assert!(unit.contains(hardening), "{hardening}");
    }
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("systemd-analyze is not installed: the unit's syntax was not verified");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("deputy.service");
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/deputy", env!("CARGO_BIN_EXE_deputy")),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && !said.contains("deputy.service"),
        "{said}"
    );
}
