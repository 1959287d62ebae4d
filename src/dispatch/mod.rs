//! Routing one message: is it for us, which service (by prefix), then a built-in auth command
//! or a pack command. User errors become replies written for the user; internal errors are
//! logged in full and the user gets a short apology with a reference. Buttons and forms
//! deputy offered come back through [`Dispatcher::interact`] ([`offer`] checks them).

pub mod admin;
pub mod help;
pub mod limits;
pub mod offer;
pub mod parse;

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use minijinja::Value;

use crate::auth::{AuthContext, AuthScheme, Callback, Credential, Kinds, Rejected, Whoami};
use crate::brain::Brain;
use crate::config::AuthConfig;
pub use crate::message::{reply, Handled, Internal};
use crate::message::{
    Adapter, Button, ButtonStyle, Interaction, Message, Outbox, Reply, SecretForm, Visibility,
};
use crate::pack::render::trim_reply;
use crate::pack::{Args, Pack, Request, Templates, BUILTIN_WORDS};
use crate::upstream::{Auth, Call, CallError, Upstream};

use self::offer::{Action, Offered, Refusal};
use self::parse::Addressing;

pub struct Dispatcher {
    pub addressing: Addressing,
    pub packs: Arc<Vec<Pack>>,
    pub templates: Arc<Templates>,
    pub brain: Brain,
    pub upstream: Upstream,
    /// What the auth kinds work with (it shares the brain, the upstream and the packs).
    pub auth: AuthContext,
    /// The auth kinds; the dispatcher asks them and names none.
    pub kinds: Kinds,
    /// Who may say `admin …`: `adapter:workspace:user`.
    pub admins: Vec<String>,
    /// Members of the permission groups commands name in `allow`.
    pub permissions: crate::config::Permissions,
    /// Seconds a user has to confirm a `confirm = true` command.
    pub confirm_ttl_secs: u64,
}

impl Dispatcher {
    /// The dispatcher, shared.
    pub fn new(
        addressing: Addressing,
        packs: Vec<Pack>,
        templates: Templates,
        brain: Brain,
        upstream: Upstream,
        settings: &crate::config::Config,
    ) -> Arc<Dispatcher> {
        let config: AuthConfig = settings.auth.clone();
        let public_url = settings.web.public_url.clone();
        let admins = settings.bot.admins.clone();
        let permissions = settings.permissions.clone();
        let packs = Arc::new(packs);
        Arc::new(Dispatcher {
            addressing,
            packs: packs.clone(),
            templates: Arc::new(templates),
            brain: brain.clone(),
            upstream: upstream.clone(),
            auth: AuthContext {
                brain,
                upstream,
                config,
                public_url,
                outbox: Outbox::default(),
                packs,
            },
            kinds: Kinds::new(),
            admins,
            permissions,
            confirm_ttl_secs: settings.bot.confirm_ttl_secs,
        })
    }

    /// The same dispatcher (packs, templates, upstream, settings) on another brain, with its
    /// own outbox and auth kinds: a fuzz input starts from an empty brain without loading
    /// the packs again.
    pub fn with_brain(&self, brain: Brain) -> Dispatcher {
        Dispatcher {
            addressing: self.addressing.clone(),
            packs: self.packs.clone(),
            templates: self.templates.clone(),
            brain: brain.clone(),
            upstream: self.upstream.clone(),
            auth: AuthContext {
                brain,
                outbox: Outbox::default(),
                ..self.auth.clone()
            },
            kinds: Kinds::new(),
            admins: self.admins.clone(),
            permissions: self.permissions.clone(),
            confirm_ttl_secs: self.confirm_ttl_secs,
        }
    }

