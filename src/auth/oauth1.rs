//! OAuth 1.0a sign-in from chat (X/Twitter's PIN flow): `setupauth` gets a request token and
//! replies with the authorize link; `auth <PIN>` (or the browser coming back to deputy's
//! callback) exchanges it for the user's access token. The request token waits in the brain as
//! a sealed pending flow bound to the user, with an expiry and a count of wrong PINs.

use serde::{Deserialize, Serialize};

use crate::brain::{KeyPath, Owner};
use crate::chat::{Message, Reply};
use crate::dispatch::{reply, Dispatcher, Handled};
use crate::pack::{AuthKind, Consumer, Pack, ResponseKind};
use crate::upstream::{Auth, Call, CallError};

use super::{now_secs, Credential, Secret};

/// Where to answer a user outside the message that asked (the browser callback).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Conversation {
    pub adapter: String,
    pub workspace: String,
    pub user: String,
    pub user_name: String,
    pub channel: String,
    pub direct: bool,
    #[serde(default)]
    pub thread: Option<String>,
}

impl Conversation {
    pub fn of(msg: &Message) -> Conversation {
        Conversation {
            adapter: msg.adapter.clone(),
            workspace: msg.workspace.clone(),
            user: msg.user.clone(),
            user_name: msg.user_name.clone(),
            channel: msg.channel.clone(),
            direct: msg.direct,
            thread: msg.thread.clone(),
        }
    }

    /// A message standing for this conversation, to address replies with.
    pub fn message(&self) -> Message {
        Message {
            adapter: self.adapter.clone(),
            workspace: self.workspace.clone(),
            user: self.user.clone(),
            user_name: self.user_name.clone(),
            channel: self.channel.clone(),
            id: String::new(),
            thread: self.thread.clone(),
            direct: self.direct,
            text: String::new(),
        }
    }

    pub fn owner(&self) -> Owner {
        Owner {
            adapter: self.adapter.clone(),
            workspace: self.workspace.clone(),
            user: self.user.clone(),
        }
    }
}

/// A started sign-in, sealed in the brain until it completes, expires or is locked out.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PendingFlow {
    pub request_token: String,
    pub request_token_secret: Secret,
    /// Unix seconds; at or after this the flow is expired.
    pub expires_at: u64,
    /// Wrong PINs so far.
    pub attempts: u32,
    pub conversation: Conversation,
}

/// The brain key of a user's pending flow for a service.
pub fn flow_key(owner: &Owner, service: &str) -> KeyPath {
    KeyPath::of(
        "flow",
        &[&owner.adapter, &owner.workspace, &owner.user, service],
    )
}

/// The brain key that finds a flow from its request token (the callback knows only that).
pub fn token_key(service: &str, request_token: &str) -> KeyPath {
    KeyPath::of("flowtoken", &[service, request_token])
}

fn endpoints(pack: &Pack) -> Option<(String, String, String)> {
    match &pack.service.auth {
        AuthKind::OAuth1 {
            request_token_url,
            authorize_url,
            access_token_url,
            ..
        } => Some((
            pack.service.auth_url(request_token_url),
            pack.service.auth_url(authorize_url),
            pack.service.auth_url(access_token_url),
        )),
        _ => None,
    }
}

/// The operator's consumer, or the reply saying it is missing.
pub fn consumer(pack: &Pack) -> Result<&Consumer, Reply> {
    pack.service.consumer.as_ref().ok_or_else(|| {
        Reply::new(format!(
            "{} is not set up on this deputy yet: the operator needs to set {} and {}.",
            pack.service.name,
            consumer_env(&pack.service.name, "KEY"),
            consumer_env(&pack.service.name, "SECRET"),
        ))
    })
}

/// `DEPUTY_TWITTER_CONSUMER_KEY` and friends.
pub fn consumer_env(service: &str, what: &str) -> String {
    format!(
        "DEPUTY_{}_CONSUMER_{what}",
        service.to_uppercase().replace('-', "_")
    )
}

/// The callback URL when deputy has a public URL, else `oob` (the PIN flow).
fn callback_url(d: &Dispatcher, pack: &Pack) -> String {
    match &d.public_url {
        Some(base) => format!(
            "{}/oauth1/{}/callback",
            base.trim_end_matches('/'),
            pack.service.name
        ),
        None => "oob".into(),
    }
}

/// `setupauth`: a fresh request token and the link to authorize it, sent only to the user.
pub async fn setupauth(d: &Dispatcher, msg: &Message, pack: &Pack) -> Handled {
    Ok(vec![match start(d, msg, pack).await? {
        Ok(link) => Reply::private(link),
        Err(reply) => reply,
    }])
}

