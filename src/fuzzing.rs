//! Entry points of the fuzz targets: each target in `fuzz/` (cargo-fuzz, nightly) is one line
//! calling a function here, and `tests/fuzz_corpus.rs` feeds the committed corpora
//! (`fuzz/corpus/<target>/`) through the same functions on stable, so CI exercises exactly
//! what was fuzzed. A function returns on any input deputy handles correctly (a clear refusal
//! included), saying whether the input got through to the part under test (so the corpus test
//! can tell a corpus that reaches nothing), and panics on a finding: a panic in deputy, or a
//! broken promise checked here (a request leaving its service, a pack blamed for what a user
//! typed).
//!
//! Nothing here reaches the network: every service points at a closed loopback port, and the
//! OAuth providers' answers come from the input.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use secrecy::SecretString;

use crate::auth::conversation::Conversation;
use crate::brain::memory::MemoryStore;
use crate::brain::seal::Sealer;
use crate::brain::Brain;
use crate::chat::{Adapter, Deleted, Message, Reply};
use crate::config::Config;
use crate::dispatch::{parse, Dispatcher};
use crate::pack::{self, Pack, Templates};
use crate::upstream::ResponseKind;

/// The brain key of the fuzzing runs (a test secret, never a real one).
const SECRET: &str = "aGVsbG8gdGhpcyBpcyBhIHRlc3Qgc2VjcmV0IGtleSAxMjM0NTY3OA==";
/// The key rotated out, for envelopes sealed with a previous key.
const PREVIOUS_SECRET: &str = "cHJldmlvdXMgdGVzdCBzZWNyZXQga2V5IGZvciBmdXp6aW5nIDEyMzQ1Ng==";
/// Where every service points: a closed port, so a call fails at once with "could not connect".
const NOWHERE: &str = "http://127.0.0.1:1";
/// The admin of the dispatch target (a line starting with `#` comes from them).
const ADMIN: (&str, &str) = ("fuzz:w:root", "root");
/// At most this many messages per dispatch input, so one input stays quick.
const MAX_MESSAGES: usize = 8;
/// Deputy's ids on the chat platforms, as the adapters learn them at start.
pub const SLACK_BOT_USER: &str = "U0BOT";
pub const DISCORD_BOT_ID: u64 = 4242;

fn sealer() -> Sealer {
    Sealer::new(
        &SecretString::from(SECRET.to_string()),
        &[SecretString::from(PREVIOUS_SECRET.to_string())],
    )
    .expect("the fuzzing secrets are valid")
}

/// The shipped packs, every service moved to [`NOWHERE`] and given client credentials (so
/// sign-ins get as far as calling the provider), and the dispatcher around them.
fn base() -> &'static Base {
    static BASE: OnceLock<Base> = OnceLock::new();
    BASE.get_or_init(|| {
        let mut templates = Templates::new();
        let mut packs: Vec<Pack> = pack::builtin::PACKS
            .iter()
            .map(|(file, text)| {
                pack::load_one(&pack::builtin::path(file), text, &mut templates)
                    .expect("the shipped packs load")
            })
            .collect();
        let nowhere = reqwest::Url::parse(NOWHERE).expect("a URL");
        for p in &mut packs {
            p.service.base_url = nowhere.clone();
            p.service.auth_base_url = nowhere.clone();
            p.service.consumer = Some(pack::Consumer {
                key: "fuzz-client".into(),
                secret: crate::secret::Secret::new("fuzz-client-secret"),
            });
        }
        let mut config = Config::default();
        config.bot.aliases = vec!["!".into()];
        config.bot.admins = vec![ADMIN.0.into()];
        config.http.connect_timeout_secs = 1;
        config.http.timeout_secs = 1;
        let store = MemoryStore::new().expect("a memory brain");
        let brain = Brain::new(Arc::new(store), sealer());
        let dispatcher = crate::app::dispatcher(&config, packs, templates, brain, &[])
            .unwrap_or_else(|e| panic!("the fuzzing dispatcher: {e}"));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        Base {
            dispatcher,
            runtime,
        }
    })
}

