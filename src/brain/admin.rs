//! Brain administration behind `deputy brain …`: statistics, verification, erasing a person,
//! and sealed backups. Everything here works on key paths and sealed bytes and prints no
//! secret; only `verify` opens records, to prove they open.

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::Brain;

/// Record kinds whose key path is `kind/adapter/workspace/user/service`.
const PER_PERSON: &[&str] = &["cred", "flow", "magic"];
/// Pending sign-ins among them.
const PENDING: &[&str] = &["flow", "magic"];

/// A key path split into its decoded parts.
fn parts(key: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(key)
        .split('/')
        .map(|p| {
            percent_encoding::percent_decode_str(p)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect()
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// (adapter, service) → linked credentials.
    pub credentials: BTreeMap<(String, String), usize>,
    /// Pending sign-ins (OAuth flows waiting for a PIN, a poll, a browser or a magic code).
    pub pending: usize,
    /// Records of any other kind (sign-in indexes and the like), by kind.
    pub other: BTreeMap<String, usize>,
    pub records: usize,
    /// Bytes of every file in the brain directory; `None` for a brain in Redis, whose size is
    /// the server's to tell (`INFO memory`).
    pub bytes_on_disk: Option<u64>,
}

impl std::fmt::Display for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let linked: usize = self.credentials.values().sum();
        writeln!(f, "records: {}", self.records)?;
        writeln!(f, "linked credentials: {linked}")?;
        for ((adapter, service), n) in &self.credentials {
            writeln!(f, "  {adapter:<10} {service:<16} {n}")?;
        }
        writeln!(f, "pending sign-ins: {}", self.pending)?;
        for (kind, n) in &self.other {
            writeln!(f, "other records ({kind}): {n}")?;
        }
        match self.bytes_on_disk {
            Some(n) => write!(f, "size on disk: {}", human_bytes(n)),
            None => write!(f, "size: kept by Redis (its INFO memory tells)"),
        }
    }
}

fn human_bytes(n: u64) -> String {
    if n < 1024 * 1024 {
        format!("{:.1} KiB", n as f64 / 1024.0)
    } else {
        format!("{:.1} MiB", n as f64 / (1024.0 * 1024.0))
    }
}

fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            Ok(_) => e.metadata().map(|m| m.len()).unwrap_or(0),
            Err(_) => 0,
        })
        .sum()
}

pub async fn stats(brain: &Brain, dir: &Path) -> anyhow::Result<Stats> {
    let mut stats = Stats {
        bytes_on_disk: (!brain.is_shared()).then(|| dir_size(dir)),
        ..Stats::default()
    };
    for key in brain.store().keys(b"").await? {
        stats.records += 1;
        let p = parts(&key);
        match p[0].as_str() {
            "cred" if p.len() == 5 => {
                *stats
                    .credentials
                    .entry((p[1].clone(), p[4].clone()))
                    .or_default() += 1
            }
            kind if PENDING.contains(&kind) => stats.pending += 1,
            kind => *stats.other.entry(kind.to_string()).or_default() += 1,
        }
    }
    Ok(stats)
}

/// Linked credentials per service, from one scan of the key paths (no record opened).
pub async fn linked_by_service(brain: &Brain) -> anyhow::Result<BTreeMap<String, u64>> {
    let mut out = BTreeMap::new();
    for key in brain.store().keys(b"cred/").await? {
        let p = parts(&key);
        if p.len() == 5 {
            *out.entry(p[4].clone()).or_default() += 1;
        }
    }
    Ok(out)
}

/// What `verify` found.
#[derive(Debug, Default)]
pub struct Verified {
    pub records: usize,
    /// Key path and why it failed (never the value).
    pub failures: Vec<(String, String)>,
}

/// Opens every record and parses what it holds.
pub async fn verify(brain: &Brain) -> anyhow::Result<Verified> {
    let mut out = Verified::default();
    for key in brain.store().keys(b"").await? {
        out.records += 1;
        let name = String::from_utf8_lossy(&key).into_owned();
        let Some(sealed) = brain.store().get(&key).await? else {
            continue;
        };
        match brain.sealer().open(&key, &sealed) {
            Ok(plain) => {
                if serde_json::from_slice::<serde::de::IgnoredAny>(&plain).is_err() {
                    out.failures
                        .push((name, "opens, but does not hold a deputy record".into()));
                }
            }
            Err(e) => out.failures.push((name, e.to_string())),
        }
    }
    Ok(out)
}

/// Who a person is, for `forget`.
pub struct Person<'a> {
    pub adapter: &'a str,
    /// Every workspace when `None`.
    pub workspace: Option<&'a str>,
    pub user: &'a str,
    /// Every service when `None`.
    pub service: Option<&'a str>,
}

impl Person<'_> {
    fn matches(&self, adapter: &str, workspace: &str, user: &str) -> bool {
        adapter == self.adapter
            && user == self.user
            && self.workspace.map_or(true, |w| w == workspace)
    }
}