/// Starts a flow and returns the text with the link, or the reply explaining why not.
pub async fn start(
    d: &Dispatcher,
    msg: &Message,
    pack: &Pack,
) -> Result<Result<String, Reply>, crate::dispatch::Internal> {
    let s = &pack.service;
    let Some((request_url, authorize_url, _)) = endpoints(pack) else {
        return Ok(Err(Reply::new(format!(
            "{} does not sign in with a link.",
            s.name
        ))));
    };
    let consumer = match consumer(pack) {
        Ok(c) => c,
        Err(r) => return Ok(Err(r)),
    };
    let call = token_call(&request_url, ("oauth_callback", &callback_url(d, pack)))?;
    let auth = Auth::OAuth1 {
        consumer,
        token: None,
    };
    let body = match d
        .upstream
        .send(&msg.owner(), s.target(), "setupauth", call, auth)
        .await
    {
        Ok(r) => r.body,
        Err(e) => {
            return Ok(Err(Reply::new(format!(
                "I couldn't start a {} sign-in: {}",
                s.name,
                d.explain_plain(pack, e)
            ))))
        }
    };
    let field = |k: &str| body.get(k).and_then(|v| v.as_str()).map(str::to_string);
    let (Some(token), Some(secret)) = (field("oauth_token"), field("oauth_token_secret")) else {
        return Ok(Err(Reply::new(format!(
            "{} answered the sign-in request without a token; try `{} setupauth` again later.",
            s.name, s.prefixes[0]
        ))));
    };
    let owner = msg.owner();
    // A new sign-in replaces any earlier one of this user.
    if let Some(old) = d
        .brain
        .get::<PendingFlow>(&flow_key(&owner, &s.name))
        .await?
    {
        d.brain
            .delete(&token_key(&s.name, &old.request_token))
            .await?;
    }
    let flow = PendingFlow {
        request_token: token.clone(),
        request_token_secret: Secret::new(secret),
        expires_at: now_secs() + d.auth.flow_ttl_secs,
        attempts: 0,
        conversation: Conversation::of(msg),
    };
    d.brain.put(&flow_key(&owner, &s.name), &flow).await?;
    d.brain
        .put(&token_key(&s.name, &token), &flow.conversation)
        .await?;
    let mut link = reqwest::Url::parse(&authorize_url)
        .map_err(|e| anyhow::anyhow!("{}: authorize URL: {e}", s.name))?;
    link.query_pairs_mut().append_pair("oauth_token", &token);
    let minutes = d.auth.flow_ttl_secs.div_ceil(60);
    let next = if d.public_url.is_some() {
        "and I'll tell you here when it worked".to_string()
    } else {
        format!(
            "then tell me the PIN it shows: `{} auth <PIN>`",
            s.prefixes[0]
        )
    };
    Ok(Ok(format!(
        "To link your {} account, open {link} , authorize deputy, {next}. The link works for {minutes} minute(s) and only for you.",
        s.name
    )))
}

/// `auth <PIN>`: finish the user's own pending flow.
pub async fn auth(d: &Dispatcher, msg: &Message, pack: &Pack, args: &[String]) -> Handled {
    let s = &pack.service;
    let p = &s.prefixes[0];
    let pin = match args {
        [pin]
            if !pin.is_empty()
                && pin.len() <= 64
                && pin.chars().all(|c| c.is_ascii_alphanumeric()) =>
        {
            pin
        }
        [] => {
            return reply(format!(
                "Send the PIN the sign-in page showed: `{p} auth <PIN>`"
            ))
        }
        _ => {
            return reply(format!(
            "That doesn't look like a PIN (letters and digits, no spaces). Usage: `{p} auth <PIN>`"
        ))
        }
    };
    let owner = msg.owner();
    let Some(flow) = d
        .brain
        .get::<PendingFlow>(&flow_key(&owner, &s.name))
        .await?
    else {
        return reply(format!(
            "You have no {} sign-in waiting for a PIN. Start one with `{p} setupauth`.",
            s.name
        ));
    };
    Ok(vec![finish(d, pack, flow, pin).await?.reply])
}

/// What finishing a flow led to.
pub struct Finished {
    pub linked: bool,
    pub reply: Reply,
}

