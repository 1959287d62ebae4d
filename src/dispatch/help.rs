//! Help, generated from the packs and the built-in auth commands: never written twice.

use crate::chat::Reply;
use crate::pack::{AuthKind, Pack};

use super::Dispatcher;

/// `help` or `help <service>`.
pub fn answer(d: &Dispatcher, topic: Option<&str>) -> Vec<Reply> {
    if let Some(topic) = topic {
        return match d.find(topic) {
            Some(pack) => service(pack),
            None => d.unknown_service(topic),
        };
    }
    let mut out = String::from("I run commands on these services as you, with your own account:\n");
    for p in &d.packs {
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
    if d.packs.is_empty() {
        out.push_str("(no command packs are loaded: the operator adds them to the packs folder)\n");
    }
    out.push_str("Say `help <service>` for its commands and how to link your account.");
    vec![Reply::new(out)]
}

/// Details of one service: its commands, then the built-in account commands.
pub fn service(pack: &Pack) -> Vec<Reply> {
    let s = &pack.service;
    let p = &s.prefixes[0];
    let mut out = format!("*{}* {}", s.name, prefixes(pack));
    if !s.summary.is_empty() {
        out.push_str(&format!(": {}", s.summary));
    }
    out.push('\n');
    for c in &pack.commands {
        out.push_str(&format!("`{p} {}` — {}\n", c.usage, c.help));
    }
    match &s.auth {
        AuthKind::None => out.push_str("No account needed.\n"),
        AuthKind::OAuth2(o) => {
            out.push_str("Your account:\n");
            out.push_str(&format!(
                "`{p} setupauth` — get a sign-in link (sent only to you)\n"
            ));
            if o.grant == crate::pack::Grant::AuthorizationCode {
                out.push_str(&format!(
                    "`{p} auth <code>` — finish signing in with the 6-digit code the page showed\n"
                ));
            }
            out.push_str(&format!(
                "`{p} whoami` — whether you are linked, and as whom\n"
            ));
            out.push_str(&format!("`{p} logout` — revoke and forget your token\n"));
        }
        AuthKind::OAuth1 { .. } => {
            out.push_str("Your account:\n");
            out.push_str(&format!(
                "`{p} setupauth` — get a sign-in link (sent only to you)\n"
            ));
            out.push_str(&format!(
                "`{p} auth <PIN>` — finish signing in with the PIN the page showed\n"
            ));
            out.push_str(&format!(
                "`{p} whoami` — whether you are linked, and as whom\n"
            ));
            out.push_str(&format!("`{p} logout` — forget your authorization\n"));
        }
        kind => {
            out.push_str("Your account:\n");
            out.push_str(&format!(
                "`{p} setkey <{}>` — link it (in a direct message only; the key is stored encrypted)\n",
                kind.hint()
            ));
            out.push_str(&format!(
                "`{p} whoami` — whether you are linked, and as whom\n"
            ));
            out.push_str(&format!("`{p} logout` — forget your key\n"));
        }
    }
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
