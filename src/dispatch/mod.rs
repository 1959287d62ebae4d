//! Routing one message: is it for us, which service (by prefix), then a built-in auth command
//! or a pack command. User errors become replies written for the user; internal errors are
//! logged in full and the user gets a short apology with a reference.

pub mod help;
pub mod parse;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock, Weak};

use minijinja::Value;

use crate::auth::{apikey, oauth1, oauth2, Credential};
use crate::brain::{Brain, KeyPath};
use crate::chat::{Adapter, Message, Reply};
use crate::config::AuthConfig;
use crate::pack::render::trim_reply;
use crate::pack::{Args, AuthKind, Pack, Request, Templates, BUILTIN_WORDS};
use crate::upstream::{Auth, Call, CallError, Upstream};

use self::parse::Addressing;

pub struct Dispatcher {
    pub addressing: Addressing,
    pub packs: Vec<Pack>,
    pub templates: Arc<Templates>,
    pub brain: Brain,
    pub upstream: Upstream,
    pub auth: AuthConfig,
    /// deputy's public URL: OAuth callbacks come back here instead of a PIN.
    pub public_url: Option<String>,
    /// Running adapters by name, to tell a user something outside a reply (a callback).
    pub adapters: RwLock<HashMap<String, Arc<dyn Adapter>>>,
    /// Work that outlives a message: device-flow polls, refresh locks.
    pub background: Background,
    /// This dispatcher itself, for background tasks (set by [`Dispatcher::new`]).
    pub me: Weak<Dispatcher>,
}

/// State for work that outlives the message that started it.
#[derive(Default)]
pub struct Background {
    /// Device-flow polls by credential key, so a new setupauth or a logout stops the old one.
    polls: Mutex<HashMap<String, tokio::task::AbortHandle>>,
    /// One refresh at a time per credential key.
    refresh_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// Something went wrong on deputy's side: logged with a reference, never shown in full.
#[derive(Debug)]
pub struct Internal(pub anyhow::Error);

impl<E: Into<anyhow::Error>> From<E> for Internal {
    fn from(e: E) -> Internal {
        Internal(e.into())
    }
}

pub type Handled = Result<Vec<Reply>, Internal>;

impl Dispatcher {
    /// Shares the dispatcher, wiring its reference to itself for background tasks.
    pub fn new(mut d: Dispatcher) -> Arc<Dispatcher> {
        Arc::new_cyclic(|me| {
            d.me = me.clone();
            d
        })
    }

    /// Starts polling a device flow in the background, replacing the user's previous poll.
    pub fn poll_device(
        &self,
        conversation: oauth1::Conversation,
        service: String,
        client: oauth2::DeviceClient,
        details: ::oauth2::StandardDeviceAuthorizationResponse,
    ) {
        let Some(me) = self.me.upgrade() else {
            return;
        };
        let key = KeyPath::credential(&conversation.owner(), &service).to_string();
        let task = tokio::spawn(async move {
            oauth2::poll_device(&me, conversation, service, client, details).await;
        });
        let old = self
            .background
            .polls
            .lock()
            .expect("polls poisoned")
            .insert(key, task.abort_handle());
        if let Some(old) = old {
            old.abort();
        }
    }

