//! `admin …` in chat, for the operators named in `[bot] admins`: which services a user has
//! linked (never a secret), revoking a user's link (at the provider too where the kind can),
//! and brain statistics. Everyone else is refused; every admin action writes an audit line.

use crate::brain::Owner;
use crate::message::{reply, Handled, Message};

use super::Dispatcher;

const USAGE: &str = "Admin commands: `admin links <user>`, `admin revoke <user> <service>`, \
`admin stats`. A user is their id here (`U456`, a mention works too) or \
`adapter:workspace:user`.";

/// Who a user argument names: `<@U456>`, `U456` (the admin's own platform and workspace), or
/// `adapter:workspace:user`.
fn target(admin: &Message, word: &str) -> Owner {
    let word = word
        .strip_prefix("<@")
        .and_then(|w| w.strip_suffix('>'))
        .unwrap_or(word)
        .trim_start_matches('@');
    let parts: Vec<&str> = word.splitn(3, ':').collect();
    match parts.as_slice() {
        [adapter, workspace, user] => Owner {
            adapter: adapter.to_string(),
            workspace: workspace.to_string(),
            user: user.to_string(),
        },
        _ => Owner {
            adapter: admin.adapter.clone(),
            workspace: admin.workspace.clone(),
            user: word.to_string(),
        },
    }
}

fn id(o: &Owner) -> String {
    format!("{}:{}:{}", o.adapter, o.workspace, o.user)
}

pub async fn handle(d: &Dispatcher, msg: &Message, args: &[String]) -> Handled {
    let me = id(&msg.owner());
    let sub = args.first().map(|a| a.to_lowercase());
    if !d.admins.iter().any(|a| a == &me) {
        tracing::warn!(target: "deputy::audit", admin = %me, action = sub.as_deref().unwrap_or(""), outcome = "refused", "admin command");
        return reply(format!(
            "Only deputy's operators can use `admin` commands, and you ({me}) are not one. \
             The operator lists them in the config: [bot] admins."
        ));
    }
    let audit = |action: &str, who: &str, service: &str, outcome: &str| {
        tracing::info!(target: "deputy::audit", admin = %me, action, user = who, service, outcome, "admin command");
    };
    match (sub.as_deref(), &args[1.min(args.len())..]) {
        (Some("links"), [user]) => {
            let who = target(msg, user);
            let mut linked = Vec::new();
            for pack in d.packs.iter() {
                if d.auth.credential(&who, &pack.service.name).await?.is_some() {
                    linked.push(pack.service.name.clone());
                }
            }
            audit("links", &id(&who), "", "ok");
            reply(if linked.is_empty() {
                format!("{} has linked no service.", id(&who))
            } else {
                format!("{} has linked: {}.", id(&who), linked.join(", "))
            })
        }
        (Some("revoke"), [user, service]) => {
            let who = target(msg, user);
            let Some(pack) = d.find(service) else {
                return Ok(d.unknown_service(service));
            };
            if d.auth.credential(&who, &pack.service.name).await?.is_none() {
                audit("revoke", &id(&who), &pack.service.name, "nothing linked");
                return reply(format!(
                    "{} has no {} link; nothing to revoke.",
                    id(&who),
                    pack.service.name
                ));
            }
            // The user's own logout, run for them: it revokes where the kind can.
            let as_them = Message {
                adapter: who.adapter.clone(),
                workspace: who.workspace.clone(),
                user: who.user.clone(),
                ..msg.clone()
            };
            let said = d.kind(pack).logout(&d.auth, &as_them, pack).await?;
            audit("revoke", &id(&who), &pack.service.name, "ok");
            let text: Vec<String> = said.into_iter().map(|r| r.text).collect();
            reply(format!("For {}: {}", id(&who), text.join(" ")))
        }
        (Some("stats"), []) => {
            let linked = crate::brain::admin::linked_by_service(&d.brain).await?;
            let mut lines = Vec::new();
            let mut total = 0;
            for pack in d.packs.iter() {
                let n = linked.get(&pack.service.name).copied().unwrap_or(0);
                total += n;
                lines.push(format!("• {}: {n} linked", pack.service.name));
            }
            let pending = d.brain.keys("flow/").await?.len() + d.brain.keys("magic/").await?.len();
            audit("stats", "", "", "ok");
            reply(format!(
                "{total} linked account(s), {pending} sign-in(s) in progress:\n{}",
                lines.join("\n")
            ))
        }
        _ => reply(USAGE),
    }
}
