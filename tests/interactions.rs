//! In-process tests of the platform-neutral half of buttons and private forms: what the
//! dispatcher offers to an adapter that can show them, and how it checks what comes back
//! (the key form, Confirm / Cancel), whatever the platform.

mod support;

use std::sync::Arc;

use deputy::brain::seal::Sealer;
use deputy::brain::KeyPath;
use deputy::chat::{Adapter, ButtonStyle, Deleted, Interaction, Message, Reply, Surfaces};
use deputy::config::{Config, ServiceOverride};
use deputy::dispatch::Dispatcher;
use deputy::secret::Secret;
use secrecy::SecretString;
use support::{FakeJenkins, Seen, ALICE_KEY};

/// An adapter with buttons, that can open a form when `forms` says so.
struct Rich {
    forms: bool,
}

#[async_trait::async_trait]
impl Adapter for Rich {
    async fn send(&self, _: &Message, _: Reply) -> anyhow::Result<()> {
        Ok(())
    }
    async fn delete(&self, _: &Message) -> Deleted {
        Deleted::Unsupported
    }
    fn surfaces(&self, _: &Message) -> Surfaces {
        Surfaces {
            buttons: true,
            forms: self.forms,
        }
    }
}

fn dispatcher(dir: &std::path::Path, jenkins: &str, confirm_ttl: u64) -> Arc<Dispatcher> {
    let mut config = Config::default();
    config.bot.packs = concat!(env!("CARGO_MANIFEST_DIR"), "/commands").into();
    config.bot.confirm_ttl_secs = confirm_ttl;
    config.brain.path = dir.join("brain");
    config.services.insert(
        "jenkins".into(),
        ServiceOverride {
            base_url: Some(jenkins.into()),
            ..ServiceOverride::default()
        },
    );
    let (packs, templates) = deputy::app::load_packs(&config).unwrap();
    let secret = SecretString::from(support::SECRET_A.to_string());
    let brain = deputy::app::open_brain(&config, Sealer::new(&secret, &[]).unwrap()).unwrap();
    deputy::app::dispatcher(&config, packs, templates, brain, &[]).unwrap()
}

fn from(user: &str, text: &str) -> Message {
    Message {
        adapter: "test".into(),
        workspace: "w1".into(),
        user: user.into(),
        user_name: user.into(),
        channel: "general".into(),
        id: "m-1".into(),
        thread: None,
        direct: false,
        text: text.into(),
    }
}

fn form(id: &str, value: &str) -> Interaction {
    Interaction::Form {
        id: id.into(),
        value: Secret::new(value),
    }
}

fn click(id: &str) -> Interaction {
    Interaction::Button { id: id.into() }
}

async fn stored(d: &Dispatcher, user: &str) -> bool {
    let key = KeyPath::credential(&from(user, "").owner(), "jenkins");
    d.brain
        .get::<serde_json::Value>(&key)
        .await
        .unwrap()
        .is_some()
}

#[tokio::test]
async fn bare_setkey_in_a_channel_offers_a_private_button_whose_form_stores_the_key() {
    let jenkins = FakeJenkins::start().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dispatcher(dir.path(), &jenkins.url, 120);
    let buttons = Rich { forms: false };
    let alice = from("alice", "@deputy jenkins setkey");

    let r = d.handle(&alice, &buttons).await;
    assert_eq!(r.len(), 1);
    assert!(r[0].text.contains("Press the button"), "{}", r[0].text);
    assert_eq!(r[0].visibility, deputy::chat::Visibility::OnlyUser);
    assert_eq!(r[0].buttons.len(), 1);
    let link = &r[0].buttons[0];
    assert_eq!(link.label, "Link your account");
    assert_eq!(link.style, ButtonStyle::Primary);

    // The click arrives where a form can be opened: the reply is the form.
    let clicked = from("alice", "");
    let r = d
        .interact(&clicked, &click(&link.id), &Rich { forms: true })
        .await;
    let f = r[0].form.clone().expect("a form");
    assert_eq!(f.title, "Link jenkins");
    assert!(f.hint.contains("user:token"), "{}", f.hint);
    // Its text is what the adapter posts if the form does not open.
    assert!(
        r[0].text.contains("could not open the form"),
        "{}",
        r[0].text
    );
    assert!(!stored(&d, "alice").await);

    // The button was used up.
    let again = d
        .interact(&clicked, &click(&link.id), &Rich { forms: true })
        .await;
    assert!(again[0].text.contains("expired or was already used"));
    assert!(again[0].form.is_none());

    let r = d
        .interact(&clicked, &form(&f.id, &format!("{ALICE_KEY}\n")), &buttons)
        .await;
    assert!(
        r[0].text.starts_with("Stored your jenkins key"),
        "{}",
        r[0].text
    );
    assert_eq!(r[0].visibility, deputy::chat::Visibility::OnlyUser);
    assert!(!r[0].text.contains("alicetoken"));
    assert!(stored(&d, "alice").await);

    // The key from the form is the one the command sends.
    let r = d
        .handle(&from("alice", "@deputy j last deploy"), &buttons)
        .await;
    assert!(r[0].text.contains("deploy #42: SUCCESS"), "{}", r[0].text);
    assert_eq!(jenkins.seen()[0].user.as_deref(), Some("alice"));
}