    /// Resumes work a previous run left unfinished (device-flow polls); failures are logged.
    pub async fn resume_background(&self) {
        match oauth2::resume_polls(self).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(polls = n, "resumed device-flow sign-ins"),
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "could not resume device-flow sign-ins")
            }
        }
    }

    /// Stops the user's device-flow poll for a service, if one runs.
    pub fn stop_poll(&self, key: &KeyPath) {
        if let Some(h) = self
            .background
            .polls
            .lock()
            .expect("polls poisoned")
            .remove(&key.to_string())
        {
            h.abort();
        }
    }

    /// The lock that makes refreshes of one credential happen one at a time.
    pub fn refresh_lock(&self, key: &KeyPath) -> Arc<tokio::sync::Mutex<()>> {
        self.background
            .refresh_locks
            .lock()
            .expect("refresh locks poisoned")
            .entry(key.to_string())
            .or_default()
            .clone()
    }

    /// Answers one message. Returns no replies when the message is not addressed to the bot.
    pub async fn handle(&self, msg: &Message, adapter: &dyn Adapter) -> Vec<Reply> {
        match self.route(msg, adapter).await {
            Ok(replies) => replies,
            Err(Internal(e)) => {
                let reference = format!("{:08x}", rand::random::<u32>());
                tracing::error!(reference, adapter = %msg.adapter, user = %msg.user, error = %format!("{e:#}"), "internal error");
                if e.downcast_ref::<crate::brain::writer::NotStored>()
                    .is_some()
                {
                    return vec![Reply::new(format!(
                        "Sorry, I could not save that: my brain failed to write it to disk, so \
                         nothing was stored (ref {reference}). Try again; the operator can find \
                         it in the log."
                    ))];
                }
                vec![Reply::new(format!(
                    "Sorry, something went wrong on my side (ref {reference}); the operator can find it in the log."
                ))]
            }
        }
    }

    async fn route(&self, msg: &Message, adapter: &dyn Adapter) -> Handled {
        let Some(text) = self.addressing.strip(&msg.text, msg.direct) else {
            return Ok(vec![]);
        };
        let words = match parse::words(text) {
            Ok(w) => w,
            Err(parse::ParseError::UnclosedQuote) => {
                return reply("I couldn't read that: a quote is not closed.")
            }
        };
        let Some(first) = words.first().map(|w| w.to_lowercase()) else {
            return reply(format!(
                "Hi! Say `{} help` to see what I can do.",
                self.addressing.name
            ));
        };
        // A key pasted in public is refused before anything else, even for a misspelt
        // service: the message holds a secret either way.
        let builtin = parse::normalize_builtin(&words[1.min(words.len())..]);
        if !msg.direct && matches!(&builtin, Some((b, _)) if b == "setkey") {
            let pack = self.find(&first);
            return Ok(apikey::refuse_public(msg, pack, adapter).await);
        }
        if first == "help" {
            return Ok(help::answer(self, words.get(1).map(String::as_str)));
        }
        let Some(pack) = self.find(&first) else {
            return Ok(self.unknown_service(&first));
        };
        let rest = &words[1..];
        if rest.is_empty() {
            return Ok(help::service(pack));
        }
        if let Some((name, used)) = builtin {
            let args = &rest[used..];
            let oauth1 = matches!(pack.service.auth, AuthKind::OAuth1 { .. });
            let oauth2 = matches!(pack.service.auth, AuthKind::OAuth2(_));
            return match name.as_str() {
                "help" => Ok(help::service(pack)),
                "setkey" => apikey::setkey(self, msg, pack, args).await,
                "logout" => apikey::logout(self, msg, pack).await,
                "whoami" => apikey::whoami(self, msg, pack).await,
                "setupauth" if oauth1 => oauth1::setupauth(self, msg, pack).await,
                "auth" if oauth1 => oauth1::auth(self, msg, pack, args).await,
                "setupauth" if oauth2 => oauth2::setupauth(self, msg, pack).await,
                "auth" if oauth2 => oauth2::auth(self, msg, pack, args).await,
                // API-key services explain what to do instead.
                _ => Ok(apikey::not_oauth(pack)),
            };
        }
        let name = rest[0].to_lowercase();
        let Some(command) = pack.commands.iter().find(|c| c.name == name) else {
            return Ok(self.unknown_command(pack, &name));
        };
        let args = match command.bind(&rest[1..]) {
            Ok(a) => a,
            Err(why) => {
                return reply(format!(
                    "{why}. Usage: `{} {}`",
                    pack.service.prefixes[0], command.usage
                ))
            }
        };
        self.run(
            msg,
            pack,
            &command.name,
            &command.request,
            args,
            &command.scopes,
        )
        .await
    }

    /// The pack whose service name or prefix is `word`.
    pub fn find(&self, word: &str) -> Option<&Pack> {
        let word = word.to_lowercase();
        self.packs
            .iter()
            .find(|p| p.service.prefixes.contains(&word) || p.service.name == word)
    }

    fn unknown_service(&self, word: &str) -> Vec<Reply> {
        let candidates = self
            .packs
            .iter()
            .flat_map(|p| p.service.prefixes.iter().map(String::as_str))
            .chain(["help"]);
        let hint = match closest(word, candidates) {
            Some(c) => format!(" Did you mean `{c}`?"),
            None => String::new(),
        };
        vec![Reply::new(format!(
            "I don't know `{}`.{hint} Say `help` to see what I can do.",
            short(word)
        ))]
    }

    fn unknown_command(&self, pack: &Pack, word: &str) -> Vec<Reply> {
        let prefix = &pack.service.prefixes[0];
        let candidates = pack
            .commands
            .iter()
            .map(|c| c.name.as_str())
            .chain(BUILTIN_WORDS.iter().copied());
        let hint = match closest(word, candidates) {
            Some(c) => format!(" Did you mean `{prefix} {c}`?"),
            None => String::new(),
        };
        vec![Reply::new(format!(
            "{} has no command `{}`.{hint} Say `{prefix} help` for its commands.",
            pack.service.name,
            short(word)
        ))]
    }

    /// The user's stored credential for a service, if any.
    pub async fn credential(
        &self,
        msg: &Message,
        pack: &Pack,
    ) -> anyhow::Result<Option<Credential>> {
        self.brain
            .get(&KeyPath::credential(&msg.owner(), &pack.service.name))
            .await
    }

    /// Runs one pack request as the user and renders its reply.
    pub async fn run(
        &self,
        msg: &Message,
        pack: &Pack,
        command: &str,
        request: &Request,
        args: Args,
        scopes: &[String],
    ) -> Handled {
        let service = &pack.service;
        let mut credential = if service.auth.needs_credential() {
            match self.credential(msg, pack).await? {
                Some(c) => Some(c),
                None => return Ok(vec![apikey::link_first(pack)]),
            }
        } else {
            None
        };
        if let Some(c @ Credential::OAuth2 { .. }) = credential {
            let missing = oauth2::missing_scopes(&c, scopes);
            if !missing.is_empty() {
                return reply(format!(
                    "`{} {command}` needs the {} scope(s), which your {} sign-in does not have. Run `{} setupauth` to sign in again with them.",
                    service.prefixes[0],
                    missing.join(", "),
                    service.name,
                    service.prefixes[0]
                ));
            }
            credential = match oauth2::usable(self, msg, pack, c).await? {
                Ok(c) => Some(c),
                Err(r) => return Ok(vec![r]),
            };
        }
        let ctx = self.context(msg, pack, &args, None);
        let mut refreshed = false;
        let response = loop {
            let call = match self.build_call(pack, request, &ctx) {
                Ok(call) => call,
                Err(e) => return Ok(vec![e]),
            };
            let auth = match auth_for(pack, credential.as_ref()) {
                Ok(a) => a,
                Err(r) => return Ok(vec![r]),
            };
            match self
                .upstream
                .send(&msg.owner(), service.target(), command, call, auth)
                .await
            {
                Ok(r) => break r,
                // An OAuth 2.0 token the provider refuses gets one refresh and one retry.
                Err(CallError::Rejected(_))
                    if !refreshed && matches!(credential, Some(Credential::OAuth2 { .. })) =>
                {
                    refreshed = true;
                    let stale = credential.take().expect("matched above");
                    match oauth2::refresh(self, msg, pack, &stale).await? {
                        Ok(c) => credential = Some(c),
                        Err(r) => return Ok(vec![r]),
                    }
                }
                Err(CallError::Rejected(status))
                    if matches!(service.auth, AuthKind::OAuth1 { .. }) =>
                {
                    // The stored token no longer works: offer a fresh sign-in in the same reply.
                    let why = format!(
                        "{} rejected your authorization (HTTP {status}); it may have been revoked.",
                        service.name
                    );
                    return Ok(vec![match oauth1::start(self, msg, pack).await? {
                        Ok(link) => Reply::private(format!("{why} {link}")),
                        Err(r) => Reply::new(format!("{why} {}", r.text)),
                    }]);
                }
                Err(e) => return reply(self.explain(pack, e)),
            }
        };
        let ctx = self.context(msg, pack, &args, Some(&response));
        let text = self
            .templates
            .render(&request.reply, &ctx)
            .map_err(|e| anyhow::anyhow!("{}: reply template: {e:#}", pack.file.display()))?;
        let text = trim_reply(&text);
        reply(if text.is_empty() {
            "Done.".to_string()
        } else {
            text
        })
    }

    fn context(
        &self,
        msg: &Message,
        pack: &Pack,
        args: &Args,
        response: Option<&crate::upstream::Response>,
    ) -> Value {
        let mut map: std::collections::BTreeMap<String, Value> = args.clone();
        map.insert(
            "user".into(),
            minijinja::context! {
                id => msg.user.clone(),
                name => msg.user_name.clone(),
                adapter => msg.adapter.clone(),
                workspace => msg.workspace.clone(),
            },
        );
        map.insert(
            "service".into(),
            minijinja::context! {
                name => pack.service.name.clone(),
                prefix => pack.service.prefixes[0].clone(),
                base_url => pack.service.base_url.as_str().trim_end_matches('/').to_string(),
            },
        );
        if let Some(r) = response {
            map.insert("status".into(), Value::from(r.status));
            map.insert("headers".into(), Value::from_serialize(&r.headers));
            map.insert("body".into(), Value::from_serialize(&r.body));
        }
        Value::from(map)
    }

    /// Renders the request. A URL that would leave the service's origin is refused: an
    /// argument must never send the user's credential to another host.
    fn build_call(&self, pack: &Pack, r: &Request, ctx: &Value) -> Result<Call, Reply> {
        let render = |name: &str| {
            self.templates.render(name, ctx).map_err(|e| {
                if let Some(why) = e
                    .detail()
                    .and_then(|d| d.strip_prefix(crate::pack::render::BAD_ARGUMENT))
                {
                    return Reply::new(format!("I can't use that argument: {why}."));
                }
                tracing::error!(pack = %pack.file.display(), template = name, error = %e, "request template failed");
                Reply::new(format!(
                    "The {} pack could not build that request; the operator can find why in the log.",
                    pack.service.name
                ))
            })
        };
        let base = &pack.service.base_url;
        let mut url = base.as_str().trim_end_matches('/').to_string();
        url.push_str(&render(&r.path)?);
        if let Some(q) = &r.query {
            let q = render(q)?;
            if !q.is_empty() {
                url.push(if url.contains('?') { '&' } else { '?' });
                url.push_str(&q);
            }
        }
        let refused = || {
            Reply::new(format!(
                "That argument would send the request outside {}; I won't send your credential there.",
                pack.service.name
            ))
        };
        let url = reqwest::Url::parse(&url).map_err(|_| refused())?;
        if url.origin() != base.origin() || !url.username().is_empty() || url.password().is_some() {
            return Err(refused());
        }
        let mut headers = Vec::new();
        for (h, t) in &r.headers {
            headers.push((h.clone(), render(t)?));
        }
        let body = match &r.body {
            Some(b) => Some((render(b)?, r.content_type.clone())),
            None => None,
        };
        Ok(Call {
            method: r.method.clone(),
            url,
            headers,
            body,
            response: r.response,
        })
    }

    /// What a user should read when an upstream call fails.
    pub fn explain(&self, pack: &Pack, e: CallError) -> String {
        let name = &pack.service.name;
        let prefix = &pack.service.prefixes[0];
        match e {
            CallError::Rejected(status) => match &pack.service.auth {
                AuthKind::None => format!("{name} refused the request (HTTP {status})."),
                AuthKind::OAuth1 { .. } | AuthKind::OAuth2(_) => format!(
                    "{name} rejected your authorization (HTTP {status}). Run `{prefix} setupauth` to sign in again."
                ),
                kind => format!(
                    "Your {name} credential was rejected (HTTP {status}). Run `{prefix} setkey <{}>` in a direct message to me to link a fresh one.",
                    kind.hint()
                ),
            },
            e => self.explain_plain(pack, e),
        }
    }

    /// An upstream failure in plain words, with no advice about the user's credential.
    pub fn explain_plain(&self, pack: &Pack, e: CallError) -> String {
        let name = &pack.service.name;
        match e {
            CallError::Rejected(status) => format!("{name} refused it (HTTP {status})."),
            CallError::NotFound => {
                format!("{name} says that does not exist (HTTP 404). Check the name and try again.")
            }
            CallError::RateLimited(Some(s)) => {
                format!("{name} is rate-limiting requests; try again in {s} s.")
            }
            CallError::RateLimited(None) => {
                format!("{name} is rate-limiting requests; try again in a minute.")
            }
            CallError::Server(status) => {
                format!("{name} had a server error (HTTP {status}); try again later.")
            }
            CallError::Refused(status, Some(m)) => {
                format!("{name} refused the request (HTTP {status}): {m}")
            }
            CallError::Refused(status, None) => {
                format!("{name} refused the request (HTTP {status}).")
            }
            CallError::Timeout(s) => {
                format!("{name} did not answer within {s} s; try again later.")
            }
            CallError::Connect => {
                format!("I couldn't reach {name} (connection failed); try again later.")
            }
            CallError::Unreadable => {
                format!("{name} answered with something I couldn't read (expected JSON).")
            }
            CallError::Unsignable(why) => {
                tracing::error!(service = %name, why = %why, "request cannot be signed correctly");
                format!("I can't sign this request for {name} correctly ({why}); the command pack needs fixing, so please tell the operator.")
            }
            CallError::Other(m) => format!("The call to {name} failed: {m}."),
        }
    }

    /// Makes an adapter reachable for messages outside a reply (OAuth callbacks).
    pub fn register_adapter(&self, name: &str, adapter: Arc<dyn Adapter>) {
        self.adapters
            .write()
            .expect("adapter map poisoned")
            .insert(name.to_string(), adapter);
    }

    /// Sends `reply` to the conversation `to` through its adapter, if that adapter runs.
    pub async fn notify(&self, to: &Message, reply: Reply) {
        let adapter = self
            .adapters
            .read()
            .expect("adapter map poisoned")
            .get(&to.adapter)
            .cloned();
        match adapter {
            Some(a) => {
                if let Err(e) = a.send(to, reply).await {
                    tracing::warn!(adapter = %to.adapter, error = %e, "could not notify a user");
                }
            }
            None => {
                tracing::warn!(adapter = %to.adapter, "no running adapter to notify a user through")
            }
        }
    }
}