/// Exchanges a flow's request token and verifier for the access token, counting wrong PINs.
/// Shared by `auth <PIN>` and the browser callback.
pub async fn finish(
    d: &Dispatcher,
    pack: &Pack,
    mut flow: PendingFlow,
    verifier: &str,
) -> Result<Finished, crate::dispatch::Internal> {
    let s = &pack.service;
    let p = &s.prefixes[0];
    let owner = flow.conversation.owner();
    let fail = |text: String| Finished {
        linked: false,
        reply: Reply::new(text),
    };
    if now_secs() >= flow.expires_at {
        forget(d, &owner, &s.name, &flow.request_token).await?;
        return Ok(fail(format!(
            "That sign-in link expired; run `{p} setupauth` for a new one."
        )));
    }
    let consumer = match consumer(pack) {
        Ok(c) => c,
        Err(reply) => {
            return Ok(Finished {
                linked: false,
                reply,
            })
        }
    };
    let (_, _, access_url) = endpoints(pack).expect("an oauth1 pack");
    let call = token_call(&access_url, ("oauth_verifier", verifier))?;
    let auth = Auth::OAuth1 {
        consumer,
        token: Some((&flow.request_token, flow.request_token_secret.expose())),
    };
    let body = match d
        .upstream
        .send(&owner, s.target(), "auth", call, auth)
        .await
    {
        Ok(r) => r.body,
        Err(CallError::Rejected(_)) => {
            flow.attempts += 1;
            if flow.attempts >= d.auth.max_attempts {
                forget(d, &owner, &s.name, &flow.request_token).await?;
                return Ok(fail(format!(
                    "That PIN was not accepted, and that was the last try: this sign-in is cancelled. Run `{p} setupauth` to start again."
                )));
            }
            let left = d.auth.max_attempts - flow.attempts;
            d.brain.put(&flow_key(&owner, &s.name), &flow).await?;
            return Ok(fail(format!(
                "{} did not accept that PIN. Check it and try `{p} auth <PIN>` again ({left} tr{} left).",
                s.name,
                if left == 1 { "y" } else { "ies" }
            )));
        }
        Err(e) => {
            // Not the user's fault: the flow and its attempts are kept as they were.
            return Ok(fail(format!(
                "I couldn't finish the {} sign-in: {} Your sign-in is still waiting; try `{p} auth <PIN>` again.",
                s.name,
                d.explain_plain(pack, e)
            )));
        }
    };
    let field = |k: &str| body.get(k).and_then(|v| v.as_str()).map(str::to_string);
    let (Some(token), Some(token_secret)) = (field("oauth_token"), field("oauth_token_secret"))
    else {
        return Ok(fail(format!(
            "{} answered without an access token; try `{p} auth <PIN>` again.",
            s.name
        )));
    };
    let screen_name = field("screen_name");
    let credential = Credential::OAuth1 {
        token: Secret::new(token),
        token_secret: Secret::new(token_secret),
        user_id: field("user_id"),
        screen_name: screen_name.clone(),
        linked_at: now_secs(),
    };
    // Stored (and flushed) before the flow is dropped and before the user is told.
    d.brain
        .put(&KeyPath::credential(&owner, &s.name), &credential)
        .await?;
    forget(d, &owner, &s.name, &flow.request_token).await?;
    tracing::info!(adapter = %owner.adapter, user = %owner.user, service = %s.name, "oauth1 account linked");
    let who = screen_name.map_or_else(|| "your account".to_string(), |n| format!("@{n}"));
    Ok(Finished {
        linked: true,
        reply: Reply::new(format!(
            "Linked to {who} on {}. Commands now run as you; `{p} logout` unlinks.",
            s.name
        )),
    })
}

/// A POST to a token endpoint. The `oauth_*` parameter rides in the query, from where
/// reqwest-oauth1 moves it into the signed Authorization header.
fn token_call(endpoint: &str, param: (&str, &str)) -> anyhow::Result<Call> {
    let mut url = reqwest::Url::parse(endpoint)
        .map_err(|e| anyhow::anyhow!("OAuth endpoint {endpoint:?}: {e}"))?;
    url.query_pairs_mut().append_pair(param.0, param.1);
    Ok(Call {
        method: reqwest::Method::POST,
        url,
        headers: vec![],
        body: None,
        response: ResponseKind::Form,
    })
}

async fn forget(
    d: &Dispatcher,
    owner: &Owner,
    service: &str,
    request_token: &str,
) -> anyhow::Result<()> {
    d.brain.delete(&flow_key(owner, service)).await?;
    d.brain.delete(&token_key(service, request_token)).await?;
    Ok(())
}

/// The browser came back to `/oauth1/<service>/callback`. Returns the page text and whether
/// it worked; the user is told in chat through their adapter.
pub async fn callback(
    d: &Dispatcher,
    service: &str,
    request_token: &str,
    verifier: Option<&str>,
) -> Result<(bool, String), crate::dispatch::Internal> {
    let Some(pack) = d.packs.iter().find(|p| p.service.name == service) else {
        return Ok((false, "Unknown service.".into()));
    };
    let Some(conversation) = d
        .brain
        .get::<Conversation>(&token_key(service, request_token))
        .await?
    else {
        return Ok((
            false,
            "This sign-in link is unknown or already used. Start again from chat with setupauth."
                .into(),
        ));
    };
    let owner = conversation.owner();
    let Some(flow) = d
        .brain
        .get::<PendingFlow>(&flow_key(&owner, service))
        .await?
        .filter(|f| f.request_token == request_token)
    else {
        return Ok((false, "This sign-in was replaced by a newer one.".into()));
    };
    let to = conversation.message();
    let Some(verifier) = verifier else {
        forget(d, &owner, service, request_token).await?;
        d.notify(
            &to,
            Reply::private(format!(
                "You declined the {service} sign-in; nothing was linked."
            )),
        )
        .await;
        return Ok((false, "You declined; nothing was linked.".into()));
    };
    let finished = finish(d, pack, flow, verifier).await?;
    d.notify(&to, Reply::private(finished.reply.text.clone()))
        .await;
    Ok((finished.linked, finished.reply.text))
}

/// `whoami` for OAuth 1.0a services without a pack `whoami` request.
pub fn linked_as(pack: &Pack, credential: &Credential) -> String {
    match credential {
        Credential::OAuth1 {
            screen_name: Some(n),
            ..
        } => format!("You are linked to {} as @{n}.", pack.service.name),
        _ => format!("You are linked to {}.", pack.service.name),
    }
}
