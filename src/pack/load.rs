//! Loading: every pack in the operator's folder, the operator's overrides from `deputy.toml`,
//! and the checks across packs (clashing prefixes).

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use super::builtin;
use super::model::Pack;
use super::render::Templates;
use super::validate::{load_one, PackError};
use crate::config::{check_base_url, Config};

/// Loads the built-in packs and every `*.toml` in the operator's packs folder (a folder pack
/// replaces the built-in one of the same service name; a missing folder means built-ins
/// only), applies the operator's overrides, and compiles the templates. Disabled packs are
/// still validated (a typo should not wait until the day the pack is switched on).
pub fn load_all(config: &Config) -> Result<(Vec<Pack>, Templates), Vec<PackError>> {
    let dir = config.packs_dir();
    let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            tracing::info!(folder = %dir.display(), "no packs folder: using the built-in packs");
            Vec::new()
        }
        Err(e) => {
            return Err(vec![PackError {
                file: dir,
                line: 0,
                message: format!("cannot read the packs folder: {e}"),
            }])
        }
    };
    files.sort();
    let mut templates = Templates::new();
    let mut packs = Vec::new();
    let mut errors = Vec::new();
    for file in files {
        match std::fs::read_to_string(&file) {
            Ok(text) => match load_one(&file, &text, &mut templates) {
                Ok(pack) => packs.push(pack),
                Err(e) => errors.push(e),
            },
            Err(e) => errors.push(PackError {
                file,
                line: 0,
                message: format!("cannot read: {e}"),
            }),
        }
    }
    for (name, text) in builtin::PACKS {
        let file = builtin::path(name);
        // Parsed aside first: an overridden built-in adds no templates.
        let pack = match load_one(&file, text, &mut Templates::new()) {
            Ok(p) => p,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        if let Some(mine) = packs.iter().find(|p| p.service.name == pack.service.name) {
            tracing::info!(pack = %pack.service.name, file = %mine.file.display(), "the packs folder replaces a built-in pack");
            continue;
        }
        match load_one(&file, text, &mut templates) {
            Ok(p) => packs.push(p),
            Err(e) => errors.push(e),
        }
    }
    packs.sort_by(|a, b| a.service.name.cmp(&b.service.name));
    apply_overrides(config, &mut packs, &mut errors);
    check_clashes(&packs, &mut errors);
    if errors.is_empty() {
        Ok((packs, templates))
    } else {
        Err(errors)
    }
}

fn apply_overrides(config: &Config, packs: &mut Vec<Pack>, errors: &mut Vec<PackError>) {
    let known: HashSet<&str> = packs.iter().map(|p| p.service.name.as_str()).collect();
    for name in config.services.keys() {
        if !known.contains(name.as_str()) {
            let mut names: Vec<&str> = known.iter().copied().collect();
            names.sort();
            errors.push(PackError {
                file: config
                    .path
                    .clone()
                    .unwrap_or_else(|| PathBuf::from("deputy.toml")),
                line: 0,
                message: format!(
                    "[services.{name}] overrides a service no pack declares (packs: {})",
                    names.join(", ")
                ),
            });
        }
    }
    packs.retain_mut(|pack| {
        let Some(o) = config.services.get(&pack.service.name) else {
            return true;
        };
        // Already validated with the config.
        if let Some(Ok(url)) = o.base_url.as_deref().map(check_base_url) {
            // Auth endpoints follow the API unless the pack put them elsewhere.
            if pack.service.auth_base_url == pack.service.base_url {
                pack.service.auth_base_url = url.clone();
            }
            pack.service.base_url = url;
        }
        if let Some(Ok(url)) = o.auth_base_url.as_deref().map(check_base_url) {
            pack.service.auth_base_url = url;
        }
        if let Some(secs) = o.timeout_secs {
            pack.service.timeout = Some(Duration::from_secs(secs));
        }
        o.enabled != Some(false)
    });
}

fn check_clashes(packs: &[Pack], errors: &mut Vec<PackError>) {
    let mut seen: BTreeMap<String, &Pack> = BTreeMap::new();
    for pack in packs {
        for word in std::iter::once(&pack.service.name).chain(&pack.service.prefixes) {
            if let Some(other) = seen.get(word.as_str()) {
                if other.service.name != pack.service.name {
                    errors.push(PackError {
                        file: pack.file.clone(),
                        line: 0,
                        message: format!(
                            "prefix {word:?} is already used by service {:?} in {}; disable one \
                             in deputy.toml ([services.NAME] enabled = false) or rename it",
                            other.service.name,
                            other.file.display()
                        ),
                    });
                }
            } else {
                seen.insert(word.clone(), pack);
            }
        }
    }
}
