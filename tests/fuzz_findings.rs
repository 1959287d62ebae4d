//! One regression test per finding of the fuzzers (`fuzz/`, see the README's "Fuzzing"), each
//! named for what it guards and asserting the behaviour a user should see, not only that
//! nothing panicked. The inputs themselves also stay in the corpora `tests/fuzz_corpus.rs`
//! replays.

use deputy::auth::conversation::Conversation;
use deputy::auth::oauth2::{read_device_flow, read_token_response};
use deputy::auth::Credential;
use deputy::chat::Message;
use deputy::pack::{AuthKind, Pack};

fn github() -> &'static Pack {
    deputy::fuzzing::dispatcher()
        .packs
        .iter()
        .find(|p| matches!(p.service.auth, AuthKind::OAuth2(_)))
        .expect("a shipped oauth2 pack")
}

fn answer(status: u16, body: serde_json::Value) -> oauth2::HttpResponse {
    oauth2::http::Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(body.to_string().into_bytes())
        .unwrap()
}

fn alice() -> Conversation {
    Conversation::of(&Message {
        adapter: "test".into(),
        workspace: "w".into(),
        user: "alice".into(),
        user_name: "alice".into(),
        channel: "dm".into(),
        id: "1".into(),
        thread: None,
        direct: true,
        text: String::new(),
    })
}

fn now() -> u64 {
    deputy::auth::now_secs()
}

/// Found by reading `oauth2`'s poll loop while writing the `oauth2_token` target: it adds 5 s
/// to the interval on `slow_down`, so a device authorization with an enormous `interval`
/// overflowed (a panic in the background poll: the user never heard back), and an enormous
/// `expires_in` overflowed the flow's expiry. Both are capped before use.
#[test]
fn a_device_flow_with_absurd_interval_and_lifetime_still_links() {
    let d = deputy::fuzzing::dispatcher();
    let answers = vec![
        answer(
            200,
            serde_json::json!({
                "device_code": "dc", "user_code": "WDJB-MJHT",
                "verification_uri": "https://github.com/login/device",
                "expires_in": u64::MAX, "interval": u64::MAX,
            }),
        ),
        answer(400, serde_json::json!({ "error": "slow_down" })),
        answer(
            200,
            serde_json::json!({ "access_token": "tok", "token_type": "bearer" }),
        ),
    ];
    let (text, credential) = read_device_flow(&d.auth, github(), &alice(), answers).unwrap();
    assert!(text.contains("the code works for 1440 minute(s)"), "{text}");
    assert!(matches!(credential, Credential::OAuth2 { .. }));
}