/// Erases every record of a person: credentials, pending sign-ins, and the sign-in indexes
/// (request tokens, browser states) whose conversation is theirs. All in one atomic write.
/// Returns the key paths erased.
pub async fn forget(brain: &Brain, who: &Person<'_>) -> anyhow::Result<Vec<String>> {
    let mut doomed = Vec::new();
    for key in brain.store().keys(b"").await? {
        let p = parts(&key);
        let hit = if PER_PERSON.contains(&p[0].as_str()) && p.len() == 5 {
            who.matches(&p[1], &p[2], &p[3]) && who.service.map_or(true, |s| s == p[4])
        } else if p.len() >= 2 {
            // Indexes keyed by service then token: the owner is inside the sealed value.
            let service_ok = who.service.map_or(true, |s| s == p[1]);
            service_ok
                && index_owner(brain, &key)
                    .await
                    .is_some_and(|(a, w, u)| who.matches(&a, &w, &u))
        } else {
            false
        };
        if hit {
            doomed.push(key);
        }
    }
    let names = doomed
        .iter()
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .collect();
    if !doomed.is_empty() {
        brain
            .store()
            .put_all(doomed.into_iter().map(|k| (k, None)).collect())
            .await?;
    }
    Ok(names)
}

/// The conversation owner an index record names, at its top level or under `conversation`.
async fn index_owner(brain: &Brain, key: &[u8]) -> Option<(String, String, String)> {
    let sealed = brain.store().get(key).await.ok()??;
    let plain = brain.sealer().open(key, &sealed).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&plain).ok()?;
    let c = v.get("conversation").unwrap_or(&v);
    let field = |name: &str| c.get(name)?.as_str().map(str::to_string);
    Some((field("adapter")?, field("workspace")?, field("user")?))
}

const EXPORT_MAGIC: &[u8] = b"deputy-brain-export v1\n";
const EXPORT_AAD: &[u8] = b"deputy brain export v1";

#[derive(Serialize, Deserialize)]
struct Export {
    key_id: String,
    /// Key path → the record exactly as stored (still sealed), base64.
    records: Vec<(String, String)>,
}

/// A backup of every record, sealed as a whole under the current key (records stay sealed
/// inside). Returns the bytes and the number of records.
pub async fn export(brain: &Brain) -> anyhow::Result<(Vec<u8>, usize)> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut records = Vec::new();
    for key in brain.store().keys(b"").await? {
        if let Some(sealed) = brain.store().get(&key).await? {
            records.push((String::from_utf8(key)?, b64.encode(sealed)));
        }
    }
    let n = records.len();
    let json = zeroize::Zeroizing::new(serde_json::to_vec(&Export {
        key_id: brain.key_id(),
        records,
    })?);
    let mut out = EXPORT_MAGIC.to_vec();
    out.extend(brain.sealer().seal(EXPORT_AAD, &json));
    Ok((out, n))
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("not a deputy brain export")]
    NotAnExport,
    #[error(
        "the export does not open with DEPUTY_SECRET: it was sealed under another secret (or \
         is damaged). Nothing was imported."
    )]
    OtherSecret,
    #[error("record {0} in the export does not open ({1}). Nothing was imported.")]
    BadRecord(String, String),
    #[error("{0}")]
    Store(#[from] anyhow::Error),
}

/// Restores an export: every record is checked first, then all are written in one atomic
/// batch (replacing records with the same key path), so an import lands whole or not at all.
pub async fn import(brain: &Brain, bytes: &[u8]) -> Result<usize, ImportError> {
    let sealed = bytes
        .strip_prefix(EXPORT_MAGIC)
        .ok_or(ImportError::NotAnExport)?;
    let json = brain
        .sealer()
        .open(EXPORT_AAD, sealed)
        .map_err(|_| ImportError::OtherSecret)?;
    let export: Export = serde_json::from_slice(&json).map_err(|_| ImportError::NotAnExport)?;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut writes = Vec::with_capacity(export.records.len());
    for (key, value) in export.records {
        let value = b64
            .decode(&value)
            .map_err(|_| ImportError::BadRecord(key.clone(), "not base64".into()))?;
        brain
            .sealer()
            .open(key.as_bytes(), &value)
            .map_err(|e| ImportError::BadRecord(key.clone(), e.to_string()))?;
        writes.push((key.into_bytes(), Some(value)));
    }
    let n = writes.len();
    if n > 0 {
        brain.store().put_all(writes).await?;
    }
    Ok(n)
}

/// What `migrate` did.
#[derive(Debug, Default)]
pub struct Migrated {
    pub copied: usize,
    pub already: usize,
    /// Key paths that did not open (not copied), and why.
    pub failed: Vec<(String, String)>,
}

/// Copies every record of `from` into `to`, sealed bytes as they are, each checked to open
/// first; records `to` already holds byte for byte are skipped, so a second run resumes.
pub async fn migrate(from: &Brain, to: &Brain) -> anyhow::Result<Migrated> {
    const CHUNK: usize = 256;
    let mut out = Migrated::default();
    let mut chunk = Vec::with_capacity(CHUNK);
    for key in from.store().keys(b"").await? {
        let Some(sealed) = from.store().get(&key).await? else {
            continue;
        };
        if let Err(e) = from.sealer().open(&key, &sealed) {
            out.failed
                .push((String::from_utf8_lossy(&key).into_owned(), e.to_string()));
            continue;
        }
        if to.store().get(&key).await?.as_deref() == Some(&sealed[..]) {
            out.already += 1;
            continue;
        }
        chunk.push((key, Some(sealed)));
        if chunk.len() == CHUNK {
            out.copied += chunk.len();
            to.store().put_all(std::mem::take(&mut chunk)).await?;
        }
    }
    if !chunk.is_empty() {
        out.copied += chunk.len();
        to.store().put_all(chunk).await?;
    }
    Ok(out)
}
