//! The crate's dependencies point one way, as `src/lib.rs` draws them: every `crate::x` path in
//! `src/` goes to a module of the same layer or one below, the module graph has no circle, and
//! no auth kind names another kind or the dispatcher. Read from the source text, so a new
//! import that breaks the shape fails here rather than in review.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level modules by layer, lowest first (see the drawing in `src/lib.rs`).
const LAYERS: &[&[&str]] = &[
    &["config", "metrics"],
    &["brain", "secret"],
    &["message", "upstream"],
    &["auth", "pack"],
    &["dispatch"],
    &["app", "chat", "web", "sandbox", "fuzzing"],
    &["main"],
];

/// The kinds under `src/auth/`: each may use the shared pieces, never another kind.
const KINDS: &[&str] = &["none", "apikey", "oauth1", "oauth2"];

fn layer(module: &str) -> usize {
    LAYERS
        .iter()
        .position(|l| l.contains(&module))
        .unwrap_or_else(|| panic!("module {module} has no layer in tests/layers.rs"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The source without comments, string literals and char literals, so that only code counts.
fn code(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let end = text[i + 2..].find("*/").map_or(b.len(), |e| i + 2 + e + 2);
                i = end;
            }
            b'r' if matches!(b.get(i + 1), Some(b'"') | Some(b'#'))
                && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_')) =>
            {
                let hashes = b[i + 1..].iter().take_while(|&&c| c == b'#').count();
                if b.get(i + 1 + hashes) != Some(&b'"') {
                    out.push('r');
                    i += 1;
                    continue;
                }
                let close = format!("\"{}", "#".repeat(hashes));
                let from = i + 2 + hashes;
                i = text[from..]
                    .find(&close)
                    .map_or(b.len(), |e| from + e + close.len());
                out.push_str("\"\"");
            }
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
                out.push_str("\"\"");
            }
            // A char literal ('x', '\n', '"'); a lifetime ('a) has no closing quote.
            b'\'' if b.get(i + 1) == Some(&b'\\') => {
                i += 2;
                while i < b.len() && b[i] != b'\'' {
                    i += 1;
                }
                i += 1;
            }
            b'\'' if b.get(i + 2) == Some(&b'\'') => i += 3,
            c => {
                out.push(c as char);
                i += 1;
            }
        }
    }
    out
}

/// The words after every `prefix` in `code`: `crate::auth::x` gives `auth`.
fn after<'a>(code: &'a str, prefix: &str) -> Vec<&'a str> {
    let mut out = Vec::new();
    for (at, _) in code.match_indices(prefix) {
        let before = code[..at].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        let rest = &code[at + prefix.len()..];
        let end = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        if end > 0 {
            out.push(&rest[..end]);
        }
    }
    out
}

#[test]
fn dependencies_point_one_way() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut wrong = Vec::new();
    for file in &files {
        let rel = file.strip_prefix(&src).unwrap();
        let top = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        if top == "lib" {
            continue;
        }
        let code = code(&std::fs::read_to_string(file).unwrap());
        let prefix = if top == "main" { "deputy::" } else { "crate::" };
        let targets: BTreeSet<&str> = after(&code, prefix).into_iter().collect();
        for target in targets {
            if target == top {
                continue;
            }
            if layer(target) > layer(&top) {
                wrong.push(format!(
                    "{} imports {target}, a layer above {top}",
                    rel.display()
                ));
            }
            edges
                .entry(top.clone())
                .or_default()
                .insert(target.to_string());
        }
        // An auth kind uses the shared pieces of auth, never a sibling kind or the dispatcher.
        let stem = rel.file_stem().unwrap().to_string_lossy();
        if top == "auth" && KINDS.contains(&stem.as_ref()) {
            let named: Vec<&str> = after(&code, "super::")
                .into_iter()
                .chain(after(&code, "crate::auth::"))
                .filter(|m| KINDS.contains(m) && *m != stem)
                .collect();
            if !named.is_empty() {
                wrong.push(format!("{} uses the kind(s) {named:?}", rel.display()));
            }
            if code.contains("crate::dispatch") {
                wrong.push(format!("{} uses the dispatcher", rel.display()));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // Same-layer imports are allowed (auth uses pack), as long as they make no circle.
    fn visit(
        m: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) {
        if let Some(i) = path.iter().position(|p| p == m) {
            panic!("import circle: {} -> {m}", path[i..].join(" -> "));
        }
        if done.contains(m) {
            return;
        }
        path.push(m.to_string());
        for next in edges.get(m).into_iter().flatten() {
            visit(next, edges, path, done);
        }
        path.pop();
        done.insert(m.to_string());
    }
    let mut done = BTreeSet::new();
    for m in edges.keys() {
        visit(m, &edges, &mut Vec::new(), &mut done);
    }
    assert!(
        edges.get("dispatch").is_some_and(|e| e.contains("auth")),
        "the scan found no imports at all: is it reading src/?"
    );
}

#[test]
fn the_scanner_reads_code_only() {
    let c = code("use crate::a; // crate::b\nlet s = \"crate::c\"; let q = '\"'; /* crate::d */ crate::e::f();\nlet r = r#\"crate::g\"#;");
    assert_eq!(after(&c, "crate::"), ["a", "e"]);
}
