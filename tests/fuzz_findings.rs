//! One regression test per finding of the fuzzers (`fuzz/`, see the README's "Fuzzing"), each
//! named for what it guards and asserting the behaviour a user should see, not only that
//! nothing panicked. The inputs themselves also stay in the corpora `tests/fuzz_corpus.rs`
//! replays.

use std::path::Path;

use deputy::auth::conversation::Conversation;
use deputy::auth::oauth2::{read_device_flow, read_token_response};
use deputy::auth::Credential;
use deputy::chat::Message;
use deputy::pack::{AuthKind, Pack, Templates};

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

/// Found by reading `credential()` while writing the `oauth2_token` target: a token answer
/// with an `expires_in` near `u64::MAX` overflowed the expiry (a panic in a debug build; in a
/// release build it wrapped to the past, and every command refreshed the token first).
#[test]
fn a_token_that_never_expires_is_stored_as_far_future() {
    let d = deputy::fuzzing::dispatcher();
    let answer = answer(
        200,
        serde_json::json!({ "access_token": "tok", "token_type": "bearer", "expires_in": u64::MAX }),
    );
    let credential = read_token_response(&d.auth, github(), answer).unwrap();
    let Credential::OAuth2 { expires_at, .. } = credential else {
        panic!("an oauth2 credential");
    };
    assert!(expires_at.unwrap() > now() + 100 * 365 * 24 * 3600);
}

/// Found by `pack_load` (90 s, input in fuzz/corpus/pack_load/finding-control-char-in-comment):
/// a control character in a pack's comment makes toml fail with an empty message, so `deputy
/// check` printed `commands/x.toml:1: ` and no reason. The operator's config read the same way.
#[test]
fn a_control_character_in_a_pack_or_config_is_refused_with_a_reason() {
    let text = "# X \u{4} API v2\n[service]\nname = \"x\"\n";
    let e = deputy::pack::load_one(Path::new("commands/x.toml"), text, &mut Templates::new())
        .unwrap_err();
    assert_eq!(e.line, 1);
    assert!(e.to_string().contains("not allowed here"), "{e}");
    let e = deputy::config::Config::parse("# \u{4}\n", Path::new("deputy.toml")).unwrap_err();
    assert!(e.to_string().contains("not allowed here"), "{e}");
}