pub fn reply(text: impl Into<String>) -> Handled {
    Ok(vec![Reply::new(text)])
}

/// How to authenticate a call with the user's credential.
fn auth_for<'a>(pack: &'a Pack, credential: Option<&'a Credential>) -> Result<Auth<'a>, Reply> {
    Ok(match credential {
        None => Auth::Anonymous,
        Some(c @ Credential::ApiKey { .. }) => c.apply(&pack.service.auth),
        Some(Credential::OAuth1 {
            token,
            token_secret,
            ..
        }) => Auth::OAuth1 {
            consumer: oauth1::consumer(pack)?,
            token: Some((token.expose(), token_secret.expose())),
        },
        Some(Credential::OAuth2 { access_token, .. }) => Auth::Bearer(access_token.expose()),
    })
}

/// The candidate closest to `word`, if it is close enough to be a typo.
fn closest<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .map(|c| (strsim::damerau_levenshtein(word, c), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3) && *d < word.len().max(1) + 1)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// A word echoed back in a reply, cut short: it could be anything the user typed.
fn short(word: &str) -> String {
    word.chars().take(32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closest_finds_typos_only() {
        let c = ["jenkins", "gitlab", "help"];
        assert_eq!(closest("jenkns", c.iter().copied()), Some("jenkins"));
        assert_eq!(closest("hlep", c.iter().copied()), Some("help"));
        assert_eq!(closest("weather", c.iter().copied()), None);
    }
}