    /// A command with `allow` groups, asked by someone in none of them: who can run it.
    fn refuse(&self, msg: &Message, pack: &Pack, command: &crate::pack::Command) -> Option<Reply> {
        if command.allow.is_empty() {
            return None;
        }
        let me = format!("{}:{}:{}", msg.adapter, msg.workspace, msg.user);
        let member = command.allow.iter().any(|g| {
            self.permissions
                .get(g)
                .is_some_and(|members| members.contains(&me))
        });
        if member {
            return None;
        }
        tracing::warn!(target: "deputy::audit", user = %me, service = %pack.service.name, command = %command.name, outcome = "not allowed", "permission refused");
        let who: Vec<String> = command
            .allow
            .iter()
            .map(|g| match self.permissions.get(g) {
                Some(m) if !m.is_empty() => format!("{g} ({})", m.join(", ")),
                _ => format!("{g} (no one yet: the operator fills [permissions] {g})"),
            })
            .collect();
        Some(Reply::new(format!(
            "You ({me}) may not run `{} {}`. Members of {} can; ask an operator to add you.",
            pack.service.prefixes[0],
            command.name,
            who.join(" or ")
        )))
    }

    /// The auth kind of a pack.
    fn kind(&self, pack: &Pack) -> &dyn AuthScheme {
        self.kinds.of(&pack.service.auth)
    }

    /// Resumes work a previous run left unfinished (device-flow polls); failures are logged.
    pub async fn resume_background(&self) {
        for kind in self.kinds.iter() {
            kind.resume(&self.auth).await;
        }
    }

    /// The browser came back to `/<kind>/<service>/callback`; `None` when no kind takes it.
    pub async fn callback(
        &self,
        kind: &str,
        service: &str,
        query: &HashMap<String, String>,
    ) -> Option<Result<Callback, Internal>> {
        self.kinds
            .named(kind)?
            .callback(&self.auth, service, query)
            .await
    }

    /// Answers one message. Returns no replies when the message is not addressed to the bot.
    pub async fn handle(&self, msg: &Message, adapter: &dyn Adapter) -> Vec<Reply> {
        let handled = self.route(msg, adapter).await;
        self.answer(msg, handled)
    }