#[tokio::test]
async fn a_form_used_twice_by_someone_else_or_unknown_stores_nothing() {
    let jenkins = FakeJenkins::start().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dispatcher(dir.path(), &jenkins.url, 120);
    let forms = Rich { forms: true };
    // A slash command (or a click) that can open the form at once gets it directly.
    let r = d
        .handle(&from("alice", "@deputy jenkins setkey"), &forms)
        .await;
    let f = r[0].form.clone().expect("a form");

    // Bob submits Alice's form: refused, nothing stored for either, Alice's form still works.
    let r = d
        .interact(&from("bob", ""), &form(&f.id, ALICE_KEY), &forms)
        .await;
    assert!(
        r[0].text.contains("offered to someone else"),
        "{}",
        r[0].text
    );
    assert!(!stored(&d, "bob").await && !stored(&d, "alice").await);

    // Another workspace's user with the same id is someone else too.
    let mut elsewhere = from("alice", "");
    elsewhere.workspace = "w2".into();
    let r = d
        .interact(&elsewhere, &form(&f.id, ALICE_KEY), &forms)
        .await;
    assert!(
        r[0].text.contains("offered to someone else"),
        "{}",
        r[0].text
    );

    // An id deputy never made, a form id sent as a click, a guessed token: unknown or gone.
    for (i, want) in [
        (
            form("view_123", ALICE_KEY),
            "I don't know that button or form",
        ),
        (click(&f.id), "I don't know that button or form"),
        (
            form(&format!("dp1.{}.key", "0".repeat(32)), ALICE_KEY),
            "expired or was already used",
        ),
    ] {
        let r = d.interact(&from("alice", ""), &i, &forms).await;
        assert!(r[0].text.contains(want), "{}", r[0].text);
    }
    assert!(!stored(&d, "alice").await);

    // A platform that can show a problem beside the input asks first: nothing is used up.
    let bad = form(&f.id, "no-colon");
    let problem = d.check_form(&from("alice", ""), &bad).await;
    assert!(problem.unwrap().contains("joined by a colon"));
    assert_eq!(
        d.check_form(&from("alice", ""), &form(&f.id, ALICE_KEY))
            .await,
        None
    );
    assert_eq!(
        d.check_form(&from("bob", ""), &bad).await,
        None,
        "not bob's form"
    );

    // A wrong key is refused like `setkey`, and uses the form up.
    let r = d
        .interact(&from("alice", ""), &form(&f.id, "no-colon"), &forms)
        .await;
    assert!(r[0].text.contains("joined by a colon"), "{}", r[0].text);
    assert!(!stored(&d, "alice").await);
    // Replayed: refused, nothing stored.
    let r = d
        .interact(&from("alice", ""), &form(&f.id, ALICE_KEY), &forms)
        .await;
    assert!(
        r[0].text.contains("expired or was already used"),
        "{}",
        r[0].text
    );
    assert!(!stored(&d, "alice").await);
    assert!(jenkins.seen().is_empty());
}

