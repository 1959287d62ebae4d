//! The web chat page in a real browser: headless Chromium (Debian's `chromium`, installed by
//! `.ci/run`) driven through chromedriver with fantoccini. The page loads with a token in its
//! fragment, connects, and a user types `help` and sees the reply; a key is linked and a reply
//! with a link renders as a link that opens in a new tab; markup in a reply stays text. A
//! screenshot is saved under target/test-artifacts/.
//!
//! Without chromium the test fails, naming the packages; set DEPUTY_SKIP_BROWSER_TESTS=1 to
//! skip it on a machine that cannot have them.

mod support;
mod web_support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use fantoccini::{ClientBuilder, Locator};
use support::*;
use tokio::io::AsyncBufReadExt;
use web_support::*;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

fn artifacts() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let dir = target.join("test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// chromedriver on a free port; returns once it says it is ready.
async fn chromedriver() -> (tokio::process::Child, String) {
    let port = free_port();
    let mut child = tokio::process::Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("chromedriver must be installed (.ci/run installs chromium-driver)");
    let mut out = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    loop {
        let line = tokio::time::timeout(Duration::from_secs(30), out.next_line())
            .await
            .expect("chromedriver ready within 30 s")
            .unwrap()
            .expect("chromedriver exited before it was ready");
        if line.contains("started successfully") {
            break;
        }
    }
    tokio::spawn(async move { while let Ok(Some(_)) = out.next_line().await {} });
    (child, format!("http://127.0.0.1:{port}"))
}

#[tokio::test]
async fn the_page_talks_to_deputy_in_headless_chromium() {
    if !Path::new(CHROMIUM).exists() || !Path::new(CHROMEDRIVER).exists() {
        if std::env::var("DEPUTY_SKIP_BROWSER_TESTS").is_ok_and(|v| v == "1") {
            eprintln!("skipped: no chromium, and DEPUTY_SKIP_BROWSER_TESTS=1");
            return;
        }
        panic!(
            "{CHROMIUM} and {CHROMEDRIVER} are needed: apt-get install chromium chromium-driver \
             (.ci/run does), or set DEPUTY_SKIP_BROWSER_TESTS=1 to skip this test locally"
        );
    }
    let jenkins = FakeJenkins::start().await;
    let (deputy, port) = WebDeputy::config(&jenkins.url, "", HS256);
    let d = WebDeputy::start(&deputy, port).await;
    let (_driver, driver_url) = chromedriver().await;
    let profile = tempfile::tempdir().unwrap();
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": CHROMIUM,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--window-size=900,700",
                format!("--user-data-dir={}", profile.path().display()),
            ],
        }),
    );
    let browser = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver_url)
        .await
        .expect("a Chromium session through chromedriver");
    let result = drive(&browser, &d, &jenkins).await;
    // The screenshot is taken whether or not the page behaved, to see why.
    if let Ok(png) = browser.screenshot().await {
        std::fs::write(artifacts().join("web-chat.png"), png).unwrap();
    }
    browser.close().await.unwrap();
    if let Err(e) = result {
        panic!("{e}\ndeputy's log:\n{}", d.log());
    }
}

async fn drive(
    browser: &fantoccini::Client,
    d: &WebDeputy,
    jenkins: &FakeJenkins,
) -> Result<(), String> {
    let fail = |what: &str, e: &dyn std::fmt::Display| format!("{what}: {e}");
    let token = hs256(&claims("alice", 600));
    browser
        .goto(&format!("{}/chat#token={token}", d.url))
        .await
        .map_err(|e| fail("load /chat", &e))?;
    let wait = |xpath: String| async move {
        browser
            .wait()
            .at_most(Duration::from_secs(20))
            .for_element(Locator::XPath(&xpath))
            .await
            .map_err(|e| format!("waiting for {xpath}: {e}"))
    };
    wait("//span[@id='status'][starts-with(., 'connected as alice')]".into()).await?;
    // The token left the address bar.
    let url = browser.current_url().await.map_err(|e| fail("url", &e))?;
    if url.as_str().contains("token=") {
        return Err(format!("the token is still in the address: {url}"));
    }

    let input = browser
        .find(Locator::Id("text"))
        .await
        .map_err(|e| fail("input", &e))?;
    input
        .send_keys("help\u{E007}")
        .await
        .map_err(|e| fail("type help", &e))?;
    let reply = wait("//li[contains(@class,'bot')][1]".into()).await?;
    let text = reply.text().await.map_err(|e| fail("reply text", &e))?;
    if !(text.contains("jenkins") && text.lines().count() > 2) {
        return Err(format!("the help reply is not shown whole: {text:?}"));
    }

    // A key, then a command whose reply carries a link.
    input
        .send_keys(&format!("jenkins setkey {ALICE_KEY}\u{E007}"))
        .await
        .map_err(|e| fail("type setkey", &e))?;
    wait("//li[contains(@class,'bot')][starts-with(., 'Stored your jenkins key')]".into()).await?;
    let mine = browser
        .find_all(Locator::Css("li.me"))
        .await
        .map_err(|e| fail("own messages", &e))?;
    for m in mine {
        let t = m.text().await.map_err(|e| fail("own text", &e))?;
        if t.contains("alicetoken") {
            return Err(format!("the key is shown in the transcript: {t:?}"));
        }
    }
    input
        .send_keys("jenkins last deploy\u{E007}")
        .await
        .map_err(|e| fail("type last", &e))?;
    let link =
        wait("//li[contains(@class,'bot')]/a[@href='http://jenkins.test/job/deploy/42/']".into())
            .await?;
    let target = link.attr("target").await.map_err(|e| fail("target", &e))?;
    let rel = link.attr("rel").await.map_err(|e| fail("rel", &e))?;
    if target.as_deref() != Some("_blank") || !rel.unwrap_or_default().contains("noopener") {
        return Err("links must open in a new tab without an opener".into());
    }
    if jenkins
        .seen()
        .last()
        .and_then(|s| s.user.clone())
        .as_deref()
        != Some("alice")
    {
        return Err(format!("Jenkins did not see alice: {:?}", jenkins.seen()));
    }

    // Markup in a reply (an echoed unknown word) is text, never HTML.
    input
        .send_keys("<b>bold</b>\u{E007}")
        .await
        .map_err(|e| fail("type markup", &e))?;
    wait("//li[contains(@class,'bot')][contains(., \"I don't know\")]".into()).await?;
    let injected = browser
        .find_all(Locator::Css("#log b"))
        .await
        .map_err(|e| fail("find b", &e))?;
    if !injected.is_empty() {
        return Err("a reply's markup became HTML".into());
    }
    Ok(())
}
