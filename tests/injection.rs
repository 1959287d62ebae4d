//! Arguments are data: whatever a user types into a pack argument arrives at the upstream as
//! that argument, in its place, and never becomes another path segment, a header, or template
//! code. The fake Jenkins records the decoded job name and raw query it received.

mod support;

use std::sync::Arc;

use deputy::brain::seal::Sealer;
use deputy::chat::{Adapter, Deleted, Message, Reply};
use deputy::config::Config;
use secrecy::SecretString;
use support::*;

struct Quiet;

#[async_trait::async_trait]
impl Adapter for Quiet {
    async fn send(&self, _: &Message, _: Reply) -> anyhow::Result<()> {
        Ok(())
    }
    async fn delete(&self, _: &Message) -> Deleted {
        Deleted::Unsupported
    }
}

fn dm(text: &str) -> Message {
    Message {
        adapter: "test".into(),
        workspace: "w".into(),
        user: "alice".into(),
        user_name: "alice".into(),
        channel: "dm".into(),
        id: "1".into(),
        thread: None,
        direct: true,
        text: text.into(),
    }
}

#[tokio::test]
async fn hostile_arguments_arrive_as_the_argument_and_nothing_else() {
    let jenkins = FakeJenkins::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.bot.packs = concat!(env!("CARGO_MANIFEST_DIR"), "/commands").into();
    config.brain.path = dir.path().join("brain");
    config.services.insert(
        "jenkins".into(),
        toml::from_str(&format!("base_url = \"{}\"", jenkins.url)).unwrap(),
    );
    let (packs, templates) = deputy::app::load_packs(&config).unwrap();
    let secret = SecretString::from(SECRET_A.to_string());
    let brain = deputy::app::open_brain(&config, Sealer::new(&secret, &[]).unwrap()).unwrap();
    let d: Arc<deputy::dispatch::Dispatcher> =
        deputy::app::dispatcher(&config, packs, templates, brain, &[]).unwrap();
    let r = d
        .handle(&dm(&format!("jenkins setkey {ALICE_KEY}")), &Quiet)
        .await;
    assert!(r[0].text.starts_with("Stored"), "{}", r[0].text);

    // A whole segment of `.` or `..` would be resolved by the URL parser (`/job/../x` is
    // `/x`): refused, with nothing sent.
    for shape in ["..", "."] {
        let replies = d
            .handle(&dm(&format!("jenkins last \"{shape}\"")), &Quiet)
            .await;
        assert!(
            replies[0].text.contains("cannot be a name here"),
            "{shape:?}: {}",
            replies[0].text
        );
        assert!(jenkins.seen().is_empty(), "{shape:?} reached the upstream");
    }
    let shapes = [
        "../../../me",
        "...",
        "%2e%2e",
        "%2e%2e%2fapi",
        "a/b",
        "a?tree=x",
        "a#frag",
        "{{ 7*7 }}",
        "{% if true %}x{% endif %}",
        "a\r\nX-Evil: 1",
        "café ünïcode",
    ];
    for (i, shape) in shapes.iter().enumerate() {
        let quoted = shape.replace('"', "\\\"");
        let replies = d
            .handle(&dm(&format!("jenkins last \"{quoted}\"")), &Quiet)
            .await;
        let seen = jenkins.seen();
        let last = seen
            .last()
            .unwrap_or_else(|| panic!("{shape:?} sent nothing: {replies:?}"));
        assert_eq!(
            seen.len(),
            i + 1,
            "{shape:?}: exactly one call; replied {replies:?}"
        );
        assert_eq!(
            last.path,
            format!("/job/{shape}/lastBuild/api/json"),
            "{shape:?} stayed one path segment, byte for byte"
        );
        assert_eq!(last.method, "GET");
        assert_eq!(
            last.user.as_deref(),
            Some("alice"),
            "the user's own credential only"
        );
        // The reply renders the upstream's answer; the argument is never evaluated.
        assert!(
            !replies[0].text.contains("49"),
            "{shape:?}: {}",
            replies[0].text
        );
    }

    // Query parameters: encoded into the query, never a header or a second parameter.
    let before = jenkins.seen().len();
    d.handle(
        &dm("jenkins build deploy \"env=prod&token=stolen\" \"x=1\r\nX-Evil: 1\""),
        &Quiet,
    )
    .await;
    let seen = jenkins.seen();
    assert_eq!(seen.len(), before + 1);
    let q = &seen.last().unwrap().query;
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(q).unwrap();
    assert_eq!(
        pairs,
        [
            ("env".to_string(), "prod&token=stolen".to_string()),
            ("x".to_string(), "1\r\nX-Evil: 1".to_string())
        ],
        "raw query {q:?}"
    );
}