#[tokio::test]
async fn confirm_runs_once_cancel_and_strangers_run_nothing() {
    let jenkins = FakeJenkins::start().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dispatcher(dir.path(), &jenkins.url, 120);
    let buttons = Rich { forms: false };
    let mut dm = from("alice", &format!("jenkins setkey {ALICE_KEY}"));
    dm.direct = true;
    assert!(d.handle(&dm, &buttons).await[0].text.starts_with("Stored"));

    let asking = from("alice", "@deputy jenkins abort deploy");
    let ask = || d.handle(&asking, &buttons);
    let r = ask().await;
    assert!(
        r[0].text.contains("Run `jenkins abort deploy` as you?"),
        "{}",
        r[0].text
    );
    assert!(r[0].text.contains("within 120 s"), "{}", r[0].text);
    let labels: Vec<(&str, ButtonStyle)> = r[0]
        .buttons
        .iter()
        .map(|b| (b.label.as_str(), b.style))
        .collect();
    assert_eq!(
        labels,
        [
            ("Confirm", ButtonStyle::Danger),
            ("Cancel", ButtonStyle::Secondary)
        ]
    );
    assert!(jenkins.seen().is_empty(), "asking calls nothing");
    let (yes, no) = (r[0].buttons[0].id.clone(), r[0].buttons[1].id.clone());

    // Bob clicks Alice's Confirm: refused, nothing runs.
    let r = d.interact(&from("bob", ""), &click(&yes), &buttons).await;
    assert!(
        r[0].text.contains("offered to someone else"),
        "{}",
        r[0].text
    );
    assert!(jenkins.seen().is_empty());

    // Alice confirms: the call goes out once, as her.
    let r = d.interact(&from("alice", ""), &click(&yes), &buttons).await;
    assert!(
        r[0].text
            .contains("Asked Jenkins to abort the last build of deploy"),
        "{}",
        r[0].text
    );
    // Confirm again, or Cancel after Confirm: the question was used up.
    for id in [&yes, &no] {
        let r = d.interact(&from("alice", ""), &click(id), &buttons).await;
        assert!(
            r[0].text.contains("expired or was already used"),
            "{}",
            r[0].text
        );
    }
    assert_eq!(jenkins.seen(), vec![Seen::abort("alice", "deploy")]);

    // Cancel: nothing runs, and its Confirm is gone too.
    let r = ask().await;
    let (yes, no) = (r[0].buttons[0].id.clone(), r[0].buttons[1].id.clone());
    let r = d.interact(&from("alice", ""), &click(&no), &buttons).await;
    assert!(
        r[0].text
            .contains("Cancelled: `jenkins abort` was not run."),
        "{}",
        r[0].text
    );
    let r = d.interact(&from("alice", ""), &click(&yes), &buttons).await;
    assert!(
        r[0].text.contains("expired or was already used"),
        "{}",
        r[0].text
    );
    assert_eq!(jenkins.seen().len(), 1);
}

#[tokio::test]
async fn an_expired_confirmation_runs_nothing() {
    let jenkins = FakeJenkins::start().await;
    let dir = tempfile::tempdir().unwrap();
    // A confirmation that lives 0 s has expired by the time anyone clicks: no clock to wait on.
    let d = dispatcher(dir.path(), &jenkins.url, 0);
    let buttons = Rich { forms: false };
    let mut dm = from("alice", &format!("jenkins setkey {ALICE_KEY}"));
    dm.direct = true;
    assert!(d.handle(&dm, &buttons).await[0].text.starts_with("Stored"));
    let r = d
        .handle(&from("alice", "@deputy jenkins abort deploy"), &buttons)
        .await;
    let yes = r[0].buttons[0].id.clone();
    let r = d.interact(&from("alice", ""), &click(&yes), &buttons).await;
    assert!(
        r[0].text.contains("expired or was already used"),
        "{}",
        r[0].text
    );
    assert!(jenkins.seen().is_empty());
}

#[tokio::test]
async fn a_link_button_clicked_where_no_form_can_open_says_how_to_send_the_key() {
    let jenkins = FakeJenkins::start().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dispatcher(dir.path(), &jenkins.url, 120);
    let buttons = Rich { forms: false };
    let r = d
        .handle(&from("alice", "@deputy jenkins setkey"), &buttons)
        .await;
    let link = r[0].buttons[0].id.clone();
    let r = d
        .interact(&from("alice", ""), &click(&link), &buttons)
        .await;
    assert_eq!(r.len(), 1);
    assert!(r[0].form.is_none() && r[0].buttons.is_empty(), "{:?}", r[0]);
    assert!(
        r[0].text
            .contains("In a direct message to me, run `jenkins setkey <"),
        "{}",
        r[0].text
    );
}

#[tokio::test]
async fn a_new_question_replaces_the_users_open_one() {
    let jenkins = FakeJenkins::start().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dispatcher(dir.path(), &jenkins.url, 120);
    let buttons = Rich { forms: false };
    let mut dm = from("alice", &format!("jenkins setkey {ALICE_KEY}"));
    dm.direct = true;
    assert!(d.handle(&dm, &buttons).await[0].text.starts_with("Stored"));
    let first = d
        .handle(&from("alice", "@deputy jenkins abort deploy"), &buttons)
        .await;
    let second = d
        .handle(&from("alice", "@deputy jenkins abort nightly"), &buttons)
        .await;
    let r = d
        .interact(
            &from("alice", ""),
            &click(&first[0].buttons[0].id),
            &buttons,
        )
        .await;
    assert!(
        r[0].text.contains("expired or was already used"),
        "{}",
        r[0].text
    );
    let r = d
        .interact(
            &from("alice", ""),
            &click(&second[0].buttons[0].id),
            &buttons,
        )
        .await;
    assert!(
        r[0].text.contains("abort the last build of nightly"),
        "{}",
        r[0].text
    );
    assert_eq!(jenkins.seen(), vec![Seen::abort("alice", "nightly")]);
    // Open offers are bounded per user: the brain holds one question, not one per ask.
    let offers = d.brain.keys("offer/").await.unwrap();
    assert!(offers.is_empty(), "{offers:?}");
}
