//! OAuth 1.0a sign-in from chat (X/Twitter's PIN flow): `setupauth` gets a request token and
//! replies with the authorize link; `auth <PIN>` (or the browser coming back to deputy's
//! callback) exchanges it for the user's access token. The request token waits in the brain as
//! a sealed pending flow bound to the user, with an expiry and a count of wrong PINs.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::brain::{KeyPath, Owner};
use crate::message::{reply, Handled, Internal, Message, Reply};
use crate::pack::{AuthKind, Pack, ResponseKind};
use crate::secret::{Consumer, Secret};
use crate::upstream::{Auth, Call, CallError};

use super::context::AuthContext;
use super::conversation::Conversation;
use super::credential::{now_secs, Credential};
use super::pending::{self, flow_key, Wrong};
use super::replies;
use super::scheme::{AuthScheme, Callback, Rejected, Step};

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
fn consumer(pack: &Pack) -> Result<&Consumer, Reply> {
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
fn callback_url(cx: &AuthContext, pack: &Pack) -> String {
    match &cx.public_url {
        Some(base) => format!(
            "{}/oauth1/{}/callback",
            base.trim_end_matches('/'),
            pack.service.name
        ),
        None => "oob".into(),
    }
}

/// `setupauth`: a fresh request token and the link to authorize it, sent only to the user.
async fn setupauth(cx: &AuthContext, msg: &Message, pack: &Pack) -> Handled {
    Ok(vec![match start(cx, msg, pack).await? {
        Ok(link) => replies::sign_in(link, &pack.service.name),
        Err(reply) => reply,
    }])
}

/// Starts a flow and returns the text with the link, or the reply explaining why not.
async fn start(cx: &AuthContext, msg: &Message, pack: &Pack) -> Step<String> {
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
    let call = token_call(&request_url, ("oauth_callback", &callback_url(cx, pack)))?;
    let auth = Auth::OAuth1 {
        consumer,
        token: None,
    };
    let body = match cx
        .upstream
        .send(&msg.owner(), s.target(), "setupauth", call, auth)
        .await
    {
        Ok(r) => r.body,
        Err(e) => {
            return Ok(Err(Reply::new(format!(
                "I couldn't start a {} sign-in: {}",
                s.name,
                e.explain(&pack.service.name)
            ))))
        }
    };
    let Some((token, secret)) = token_pair(&body) else {
        return Ok(Err(Reply::new(format!(
            "{} answered the sign-in request without a token; try `{} setupauth` again later.",
            s.name, s.prefixes[0]
        ))));
    };
    let owner = msg.owner();
    // A new sign-in replaces any earlier one of this user.
    if let Some(old) = cx
        .brain
        .get::<PendingFlow>(&flow_key(&owner, &s.name))
        .await?
    {
        cx.brain
            .delete(&token_key(&s.name, &old.request_token))
            .await?;
    }
    let flow = PendingFlow {
        request_token: token.clone(),
        request_token_secret: Secret::new(secret),
        expires_at: pending::expiry(cx.config.flow_ttl_secs),
        attempts: 0,
        conversation: Conversation::of(msg),
    };
    cx.brain
        .put_expiring(&flow_key(&owner, &s.name), &flow, flow.expires_at)
        .await?;
    cx.brain
        .put_expiring(
            &token_key(&s.name, &token),
            &flow.conversation,
            flow.expires_at,
        )
        .await?;
    let mut link = reqwest::Url::parse(&authorize_url)
        .map_err(|e| anyhow::anyhow!("{}: authorize URL: {e}", s.name))?;
    link.query_pairs_mut().append_pair("oauth_token", &token);
    let minutes = cx.config.flow_ttl_secs.div_ceil(60);
    let next = if cx.public_url.is_some() {
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
async fn auth(cx: &AuthContext, msg: &Message, pack: &Pack, args: &[String]) -> Handled {
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
    let Some(flow) = cx
        .brain
        .get::<PendingFlow>(&flow_key(&owner, &s.name))
        .await?
    else {
        return reply(format!(
            "You have no {} sign-in waiting for a PIN. Start one with `{p} setupauth`.",
            s.name
        ));
    };
    Ok(vec![finish(cx, pack, flow, pin).await?.reply])
}

/// What finishing a flow led to.
struct Finished {
    linked: bool,
    reply: Reply,
}

/// Exchanges a flow's request token and verifier for the access token, counting wrong PINs.
/// Shared by `auth <PIN>` and the browser callback.
async fn finish(
    cx: &AuthContext,
    pack: &Pack,
    flow: PendingFlow,
    verifier: &str,
) -> Result<Finished, Internal> {
    let s = &pack.service;
    let p = &s.prefixes[0];
    let owner = flow.conversation.owner();
    let fail = |text: String| Finished {
        linked: false,
        reply: Reply::new(text),
    };
    if pending::expired(flow.expires_at) {
        forget(cx, &owner, &s.name, &flow.request_token).await?;
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
    let body = match cx
        .upstream
        .send(&owner, s.target(), "auth", call, auth)
        .await
    {
        Ok(r) => r.body,
        Err(CallError::Rejected(_)) => {
            let key = flow_key(&owner, &s.name);
            let counted =
                pending::count_wrong(&cx.brain, &key, flow.expires_at, cx.config.max_attempts);
            let left = match counted.await? {
                Wrong::LockedOut => {
                    forget(cx, &owner, &s.name, &flow.request_token).await?;
                    return Ok(fail(format!(
                        "That PIN was not accepted, and that was the last try: this sign-in is cancelled. Run `{p} setupauth` to start again."
                    )));
                }
                Wrong::Left(left) => left,
            };
            return Ok(fail(format!(
                "{} did not accept that PIN. Check it and try `{p} auth <PIN>` again ({}).",
                s.name,
                pending::tries_left(left)
            )));
        }
        Err(e) => {
            // Not the user's fault: the flow and its attempts are kept as they were.
            return Ok(fail(format!(
                "I couldn't finish the {} sign-in: {} Your sign-in is still waiting; try `{p} auth <PIN>` again.",
                s.name,
                e.explain(&pack.service.name)
            )));
        }
    };
    let Some(credential) = access_credential(&body) else {
        return Ok(fail(format!(
            "{} answered without an access token; try `{p} auth <PIN>` again.",
            s.name
        )));
    };
    let screen_name = match &credential {
        Credential::OAuth1 { screen_name, .. } => screen_name.clone(),
        _ => None,
    };
    // Stored (and flushed) before the flow is dropped and before the user is told.
    cx.store(&owner, &s.name, &credential).await?;
    forget(cx, &owner, &s.name, &flow.request_token).await?;
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

/// A string field of a token endpoint's form answer (read as a JSON object by the upstream).
fn field(body: &serde_json::Value, key: &str) -> Option<String> {
    body.get(key).and_then(|v| v.as_str()).map(str::to_string)
}

/// `oauth_token` and `oauth_token_secret` from a token endpoint's answer, if both are there.
pub fn token_pair(body: &serde_json::Value) -> Option<(String, String)> {
    Some((
        field(body, "oauth_token")?,
        field(body, "oauth_token_secret")?,
    ))
}

/// The credential an access-token answer links: the token pair, and the user's id and screen
/// name when the provider says them (X does).
pub fn access_credential(body: &serde_json::Value) -> Option<Credential> {
    let (token, token_secret) = token_pair(body)?;
    Some(Credential::OAuth1 {
        token: Secret::new(token),
        token_secret: Secret::new(token_secret),
        user_id: field(body, "user_id"),
        screen_name: field(body, "screen_name"),
        linked_at: now_secs(),
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
    cx: &AuthContext,
    owner: &Owner,
    service: &str,
    request_token: &str,
) -> anyhow::Result<()> {
    cx.brain.delete(&flow_key(owner, service)).await?;
    cx.brain.delete(&token_key(service, request_token)).await?;
    Ok(())
}

/// The browser came back to `/oauth1/<service>/callback`. Returns the page text and whether
/// it worked; the user is told in chat through their adapter.
async fn finish_callback(
    cx: &AuthContext,
    service: &str,
    request_token: &str,
    verifier: Option<&str>,
) -> Result<(bool, String), Internal> {
    let Some(pack) = cx.pack(service) else {
        return Ok((false, "Unknown service.".into()));
    };
    let Some(conversation) = cx
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
    let Some(flow) = cx
        .brain
        .get::<PendingFlow>(&flow_key(&owner, service))
        .await?
        .filter(|f| f.request_token == request_token)
    else {
        return Ok((false, "This sign-in was replaced by a newer one.".into()));
    };
    let to = conversation.message();
    let Some(verifier) = verifier else {
        forget(cx, &owner, service, request_token).await?;
        return Ok(replies::declined(&cx.outbox, &to, service).await);
    };
    let finished = finish(cx, pack, flow, verifier).await?;
    cx.outbox
        .notify(&to, Reply::private(finished.reply.text.clone()))
        .await;
    Ok((finished.linked, finished.reply.text))
}

/// `whoami` for OAuth 1.0a services without a pack `whoami` request.
fn linked_as(pack: &Pack, credential: &Credential) -> String {
    match credential {
        Credential::OAuth1 {
            screen_name: Some(n),
            ..
        } => format!("You are linked to {} as @{n}.", pack.service.name),
        _ => format!("You are linked to {}.", pack.service.name),
    }
}

/// `kind = "oauth1"`.
pub struct OAuth1;

#[async_trait::async_trait]
impl AuthScheme for OAuth1 {
    fn name(&self) -> &'static str {
        "oauth1"
    }

    fn handles(&self, kind: &AuthKind) -> bool {
        matches!(kind, AuthKind::OAuth1 { .. })
    }

    fn help(&self, pack: &Pack) -> String {
        let p = &pack.service.prefixes[0];
        format!(
            "Your account:\n\
             `{p} setupauth` — get a sign-in link (sent only to you)\n\
             `{p} auth <PIN>` — finish signing in with the PIN the page showed\n\
             `{p} whoami` — whether you are linked, and as whom\n\
             `{p} logout` — forget your authorization\n"
        )
    }

    fn link_first(&self, pack: &Pack) -> Reply {
        replies::link_first_signin(pack)
    }

    fn operator_env(&self, service: &str) -> Option<(String, String)> {
        Some((
            consumer_env(service, "KEY"),
            consumer_env(service, "SECRET"),
        ))
    }

    async fn setupauth(&self, cx: &AuthContext, msg: &Message, pack: &Pack) -> Handled {
        setupauth(cx, msg, pack).await
    }

    async fn auth(&self, cx: &AuthContext, msg: &Message, pack: &Pack, args: &[String]) -> Handled {
        auth(cx, msg, pack, args).await
    }

    /// Forgets the authorization and any sign-in in progress (with its token index).
    async fn logout(&self, cx: &AuthContext, msg: &Message, pack: &Pack) -> Handled {
        let s = &pack.service;
        let owner = msg.owner();
        let flow_key = flow_key(&owner, &s.name);
        if let Ok(Some(flow)) = cx.brain.get::<PendingFlow>(&flow_key).await {
            cx.brain
                .delete(&token_key(&s.name, &flow.request_token))
                .await?;
        }
        cx.brain.delete(&flow_key).await?;
        let existed = cx.forget(&owner, &s.name).await?;
        Ok(vec![replies::forgotten(pack, "authorization", existed)])
    }

    fn linked_as(&self, pack: &Pack, credential: &Credential) -> String {
        linked_as(pack, credential)
    }

    /// Signs the request with the operator's consumer and the user's token.
    fn apply<'a>(&self, pack: &'a Pack, credential: &'a Credential) -> Result<Auth<'a>, Reply> {
        let Credential::OAuth1 {
            token,
            token_secret,
            ..
        } = credential
        else {
            return Ok(Auth::Anonymous);
        };
        Ok(Auth::OAuth1 {
            consumer: consumer(pack)?,
            token: Some((token.expose(), token_secret.expose())),
        })
    }

    /// The stored token no longer works: offer a fresh sign-in in the same reply.
    async fn rejected(
        &self,
        cx: &AuthContext,
        msg: &Message,
        pack: &Pack,
        _credential: Option<&Credential>,
        status: u16,
        _retried: bool,
    ) -> Result<Rejected, Internal> {
        let why = format!(
            "{} rejected your authorization (HTTP {status}); it may have been revoked.",
            pack.service.name
        );
        Ok(Rejected::Reply(match start(cx, msg, pack).await? {
            Ok(link) => Reply::private(format!("{why} {link}")),
            Err(r) => Reply::new(format!("{why} {}", r.text)),
        }))
    }

    async fn callback(
        &self,
        cx: &AuthContext,
        service: &str,
        q: &HashMap<String, String>,
    ) -> Option<Result<Callback, Internal>> {
        // The provider sends `oauth_token` + `oauth_verifier`, or `denied=<token>` on "cancel".
        let (token, verifier) = match (
            q.get("oauth_token"),
            q.get("oauth_verifier"),
            q.get("denied"),
        ) {
            (Some(t), Some(v), _) => (t.as_str(), Some(v.as_str())),
            (_, _, Some(t)) => (t.as_str(), None),
            _ => {
                return Some(Ok(Callback::Failed(
                    "This is not a complete sign-in answer (oauth_token and oauth_verifier are missing).".into(),
                )))
            }
        };
        Some(finish_callback(cx, service, token, verifier).await.map(
            |(linked, text)| match linked {
                true => Callback::Done(format!("{text} You can close this tab.")),
                false => Callback::Failed(text),
            },
        ))
    }
}