    /// The replies, or the apology for an internal error (logged with a reference).
    fn answer(&self, msg: &Message, handled: Handled) -> Vec<Reply> {
        match handled {
            Ok(replies) => replies,
            Err(Internal(e)) => {
                let reference = format!("{:08x}", rand::random::<u32>());
                tracing::error!(reference, adapter = %msg.adapter, user = %msg.user, error = %format!("{e:#}"), "internal error");
                if e.downcast_ref::<crate::brain::redis::Unavailable>()
                    .is_some()
                {
                    return vec![Reply::new(format!(
                        "Sorry, I cannot reach my brain right now, so I could not do that and \
                         nothing was stored (ref {reference}). Try again in a minute."
                    ))];
                }
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
        let addressed = self.addressing.strip(&msg.text, msg.direct);
        if let Some(answer) = typed_answer(addressed.unwrap_or(&msg.text)) {
            if let Some(token) = offer::typed(&self.brain, msg).await? {
                let id = offer::callback_id(&token, answer);
                return self
                    .interaction(msg, &Interaction::Button { id }, adapter)
                    .await;
            }
            // Addressed to the bot, and no service is called that: say why nothing happens.
            if addressed.is_some_and(|text| self.find(text.trim()).is_none()) {
                return reply(
                    "Nothing here is waiting for your yes or no (a confirmation may have \
                     expired: ask for the command again).",
                );
            }
        }
        let Some(text) = addressed else {
            return Ok(vec![]);
        };
        let words = match parse::words(text) {
            Ok(w) => w,
            Err(parse::ParseError::UnclosedQuote) => {
                return reply("I couldn't read that: a quote is not closed.")
            }
        };
        let Some(first) = words.first().map(|w| lowercase(w)) else {
            return reply(format!(
                "Hi! Say `{} help` to see what I can do.",
                self.addressing.name
            ));
        };
        // A key pasted in public is refused before anything else, even for a misspelt
        // service: the message holds a secret either way.
        let builtin = parse::normalize_builtin(&words[1.min(words.len())..]);
        // A bare `setkey` holds no secret: where buttons can be shown, it gets the private
        // form instead of a refusal.
        let bare_setkey =
            matches!(&builtin, Some((b, used)) if b == "setkey" && words.len() == 1 + used);
        let private_form = bare_setkey && adapter.surfaces(msg).buttons;
        if !msg.direct && !private_form && matches!(&builtin, Some((b, _)) if b == "setkey") {
            let pack = self.find(&first);
            return Ok(crate::auth::replies::refuse_public(msg, pack, adapter).await);
        }
        if first == "admin" && self.find("admin").is_none() {
            return admin::handle(self, msg, &words[1..]).await;
        }
        if first == "help" {
            return Ok(match words.get(1) {
                None => help::overview(&self.packs),
                Some(topic) => match self.find(topic) {
                    Some(pack) => help::service(pack, &self.kind(pack).help(pack)),
                    None => self.unknown_service(topic),
                },
            });
        }
        let Some(pack) = self.find(&first) else {
            return Ok(self.unknown_service(&first));
        };
        let rest = &words[1..];
        if rest.is_empty() {
            return Ok(help::service(pack, &self.kind(pack).help(pack)));
        }
        if let Some((name, used)) = builtin {
            let args = &rest[used..];
            let kind = self.kind(pack);
            let cx = &self.auth;
            return match name.as_str() {
                "help" => Ok(help::service(pack, &kind.help(pack))),
                "setkey" if args.is_empty() && kind.takes_key() => {
                    self.offer_key(msg, pack, adapter).await
                }
                "setkey" => kind.setkey(cx, msg, pack, args).await,
                "logout" => kind.logout(cx, msg, pack).await,
                "whoami" => match kind.whoami(cx, msg, pack).await? {
                    Whoami::Reply(r) => Ok(vec![r]),
                    Whoami::AskService => match &pack.service.whoami {
                        Some(request) => {
                            self.run(msg, pack, "whoami", request, Args::new(), &[])
                                .await
                        }
                        None => Ok(vec![]),
                    },
                },
                "setupauth" => {
                    metrics::counter!("deputy_signins_started_total", "kind" => kind.name())
                        .increment(1);
                    kind.setupauth(cx, msg, pack).await
                }
                _ => kind.auth(cx, msg, pack, args).await,
            };
        }
        let name = lowercase(&rest[0]);
        let Some(command) = pack.commands.iter().find(|c| c.name == name) else {
            return Ok(self.unknown_command(pack, &name));
        };
        if let Some(refusal) = self.refuse(msg, pack, command) {
            return Ok(vec![refusal]);
        }
        let args = match command.bind(&rest[1..]) {
            Ok(a) => a,
            Err(why) => {
                return reply(format!(
                    "{why}. Usage: `{} {}`",
                    pack.service.prefixes[0], command.usage
                ))
            }
        };
        if command.confirm {
            return self
                .ask_confirm(msg, pack, command, &rest[1..], adapter)
                .await;
        }
        self.run_command(msg, pack, command, args).await
    }

    /// Runs a pack command as the user.
    async fn run_command(
        &self,
        msg: &Message,
        pack: &Pack,
        command: &crate::pack::Command,
        args: Args,
    ) -> Handled {
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
        // Names and prefixes are lowercase ASCII (the pack loader checks).
        let word = comparable(word);
        let is = |name: &String| name.eq_ignore_ascii_case(&word);
        self.packs
            .iter()
            .find(|p| is(&p.service.name) || p.service.prefixes.iter().any(is))
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
        self.auth.credential(&msg.owner(), &pack.service.name).await
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
        let kind = self.kind(pack);
        let mut credential = if kind.needs_credential() {
            match self.credential(msg, pack).await? {
                Some(c) => Some(c),
                None => return Ok(vec![kind.link_first(pack)]),
            }
        } else {
            None
        };
        if let Some(c) = credential {
            credential = match kind
                .prepare(&self.auth, msg, pack, command, scopes, c)
                .await?
            {
                Ok(c) => Some(c),
                Err(r) => return Ok(vec![r]),
            };
        }
        let base = self.context_of(msg, pack, &args);
        let ctx = Value::from(base.clone());
        let mut retried = false;
        let response = loop {
            let call = match self.build_call(pack, request, &ctx) {
                Ok(call) => call,
                Err(e) => return Ok(vec![e]),
            };
            let auth = match &credential {
                None => Auth::Anonymous,
                Some(c) => match kind.apply(pack, c) {
                    Ok(a) => a,
                    Err(r) => return Ok(vec![r]),
                },
            };
            match self
                .upstream
                .send(&msg.owner(), service.target(), command, call, auth)
                .await
            {
                Ok(r) => break r,
                Err(CallError::Rejected(status)) => {
                    let rejected = kind
                        .rejected(&self.auth, msg, pack, credential.as_ref(), status, retried)
                        .await?;
                    match rejected {
                        Rejected::Retry(c) => {
                            retried = true;
                            credential = Some(c);
                        }
                        Rejected::Reply(r) => return Ok(vec![r]),
                    }
                }
                Err(e) => return reply(e.explain(&service.name)),
            }
        };
        let ctx = with_response(base, Some(&response));
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

    /// What a pack's templates see: the arguments, `user`, `service`, and once the upstream
    /// answered, `status`, `headers` and `body`.
    pub fn context(
        &self,
        msg: &Message,
        pack: &Pack,
        args: &Args,
        response: Option<&crate::upstream::Response>,
    ) -> Value {
        with_response(self.context_of(msg, pack, args), response)
    }

    /// The part of [`Dispatcher::context`] known before the call, kept by [`Dispatcher::run`]
    /// for the reply's context instead of being built twice.
    fn context_of(&self, msg: &Message, pack: &Pack, args: &Args) -> Ctx {
        let mut map: Ctx = args.clone();
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
        map
    }

    /// Renders the request. A URL that would leave the service's origin is refused: an
    /// argument must never send the user's credential to another host.
    pub fn build_call(&self, pack: &Pack, r: &Request, ctx: &Value) -> Result<Call, Reply> {
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
        if !same_origin(&url, base) || !url.username().is_empty() || url.password().is_some() {
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

    /// Makes an adapter reachable for messages outside a reply (OAuth callbacks).
    pub fn register_adapter(&self, name: &str, adapter: Arc<dyn Adapter>) {
        self.auth.outbox.register(name, adapter);
    }

    /// Sends `reply` to the conversation `to` through its adapter, if that adapter runs.
    pub async fn notify(&self, to: &Message, reply: Reply) {
        self.auth.outbox.notify(to, reply).await;
    }

    /// Answers a click on a button or a submitted form deputy offered. `from` is who did it
    /// and where (a [`Message`] with empty text: adapter, workspace, user, channel, thread;
    /// `direct` when that is a DM); the replies go back to `from`, through `adapter`.
    /// Anything not offered to that user, expired, already used or unknown is refused with
    /// a reply, and nothing is stored or run.
    pub async fn interact(
        &self,
        from: &Message,
        interaction: &Interaction,
        adapter: &dyn Adapter,
    ) -> Vec<Reply> {
        if interaction.id() == crate::message::LINK_BUTTON_ID {
            return vec![];
        }
        let handled = self.interaction(from, interaction, adapter).await;
        self.answer(from, handled)
    }

    /// What is wrong with the value of a submitted key form, for a platform that can show it
    /// beside the input and keep the form open (Slack's `response_action: errors`). `None`
    /// when the value is fine, or when the form is not a live one of this user's: then
    /// [`Dispatcher::interact`] answers. Nothing is used up or stored.
    pub async fn check_form(&self, from: &Message, interaction: &Interaction) -> Option<String> {
        let Interaction::Form { value, .. } = interaction else {
            return None;
        };
        let offer = match offer::peek(&self.brain, from, interaction).await {
            Ok(Some(offer)) => offer,
            Ok(None) => return None,
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "could not look a form up");
                return None;
            }
        };
        let Offered::KeyForm { service } = &offer.what else {
            return None;
        };
        let pack = self.packs.iter().find(|p| &p.service.name == service)?;
        self.kind(pack).check_key(pack, value.expose().trim()).err()
    }

    async fn interaction(
        &self,
        from: &Message,
        interaction: &Interaction,
        adapter: &dyn Adapter,
    ) -> Handled {
        let who = format!("{}:{}:{}", from.adapter, from.workspace, from.user);
        let (offer, action) = match offer::take(&self.brain, from, interaction).await? {
            Ok(taken) => taken,
            Err(refusal) => {
                tracing::warn!(target: "deputy::audit", user = %who, refusal = ?refusal, "interaction refused");
                return Ok(vec![Reply::private(match refusal {
                    Refusal::Unknown => UNKNOWN_INTERACTION,
                    Refusal::Gone => {
                        "That button or form has expired or was already used, so I did nothing \
                         with it. Ask again for a fresh one."
                    }
                    Refusal::NotYours => {
                        "That was offered to someone else: only they can use it. I did nothing \
                         with it."
                    }
                })]);
            }
        };
        let service = match &offer.what {
            Offered::LinkButton { service }
            | Offered::KeyForm { service }
            | Offered::Confirm { service, .. } => service,
        };
        let Some(pack) = self.packs.iter().find(|p| &p.service.name == service) else {
            return reply(format!(
                "{service} is no longer set up here; nothing was done."
            ));
        };
        let private = |replies: Vec<Reply>| {
            replies
                .into_iter()
                .map(|r| Reply {
                    visibility: Visibility::OnlyUser,
                    ..r
                })
                .collect()
        };
        match (offer.what, action) {
            // A click that cannot open the form gets the text way, not another button.
            (Offered::LinkButton { .. }, _) if !adapter.surfaces(from).forms => {
                Ok(vec![no_form(pack)])
            }
            (Offered::LinkButton { .. }, _) => self.offer_key(from, pack, adapter).await,
            (Offered::KeyForm { .. }, _) => {
                let Interaction::Form { value, .. } = interaction else {
                    return reply(UNKNOWN_INTERACTION);
                };
                let kind = self.kind(pack);
                Ok(private(
                    kind.store_key(&self.auth, from, pack, value).await?,
                ))
            }
            (Offered::Confirm { command, .. }, Action::No) => {
                tracing::info!(target: "deputy::audit", user = %who, service = %pack.service.name, command = %command, outcome = "cancelled", "confirmation");
                Ok(vec![Reply::private(format!(
                    "Cancelled: `{} {command}` was not run.",
                    pack.service.prefixes[0]
                ))])
            }
            (Offered::Confirm { command, words, .. }, _) => {
                let Some(command) = pack.commands.iter().find(|c| c.name == command) else {
                    return reply(format!(
                        "{} has no command `{command}` any more; nothing was run.",
                        pack.service.name
                    ));
                };
                // Permissions may have changed while the question waited.
                if let Some(refusal) = self.refuse(from, pack, command) {
                    return Ok(vec![refusal]);
                }
                let args = match command.bind(&words) {
                    Ok(a) => a,
                    Err(why) => return reply(format!("{why}; nothing was run.")),
                };
                tracing::info!(target: "deputy::audit", user = %who, service = %pack.service.name, command = %command.name, outcome = "confirmed", "confirmation");
                self.run_command(from, pack, command, args).await
            }
        }
    }

    /// `setkey` without a key: the private form at once where the adapter can open one now,
    /// else a private "Link your account" button that opens it, else how to send the key.
    async fn offer_key(&self, msg: &Message, pack: &Pack, adapter: &dyn Adapter) -> Handled {
        let s = &pack.service;
        let surfaces = adapter.surfaces(msg);
        let ttl = self.auth.config.flow_ttl_secs;
        if surfaces.forms {
            let what = Offered::KeyForm {
                service: s.name.clone(),
            };
            let token = offer::make(&self.brain, msg, what, ttl).await?;
            let form = SecretForm {
                id: offer::callback_id(&token, Action::Key),
                title: clip(&format!("Link {}", s.name), 24),
                label: clip(&format!("Your {} key", s.name), 45),
                hint: clip(s.auth.hint(), 100),
            };
            return Ok(vec![Reply {
                form: Some(Box::new(form)),
                ..no_form(pack)
            }]);
        }
        if surfaces.buttons {
            let what = Offered::LinkButton {
                service: s.name.clone(),
            };
            let token = offer::make(&self.brain, msg, what, ttl).await?;
            let button = Button::new(
                offer::callback_id(&token, Action::Link),
                "Link your account",
                ButtonStyle::Primary,
            );
            return Ok(vec![Reply::private(format!(
                "Press the button to link your {} account: a private form opens where you paste \
                 your key ({}). It never becomes a chat message.",
                s.name,
                s.auth.hint()
            ))
            .with_buttons(vec![button])]);
        }
        self.kind(pack).setkey(&self.auth, msg, pack, &[]).await
    }

    /// A `confirm = true` command: ask first, with Confirm / Cancel buttons, or a typed
    /// `yes` / `no` where the adapter has no buttons.
    async fn ask_confirm(
        &self,
        msg: &Message,
        pack: &Pack,
        command: &crate::pack::Command,
        words: &[String],
        adapter: &dyn Adapter,
    ) -> Handled {
        let what = Offered::Confirm {
            service: pack.service.name.clone(),
            command: command.name.clone(),
            words: words.to_vec(),
        };
        let ttl = self.confirm_ttl_secs;
        let token = offer::make(&self.brain, msg, what, ttl).await?;
        let asked = std::iter::once(pack.service.prefixes[0].as_str())
            .chain(std::iter::once(command.name.as_str()))
            .chain(words.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" ");
        let question = format!("Run `{asked}` as you? ({}.)", command.help);
        if adapter.surfaces(msg).buttons {
            let buttons = vec![
                Button::new(
                    offer::callback_id(&token, Action::Yes),
                    "Confirm",
                    ButtonStyle::Danger,
                ),
                Button::new(
                    offer::callback_id(&token, Action::No),
                    "Cancel",
                    ButtonStyle::Secondary,
                ),
            ];
            return Ok(vec![Reply::private(format!(
                "{question} Press Confirm within {ttl} s."
            ))
            .with_buttons(buttons)]);
        }
        offer::expect_typed(&self.brain, msg, &token, ttl).await?;
        reply(format!(
            "{question} Type `yes` to confirm or `no` to cancel, within {ttl} s."
        ))
    }
}

/// The answer to a button or form deputy did not offer.
const UNKNOWN_INTERACTION: &str = "I don't know that button or form, so I did nothing with it.";

/// A template context under construction: names to values.
type Ctx = std::collections::BTreeMap<String, Value>;

/// The context with `status`, `headers` and `body` once the upstream answered.
fn with_response(mut map: Ctx, response: Option<&crate::upstream::Response>) -> Value {
    if let Some(r) = response {
        map.insert("status".into(), Value::from(r.status));
        map.insert("headers".into(), Value::from_serialize(&r.headers));
        map.insert("body".into(), Value::from_serialize(&r.body));
    }
    Value::from(map)
}

/// `a.origin() == b.origin()` without building both origins (two host copies per call).
/// Only http(s) URLs have tuple origins; anything else falls back to the full comparison.
fn same_origin(a: &reqwest::Url, b: &reqwest::Url) -> bool {
    if !matches!(b.scheme(), "http" | "https") {
        return a.origin() == b.origin();
    }
    a.scheme() == b.scheme()
        && a.host() == b.host()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// The key form could not be opened: the way without it, only to the user.
fn no_form(pack: &Pack) -> Reply {
    let s = &pack.service;
    Reply::private(format!(
        "I could not open the form here. In a direct message to me, run `{} setkey <{}>`.",
        s.prefixes[0],
        s.auth.hint()
    ))
}

/// `text` ready to compare with lowercase ASCII through `eq_ignore_ascii_case`: ASCII text as
/// it is, with no copy; other text lowercased (`K`, the Kelvin sign, lowercases to `k`).
fn comparable(text: &str) -> std::borrow::Cow<'_, str> {
    if text.is_ascii() {
        text.into()
    } else {
        text.to_lowercase().into()
    }
}

/// A typed answer to a confirmation: `yes` or `no` (and their usual short forms).
fn typed_answer(text: &str) -> Option<Action> {
    // Every message is checked, so nearly all are compared without a lowercased copy.
    let word = comparable(text.trim().trim_end_matches(['.', '!']));
    let is = |w: &str| word.eq_ignore_ascii_case(w);
    if is("yes") || is("confirm") {
        Some(Action::Yes)
    } else if is("no") || is("cancel") {
        Some(Action::No)
    } else {
        None
    }
}

/// At most `max` characters (platform limits on titles and labels).
fn clip(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
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

/// `word` lowercased, without a copy when it is lowercase ASCII already, as nearly every
/// service and command word is.
fn lowercase(word: &str) -> Cow<'_, str> {
    if word
        .bytes()
        .all(|b| b.is_ascii() && !b.is_ascii_uppercase())
    {
        Cow::Borrowed(word)
    } else {
        Cow::Owned(word.to_lowercase())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowercase_agrees_with_to_lowercase() {
        for w in [
            "",
            "jenkins",
            "Jenkins",
            "JENKINS",
            "j2-x_y",
            "ünïcode",
            "ÜBER",
            "\u{212A}elvin",
            "\u{1C5}",
            "ΣΑΣ",
            "build",
        ] {
            assert_eq!(lowercase(w), w.to_lowercase(), "{w:?}");
        }
        assert!(matches!(lowercase("jenkins"), Cow::Borrowed(_)), "no copy");
    }

    #[test]
    fn same_origin_agrees_with_url_origins() {
        let urls = [
            "http://a.example/x",
            "http://a.example:80/y",
            "http://a.example:8080/x",
            "https://a.example/x",
            "https://a.example:443/z",
            "http://b.example/x",
            "http://A.EXAMPLE/x",
            "http://127.0.0.1/x",
            "http://[::1]/x",
            "http://127.1/x",
            "ftp://a.example/x",
            "file:///tmp/x",
            "data:text/plain,x",
            "http://user@a.example/x",
        ];
        for a in urls {
            for b in urls {
                let (ua, ub) = (
                    reqwest::Url::parse(a).unwrap(),
                    reqwest::Url::parse(b).unwrap(),
                );
                assert_eq!(
                    same_origin(&ua, &ub),
                    ua.origin() == ub.origin(),
                    "{a} vs {b}"
                );
            }
        }
    }

    #[test]
    fn closest_finds_typos_only() {
        let c = ["jenkins", "gitlab", "help"];
        assert_eq!(closest("jenkns", c.iter().copied()), Some("jenkins"));
        assert_eq!(closest("hlep", c.iter().copied()), Some("help"));
        assert_eq!(closest("weather", c.iter().copied()), None);
    }

    #[test]
    fn typed_answers_are_yes_or_no_and_nothing_else() {
        for yes in ["yes", "YES", " yes. ", "Yes!", "confirm"] {
            assert_eq!(typed_answer(yes), Some(Action::Yes), "{yes}");
        }
        for no in ["no", "No.", "cancel"] {
            assert_eq!(typed_answer(no), Some(Action::No), "{no}");
        }
        for other in ["yes please", "y", "nope", "jenkins build", ""] {
            assert_eq!(typed_answer(other), None, "{other}");
        }
    }

    /// The in-place comparison answers as lowercasing the whole text did.
    #[test]
    fn typed_answer_agrees_with_lowercasing() {
        let old = |text: &str| match text
            .trim()
            .trim_end_matches(['.', '!'])
            .to_lowercase()
            .as_str()
        {
            "yes" | "confirm" => Some(Action::Yes),
            "no" | "cancel" => Some(Action::No),
            _ => None,
        };
        let words = [
            "yes",
            "YeS",
            "confirm",
            "CONFIRM",
            "no",
            "nO",
            "cancel",
            "Cancel",
            "y",
            "nope",
            "yes please",
            "",
            " ",
            "!",
            "İ",
            "\u{212a}",
            "yes\u{301}",
            "ＹＥＳ",
            "nö",
        ];
        for w in words {
            for text in [
                w.to_string(),
                format!(" {w}. "),
                format!("{w}!"),
                format!("{w}!!."),
            ] {
                assert_eq!(typed_answer(&text), old(&text), "{text:?}");
            }
        }
    }
}
