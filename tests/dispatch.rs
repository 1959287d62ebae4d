//! In-process tests of what the dispatcher asks of an adapter: deleting a message that holds
//! a key, and saying so truthfully whatever the platform answered.

use std::sync::{Arc, Mutex};

use deputy::brain::seal::Sealer;
use deputy::brain::KeyPath;
use deputy::chat::{Adapter, Deleted, Message, Reply, Visibility};
use deputy::config::Config;
use deputy::dispatch::Dispatcher;
use secrecy::SecretString;

struct Recording {
    answer: Deleted,
    deleted: Mutex<Vec<String>>,
}

#[async_trait::async_trait]
impl Adapter for Recording {
    async fn send(&self, _: &Message, _: Reply) -> anyhow::Result<()> {
        Ok(())
    }
    async fn delete(&self, message: &Message) -> Deleted {
        self.deleted.lock().unwrap().push(message.id.clone());
        self.answer.clone()
    }
}

fn dispatcher(dir: &std::path::Path) -> Arc<Dispatcher> {
    let mut config = Config::default();
    config.bot.packs = concat!(env!("CARGO_MANIFEST_DIR"), "/commands").into();
    config.brain.path = dir.join("brain");
    let (packs, templates) = deputy::app::load_packs(&config).unwrap();
    let secret =
        SecretString::from("aGVsbG8gdGhpcyBpcyBhIHRlc3Qgc2VjcmV0IGtleSAxMjM0NTY3OA==".to_string());
    let brain = deputy::app::open_brain(&config, Sealer::new(&secret, &[]).unwrap()).unwrap();
    deputy::app::dispatcher(&config, packs, templates, brain, &[]).unwrap()
}

fn public(text: &str) -> Message {
    Message {
        adapter: "test".into(),
        workspace: "w1".into(),
        user: "u1".into(),
        user_name: "alice".into(),
        channel: "general".into(),
        id: "m-77".into(),
        thread: None,
        direct: false,
        text: text.into(),
    }
}

#[tokio::test]
async fn public_setkey_asks_the_adapter_to_delete_and_reports_the_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let d = dispatcher(dir.path());
    let cases = [
        (Deleted::Yes, "I deleted your message"),
        (
            Deleted::Refused("missing Manage Messages permission".into()),
            "I could not delete your message (missing Manage Messages permission): delete it yourself.",
        ),
        (Deleted::Unsupported, "I cannot delete messages here"),
    ];
    for (answer, want) in cases {
        let adapter = Arc::new(Recording {
            answer,
            deleted: Mutex::default(),
        });
        let replies = d
            .handle(&public("@deputy j setkey alice:tok"), adapter.as_ref())
            .await;
        assert_eq!(*adapter.deleted.lock().unwrap(), ["m-77"]);
        assert_eq!(replies.len(), 1);
        assert_eq!(
            replies[0].visibility,
            Visibility::OnlyUser,
            "only the user sees it"
        );
        assert!(replies[0].text.contains(want), "{}", replies[0].text);
        assert!(!replies[0].text.contains("alice:tok"));
    }
    let owner = public("").owner();
    let stored: Option<serde_json::Value> = d
        .brain
        .get(&KeyPath::credential(&owner, "jenkins"))
        .await
        .unwrap();
    assert!(stored.is_none());
}

#[tokio::test]
async fn the_same_user_id_in_two_workspaces_is_two_people() {
    let dir = tempfile::tempdir().unwrap();
    let d = dispatcher(dir.path());
    let adapter = Recording {
        answer: Deleted::Unsupported,
        deleted: Mutex::default(),
    };
    let mut dm = public("jenkins setkey alice:tok");
    dm.direct = true;
    assert!(d.handle(&dm, &adapter).await[0].text.starts_with("Stored"));
    let mut other = dm.clone();
    other.workspace = "w2".into();
    other.text = "jenkins whoami".into();
    let r = d.handle(&other, &adapter).await;
    assert!(r[0].text.starts_with("You haven't linked"), "{}", r[0].text);
    let mut other_adapter = dm.clone();
    other_adapter.adapter = "other".into();
    other_adapter.text = "jenkins whoami".into();
    let r = d.handle(&other_adapter, &adapter).await;
    assert!(r[0].text.starts_with("You haven't linked"), "{}", r[0].text);
}

#[tokio::test]
async fn a_write_that_does_not_reach_the_disk_is_reported_as_not_stored() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.bot.packs = concat!(env!("CARGO_MANIFEST_DIR"), "/commands").into();
    config.brain.path = dir.path().join("brain");
    let (packs, templates) = deputy::app::load_packs(&config).unwrap();
    let store = deputy::brain::memory::MemoryStore::new().unwrap();
    let broken = store.engine().broken.clone();
    let secret =
        SecretString::from("aGVsbG8gdGhpcyBpcyBhIHRlc3Qgc2VjcmV0IGtleSAxMjM0NTY3OA==".to_string());
    let brain = deputy::brain::Brain::new(Arc::new(store), Sealer::new(&secret, &[]).unwrap());
    let d = deputy::app::dispatcher(&config, packs, templates, brain, &[]).unwrap();
    let adapter = Recording {
        answer: Deleted::Unsupported,
        deleted: Mutex::default(),
    };
    let mut dm = public("jenkins setkey alice:tok");
    dm.direct = true;
    broken.store(true, std::sync::atomic::Ordering::Relaxed);
    let r = d.handle(&dm, &adapter).await;
    assert!(r[0].text.contains("nothing was stored"), "{}", r[0].text);
    assert!(!r[0].text.contains("Stored your"), "{}", r[0].text);
    assert!(!r[0].text.contains("alice:tok"));
    let key = KeyPath::credential(&dm.owner(), "jenkins");
    assert!(d
        .brain
        .get::<serde_json::Value>(&key)
        .await
        .unwrap()
        .is_none());
    // The disk recovers: the same command now stores.
    broken.store(false, std::sync::atomic::Ordering::Relaxed);
    assert!(d.handle(&dm, &adapter).await[0].text.starts_with("Stored"));
    assert!(d
        .brain
        .get::<serde_json::Value>(&key)
        .await
        .unwrap()
        .is_some());
}