/// The dispatcher the targets use (the shipped packs, every service at a closed loopback
/// port), for the regression tests of what the fuzzers found.
pub fn dispatcher() -> &'static Dispatcher {
    &base().dispatcher
}

struct Base {
    dispatcher: Arc<Dispatcher>,
    runtime: tokio::runtime::Runtime,
}

/// An adapter that sends nowhere and cannot delete.
struct Nowhere;

#[async_trait::async_trait]
impl Adapter for Nowhere {
    async fn send(&self, _: &Message, _: Reply) -> anyhow::Result<()> {
        Ok(())
    }
    async fn delete(&self, _: &Message) -> Deleted {
        Deleted::Unsupported
    }
}

fn message(user: &str, direct: bool, text: &str) -> Message {
    Message {
        adapter: "fuzz".into(),
        workspace: "w".into(),
        user: user.into(),
        user_name: user.into(),
        channel: if direct { "dm" } else { "general" }.into(),
        id: "m1".into(),
        thread: None,
        direct,
        text: text.into(),
    }
}

/// The message tokenizer and the dispatcher. The input is up to [`MAX_MESSAGES`] lines, each
/// a message from alice in a public channel; a line starting with `>` is a direct message,
/// one starting with `#` comes from an admin. Each input starts on an empty brain, so the
/// lines can link an account and then use it.
pub fn dispatch(data: &[u8]) -> bool {
    let text = String::from_utf8_lossy(data);
    let base = base();
    let d = base.dispatcher.with_brain(Brain::new(
        Arc::new(MemoryStore::new().expect("a memory brain")),
        sealer(),
    ));
    base.runtime.block_on(async {
        let mut answered = false;
        for line in text.split('\n').take(MAX_MESSAGES) {
            let (user, direct, body) = if let Some(rest) = line.strip_prefix('>') {
                ("alice", true, rest)
            } else if let Some(rest) = line.strip_prefix('#') {
                (ADMIN.1, false, rest)
            } else {
                ("alice", false, line)
            };
            let msg = message(user, direct, body);
            // The pure half first, as the runner asks it before handling.
            if let Some(command) = d.addressing.strip(&msg.text, msg.direct) {
                if let Ok(words) = parse::words(command) {
                    let _ = parse::normalize_builtin(&words);
                }
            }
            for reply in d.handle(&msg, &Nowhere).await {
                // An internal error on a message is a bug: the user gets an apology, not an answer.
                assert!(
                    !reply
                        .text
                        .starts_with("Sorry, something went wrong on my side"),
                    "internal error for {line:?}"
                );
                answered = true;
            }
        }
        answered
    })
}

/// The pack loader: the input as `commands/fuzz.toml`. A refusal must name a line of the file.
pub fn pack_load(data: &[u8]) -> bool {
    // The loader reads packs with `read_to_string`, which refuses what is not UTF-8.
    let Ok(text) = std::str::from_utf8(data) else {
        return false;
    };
    match pack::load_one(Path::new("commands/fuzz.toml"), text, &mut Templates::new()) {
        Ok(_) => true,
        Err(e) => {
            let lines = text.lines().count().max(1);
            assert!(
                e.line <= lines + 1,
                "error at line {} of a {lines}-line pack: {e}",
                e.line
            );
            assert!(!e.message.is_empty());
            false
        }
    }
}

