//! Help, generated from the packs and from each auth kind's account commands: never written
//! twice.

use crate::message::Reply;
use crate::pack::Pack;

/// `help`: every service and its commands.
pub fn overview(packs: &[Pack]) -> Vec<Reply> {
    let mut out = String::from("I run commands on these services as you, with your own account:\n");
    for p in packs {
        let s = &p.service;
        let names: Vec<&str> = p.commands.iter().map(|c| c.name.as_str()).collect();
        out.push_str(&format!("• {} {}", s.name, prefixes(p)));
        if !s.summary.is_empty() {
            out.push_str(&format!(" — {}", s.summary));
        }
        out.push('\n');
        if !names.is_empty() {
            out.push_str(&format!("    commands: {}\n", names.join(", ")));
        }
    }
    if packs.is_empty() {
        out.push_str("(no command packs are loaded: the operator adds them to the packs folder)\n");
    }
    out.push_str("Say `help <service>` for its commands and how to link your account.");
    vec![Reply::new(out)]
}

/// `help <service>`: its commands, then `account`, the account commands its auth kind offers.
pub fn service(pack: &Pack, account: &str) -> Vec<Reply> {
    let s = &pack.service;
    let p = &s.prefixes[0];
    let mut out = format!("*{}* {}", s.name, prefixes(pack));
    if !s.summary.is_empty() {
        out.push_str(&format!(": {}", s.summary));
    }
    out.push('\n');
    for c in &pack.commands {
        let confirm = if c.confirm {
            " (asks you to confirm first)"
        } else {
            ""
        };
        out.push_str(&format!("`{p} {}` — {}{confirm}\n", c.usage, c.help));
    }
    out.push_str(account);
    vec![Reply::new(out.trim_end().to_string())]
}

/// `(`jenkins`, `j`)`: the words that select the service.
fn prefixes(pack: &Pack) -> String {
    let words: Vec<String> = pack
        .service
        .prefixes
        .iter()
        .map(|p| format!("`{p}`"))
        .collect();
    format!("({})", words.join(", "))
}