/// The shipped packs' request templates with hostile arguments: the first byte picks a command
/// (or a service's `whoami`), the rest is what the user typed after it, split into words as the
/// dispatcher splits them. A request must stay on its service, carry no header an argument
/// added, and a refusal must blame the argument, not the pack.
pub fn render_args(data: &[u8]) -> bool {
    let Some((&pick, rest)) = data.split_first() else {
        return false;
    };
    let d = &base().dispatcher;
    let requests: Vec<(&Pack, Option<&pack::Command>)> = d
        .packs
        .iter()
        .flat_map(|p| {
            p.commands
                .iter()
                .map(move |c| (p, Some(c)))
                .chain(p.service.whoami.as_ref().map(move |_| (p, None)))
        })
        .collect();
    let (pack, command) = requests[usize::from(pick) % requests.len()];
    let Ok(words) = parse::words(&String::from_utf8_lossy(rest)) else {
        return false;
    };
    let (request, args) = match command {
        Some(c) => match c.bind(&words) {
            Ok(args) => (&c.request, args),
            Err(why) => {
                assert!(!why.is_empty());
                return false;
            }
        },
        None => (
            pack.service.whoami.as_ref().expect("picked for its whoami"),
            pack::Args::new(),
        ),
    };
    let msg = message("alice", false, "");
    let ctx = d.context(&msg, pack, &args, None);
    let built = match d.build_call(pack, request, &ctx) {
        Ok(call) => {
            let base = &pack.service.base_url;
            assert_eq!(call.url.origin(), base.origin(), "{}", call.url);
            assert!(call.url.username().is_empty() && call.url.password().is_none());
            for (name, value) in &call.headers {
                assert!(
                    !value.contains(['\r', '\n']),
                    "header {name} carries a line break"
                );
            }
            true
        }
        Err(reply) => {
            assert!(
                reply.text.starts_with("I can't use that argument")
                    || reply
                        .text
                        .starts_with("That argument would send the request outside"),
                "a refusal that does not blame the argument: {}",
                reply.text
            );
            false
        }
    };
    // The reply template sees the arguments too (here with an empty answer).
    let answered = crate::upstream::Response {
        status: 200,
        headers: Default::default(),
        body: serde_json::Value::Null,
    };
    let ctx = d.context(&msg, pack, &args, Some(&answered));
    let _ = d.templates.render(&request.reply, &ctx);
    built
}

/// OAuth 1.0a token endpoint answers (`oauth_token=…&oauth_token_secret=…`), read as the
/// upstream reads a form answer, then as the sign-in reads a request token and an access token.
pub fn oauth1_token(data: &[u8]) -> bool {
    let Ok(body) = crate::upstream::decode_body(ResponseKind::Form, data.to_vec()) else {
        return false;
    };
    let pair = crate::auth::oauth1::token_pair(&body);
    let credential = crate::auth::oauth1::access_credential(&body);
    assert_eq!(pair.is_some(), credential.is_some());
    credential.is_some()
}

/// OAuth 2.0 token endpoint answers, through the `oauth2` crate as deputy drives it. The first
/// byte picks the exchange (bit 0: a refresh, or the device flow) and the status (bits 1-2:
/// 200, 400, 401, 500) and content type (bit 3: `application/json`, or with a charset) of the
/// first answer; the rest is answers' bodies separated by a 0xFF byte (never in UTF-8 JSON).
/// In the device flow the first answer is the device authorization, the others polls
/// (status 400 unless they hold an access token).
pub fn oauth2_token(data: &[u8]) -> bool {
    let Some((&flags, rest)) = data.split_first() else {
        return false;
    };
    let d = &base().dispatcher;
    let Some(pack) = d
        .packs
        .iter()
        .find(|p| matches!(p.service.auth, pack::AuthKind::OAuth2(_)))
    else {
        return false;
    };
    let status = [200, 400, 401, 500][usize::from((flags >> 1) & 3)];
    let content_type = if flags & 8 == 0 {
        "application/json"
    } else {
        "application/json; charset=utf-8"
    };
    let answer = |status: u16, body: &[u8]| {
        oauth2::http::Response::builder()
            .status(status)
            .header("content-type", content_type)
            .body(body.to_vec())
            .expect("a response")
    };
    let mut bodies = rest.split(|&b| b == 0xff);
    let first = answer(status, bodies.next().unwrap_or_default());
    if flags & 1 == 0 {
        return crate::auth::oauth2::read_token_response(&d.auth, pack, first).is_ok();
    }
    let mut answers = vec![first];
    for body in bodies.take(MAX_MESSAGES) {
        let status = if body.windows(12).any(|w| w == b"access_token") {
            200
        } else {
            400
        };
        answers.push(answer(status, body));
    }
    let conversation = Conversation::of(&message("alice", true, ""));
    match crate::auth::oauth2::read_device_flow(&d.auth, pack, &conversation, answers) {
        Ok((text, _)) => {
            assert!(text.starts_with("To link your"), "{text}");
            true
        }
        Err(why) => {
            assert!(!why.is_empty());
            false
        }
    }
}

/// The sealed envelope parser. Bit 0 of the first byte: open the rest as an envelope found in
/// the brain (with the current and a previous key), or seal the rest and check it opens only
/// under its own key path; either way, what opens is read as a credential, as the brain does.
pub fn seal_open(data: &[u8]) -> bool {
    let Some((&mode, rest)) = data.split_first() else {
        return false;
    };
    let sealer = sealer();
    let path = b"cred/fuzz/w/alice/jenkins";
    let plain = if mode & 1 == 0 {
        let _ = sealer.is_stale(rest);
        match sealer.open(path, rest) {
            Ok(plain) => plain,
            Err(e) => {
                assert!(!e.to_string().is_empty());
                return false;
            }
        }
    } else {
        let envelope = sealer.seal(path, rest);
        assert!(!sealer.is_stale(&envelope));
        assert!(sealer.open(b"cred/fuzz/w/bob/jenkins", &envelope).is_err());
        let plain = sealer
            .open(path, &envelope)
            .expect("a fresh envelope opens");
        assert_eq!(&plain[..], rest);
        plain
    };
    let _ = serde_json::from_slice::<crate::auth::Credential>(&plain);
    true
}

/// Slack Socket Mode frames as slack-morphism reads them, then the `events_api` payload as the
/// adapter turns it into a message, then the addressing and words as the runner reads them.
/// (slack-morphism 2.31 keeps its frame type private: the frame is read as its `type` tag and
/// the payload as the `SlackPushEventCallback` the adapter's callback receives.)
pub fn slack_event(data: &[u8]) -> bool {
    use serde::Deserialize;
    use slack_morphism::prelude::SlackPushEventCallback;
    // Socket Mode frames are websocket text frames: UTF-8.
    let Ok(text) = std::str::from_utf8(data) else {
        return false;
    };
    let Ok(mut frame) = serde_json::from_str::<serde_json::Value>(text) else {
        return false;
    };
    if frame["type"] != "events_api" {
        return false;
    }
    let Ok(payload) = SlackPushEventCallback::deserialize(frame["payload"].take()) else {
        return false;
    };
    let Some(msg) = crate::chat::slack::message_of(payload, SLACK_BOT_USER, "deputy") else {
        return false;
    };
    assert_eq!(msg.adapter, crate::chat::slack::ADAPTER);
    addressed(&msg);
    true
}

/// Discord gateway frames as serenity reads them, then a MESSAGE_CREATE as the adapter turns
/// it into a message, then the addressing and words as the runner reads them.
pub fn discord_event(data: &[u8]) -> bool {
    use serenity::all::UserId;
    use serenity::model::event::{Event, GatewayEvent};
    let Ok(text) = std::str::from_utf8(data) else {
        return false;
    };
    let Ok(GatewayEvent::Dispatch(_, Event::MessageCreate(event))) = serde_json::from_str(text)
    else {
        return false;
    };
    let bot = Some(UserId::new(DISCORD_BOT_ID));
    let Some(msg) = crate::chat::discord::message_of(&event.message, bot, "deputy") else {
        assert!(event.message.author.bot);
        return false;
    };
    assert_eq!(msg.direct, event.message.guild_id.is_none());
    addressed(&msg);
    true
}

/// What the runner asks of a message before handling it.
fn addressed(msg: &Message) {
    let d = &base().dispatcher;
    if let Some(command) = d.addressing.strip(&msg.text, msg.direct) {
        if let Ok(words) = parse::words(command) {
            let _ = parse::normalize_builtin(&words);
        }
    }
}
