//! Command packs: `commands/<service>.toml` declares one service and its commands. Loading
//! validates everything a pack author can get wrong (TOML, unknown keys, templates, argument
//! specs, URLs, clashing prefixes) and names the file and line.

pub mod render;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::config::{check_base_url, line_col, Config};
pub use render::Templates;

/// A loaded, validated pack.
#[derive(Debug, Clone)]
pub struct Pack {
    pub file: PathBuf,
    pub service: Service,
    pub commands: Vec<Command>,
}

#[derive(Debug, Clone)]
pub struct Service {
    pub name: String,
    pub prefixes: Vec<String>,
    pub summary: String,
    pub base_url: reqwest::Url,
    pub timeout: Option<Duration>,
    pub auth: AuthKind,
    /// Where OAuth endpoints live (the pack's `auth.base_url`, else `base_url`).
    pub auth_base_url: reqwest::Url,
    /// The operator's OAuth consumer (client) credentials, from the environment or config.
    pub consumer: Option<Consumer>,
    pub whoami: Option<Request>,
}

/// An OAuth consumer key and secret, supplied by the operator, never by a pack.
#[derive(Debug, Clone)]
pub struct Consumer {
    pub key: String,
    pub secret: crate::auth::Secret,
}

impl Service {
    /// An auth endpoint: a path joined to `auth_base_url`, or an absolute URL as written.
    pub fn auth_url(&self, path_or_url: &str) -> String {
        if path_or_url.starts_with("http://") || path_or_url.starts_with("https://") {
            path_or_url.to_string()
        } else {
            format!(
                "{}{}",
                self.auth_base_url.as_str().trim_end_matches('/'),
                path_or_url
            )
        }
    }
}

/// How a service's users link their account.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum AuthKind {
    /// No credential: commands run anonymously.
    None,
    /// HTTP Basic with a `user:token` secret.
    Basic { hint: Option<String> },
    /// `Authorization: Bearer <secret>`.
    Bearer { hint: Option<String> },
    /// A custom header, such as `PRIVATE-TOKEN: <secret>`, with an optional value prefix.
    Header {
        header: String,
        #[serde(default)]
        prefix: String,
        hint: Option<String>,
    },
    /// OAuth 1.0a with the PIN (`oob`) flow, or a browser callback when deputy has a public
    /// URL. Endpoint paths are relative to the service's `auth_base_url` (default `base_url`).
    #[serde(rename = "oauth1")]
    OAuth1 {
        #[serde(default = "default_request_token_url")]
        request_token_url: String,
        #[serde(default = "default_authorize_url")]
        authorize_url: String,
        #[serde(default = "default_access_token_url")]
        access_token_url: String,
        /// Where the endpoints live when not on `base_url` (operators override it).
        base_url: Option<String>,
    },
    /// OAuth 2.0: the device flow or the browser flow with PKCE and a magic code.
    #[serde(rename = "oauth2")]
    OAuth2(OAuth2Def),
}

/// Which OAuth 2.0 grant a service links with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Grant {
    /// RFC 8628: the user enters a short code on the provider's page; deputy polls.
    Device,
    /// Browser redirect with PKCE, then a magic code typed in chat.
    AuthorizationCode,
}

/// How deputy authenticates itself (the client) at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// HTTP Basic with the client id and secret (RFC 6749 2.3.1, the default).
    #[default]
    Basic,
    /// `client_id` and `client_secret` in the form body (GitHub's way).
    Body,
}

/// An OAuth 2.0 service's endpoints and scopes, as a pack declares them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuth2Def {
    pub grant: Grant,
    /// Where the endpoints live when not on `base_url` (GitHub: github.com vs api.github.com).
    pub base_url: Option<String>,
    pub device_authorization_url: Option<String>,
    pub authorize_url: Option<String>,
    pub token_url: String,
    /// RFC 7009; without it `logout` only forgets the token.
    pub revocation_url: Option<String>,
    /// Scopes every sign-in asks for, besides those commands declare.
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub client_auth: ClientAuth,
}

fn default_request_token_url() -> String {
    "/oauth/request_token".into()
}
fn default_authorize_url() -> String {
    "/oauth/authorize".into()
}
fn default_access_token_url() -> String {
    "/oauth/access_token".into()
}

impl AuthKind {
    /// Whether the user pastes a key with `setkey`.
    pub fn is_api_key(&self) -> bool {
        matches!(
            self,
            AuthKind::Basic { .. } | AuthKind::Bearer { .. } | AuthKind::Header { .. }
        )
    }

    /// Whether the user signs in with a link (OAuth) rather than pasting a key.
    pub fn is_oauth(&self) -> bool {
        matches!(self, AuthKind::OAuth1 { .. } | AuthKind::OAuth2(_))
    }

    /// Whether commands need the user's credential at all.
    pub fn needs_credential(&self) -> bool {
        !matches!(self, AuthKind::None)
    }

    /// What to paste after `setkey`, as the pack author described it.
    pub fn hint(&self) -> &str {
        match self {
            AuthKind::None | AuthKind::OAuth1 { .. } | AuthKind::OAuth2(_) => "",
            AuthKind::Basic { hint } => hint.as_deref().unwrap_or("user:token"),
            AuthKind::Bearer { hint } | AuthKind::Header { hint, .. } => {
                hint.as_deref().unwrap_or("your API token")
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct Command {
    pub name: String,
    pub usage: String,
    pub help: String,
    pub args: Vec<ArgSpec>,
    /// OAuth 2.0 scopes the user's token must carry.
    pub scopes: Vec<String>,
    pub request: Request,
}

/// One HTTP call and its reply, as template names in [`Templates`].
#[derive(Debug, Clone)]
pub struct Request {
    pub method: reqwest::Method,
    pub path: String,
    pub query: Option<String>,
    pub headers: Vec<(String, String)>,
    pub body: Option<String>,
    pub content_type: String,
    pub response: ResponseKind,
    pub reply: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ResponseKind {
    /// The body is JSON (`body.field` in the reply); an empty body is allowed.
    #[default]
    Json,
    /// The body is text (`body` is a string).
    Text,
    /// The body is `application/x-www-form-urlencoded` (OAuth 1.0a token replies).
    Form,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgSpec {
    pub name: String,
    pub arity: Arity,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arity {
    /// `job`: exactly one word.
    One,
    /// `job?`: one word or none.
    Optional,
    /// `params*`: the remaining words as a list, possibly empty.
    Many,
    /// `ids+`: the remaining words as a list, at least one.
    AtLeastOne,
    /// `text...`: the remaining words joined by spaces, at least one.
    Rest,
}

impl ArgSpec {
    fn parse(s: &str) -> Result<ArgSpec, String> {
        let (name, arity) = if let Some(n) = s.strip_suffix("...") {
            (n, Arity::Rest)
        } else if let Some(n) = s.strip_suffix('?') {
            (n, Arity::Optional)
        } else if let Some(n) = s.strip_suffix('*') {
            (n, Arity::Many)
        } else if let Some(n) = s.strip_suffix('+') {
            (n, Arity::AtLeastOne)
        } else {
            (s, Arity::One)
        };
        let ok = !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !name.starts_with(|c: char| c.is_ascii_digit());
        if !ok || RESERVED_NAMES.contains(&name) {
            return Err(format!(
                "argument {s:?}: a name is letters, digits and _ (not one of {RESERVED_NAMES:?}), \
                 followed by nothing, ?, *, + or ..."
            ));
        }
        Ok(ArgSpec {
            name: name.to_string(),
            arity,
        })
    }

    fn usage(&self) -> String {
        match self.arity {
            Arity::One => format!("<{}>", self.name),
            Arity::Optional => format!("[{}]", self.name),
            Arity::Many => format!("[{}...]", self.name),
            Arity::AtLeastOne | Arity::Rest => format!("<{}...>", self.name),
        }
    }
}

/// Names the templates provide themselves.
const RESERVED_NAMES: &[&str] = &["user", "service", "body", "headers", "status"];
/// Words every service answers to before its pack's commands.
pub const BUILTIN_WORDS: &[&str] = &["setupauth", "auth", "setkey", "logout", "whoami", "help"];

/// The parsed arguments of one command, by name.
pub type Args = BTreeMap<String, minijinja::Value>;

impl Command {
    /// Matches words against the argument specs.
    pub fn bind(&self, words: &[String]) -> Result<Args, String> {
        let mut args = Args::new();
        let mut i = 0;
        for spec in &self.args {
            let rest = &words[i.min(words.len())..];
            let value = match spec.arity {
                Arity::One => {
                    let w = rest
                        .first()
                        .ok_or_else(|| format!("missing <{}>", spec.name))?;
                    i += 1;
                    minijinja::Value::from(w.as_str())
                }
                Arity::Optional => match rest.first() {
                    Some(w) => {
                        i += 1;
                        minijinja::Value::from(w.as_str())
                    }
                    None => minijinja::Value::from(()),
                },
                Arity::Many | Arity::AtLeastOne => {
                    if rest.is_empty() && spec.arity == Arity::AtLeastOne {
                        return Err(format!("missing <{}...>", spec.name));
                    }
                    i = words.len();
                    minijinja::Value::from(rest.to_vec())
                }
                Arity::Rest => {
                    if rest.is_empty() {
                        return Err(format!("missing <{}...>", spec.name));
                    }
                    i = words.len();
                    minijinja::Value::from(rest.join(" "))
                }
            };
            args.insert(spec.name.clone(), value);
        }
        if i < words.len() {
            return Err(format!("unexpected {:?}", words[i]));
        }
        Ok(args)
    }
}

/// A pack problem, located (line 0: the whole file).
#[derive(Debug)]
pub struct PackError {
    pub file: PathBuf,
    pub line: usize,
    pub message: String,
}

impl std::error::Error for PackError {}

impl std::fmt::Display for PackError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            0 => write!(f, "{}: {}", self.file.display(), self.message),
            line => write!(f, "{}:{line}: {}", self.file.display(), self.message),
        }
    }
}

// ---- the TOML shape ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PackFile {
    service: ServiceDef,
    #[serde(default)]
    command: Vec<Spanned<CommandDef>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceDef {
    name: Spanned<String>,
    prefixes: Spanned<Vec<String>>,
    #[serde(default)]
    summary: String,
    base_url: Spanned<String>,
    timeout_secs: Option<u64>,
    #[serde(default = "no_auth")]
    auth: AuthKind,
    whoami: Option<Spanned<RequestDef>>,
}

fn no_auth() -> AuthKind {
    AuthKind::None
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestDef {
    #[serde(default = "get")]
    method: Spanned<String>,
    path: Spanned<String>,
    query: Option<Spanned<String>>,
    #[serde(default)]
    headers: BTreeMap<String, Spanned<String>>,
    body: Option<Spanned<String>>,
    content_type: Option<String>,
    #[serde(default)]
    response: ResponseKind,
    reply: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CommandDef {
    name: String,
    help: String,
    usage: Option<String>,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default = "get")]
    method: Spanned<String>,
    path: Spanned<String>,
    query: Option<Spanned<String>>,
    #[serde(default)]
    headers: BTreeMap<String, Spanned<String>>,
    body: Option<Spanned<String>>,
    content_type: Option<String>,
    #[serde(default)]
    response: ResponseKind,
    reply: Option<Spanned<String>>,
}

fn get() -> Spanned<String> {
    Spanned::new(0..0, "GET".into())
}

impl CommandDef {
    fn request(&self) -> RequestDef {
        RequestDef {
            method: self.method.clone(),
            path: self.path.clone(),
            query: self.query.clone(),
            headers: self.headers.clone(),
            body: self.body.clone(),
            content_type: self.content_type.clone(),
            response: self.response,
            reply: self.reply.clone(),
        }
    }
}

const DEFAULT_REPLY: &str = "Done (HTTP {{ status }}).";

/// Loads every `*.toml` in the operator's packs folder, applies the operator's overrides, and
/// compiles the templates. Disabled packs are still validated (a typo should not wait until
/// the day the pack is switched on).
pub fn load_all(config: &Config) -> Result<(Vec<Pack>, Templates), Vec<PackError>> {
    let dir = config.packs_dir();
    let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect(),
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

/// Parses and validates one pack's text; `file` names it in errors.
pub fn load_one(file: &Path, text: &str, templates: &mut Templates) -> Result<Pack, PackError> {
    let at = |offset: usize, message: String| PackError {
        file: file.to_owned(),
        line: line_col(text, offset).0,
        message,
    };
    let def: PackFile = toml::from_str(text).map_err(|e| {
        at(
            e.span().map_or(0, |s| s.start),
            e.message().trim().to_string(),
        )
    })?;
    let s = &def.service;
    let name = s.name.get_ref().trim().to_string();
    if !is_word(&name) {
        return Err(at(
            s.name.span().start,
            "service name must be one lowercase word (letters, digits, - or _)".into(),
        ));
    }
    let mut prefixes = Vec::new();
    for p in s.prefixes.get_ref() {
        if !is_word(p) || BUILTIN_WORDS.contains(&p.as_str()) {
            return Err(at(
                s.prefixes.span().start,
                format!("prefix {p:?} must be one lowercase word and not a built-in ({BUILTIN_WORDS:?})"),
            ));
        }
        prefixes.push(p.clone());
    }
    if prefixes.is_empty() {
        prefixes.push(name.clone());
    }
    let base_url =
        check_base_url(s.base_url.get_ref()).map_err(|m| at(s.base_url.span().start, m))?;
    if let AuthKind::Header { header, .. } = &s.auth {
        if reqwest::header::HeaderName::from_bytes(header.as_bytes()).is_err() {
            return Err(at(
                0,
                format!("auth header {header:?} is not a valid header name"),
            ));
        }
    }
    let auth_base_url = match &s.auth {
        AuthKind::OAuth1 {
            base_url: auth_base,
            request_token_url,
            authorize_url,
            access_token_url,
        } => {
            for u in [request_token_url, authorize_url, access_token_url] {
                let ok = u.starts_with('/') || check_base_url(u).is_ok();
                if !ok {
                    return Err(at(
                        0,
                        format!(
                            "auth endpoint {u:?} must be a path starting with / or an http(s) URL"
                        ),
                    ));
                }
            }
            match auth_base {
                Some(u) => check_base_url(u).map_err(|m| at(0, format!("auth base_url: {m}")))?,
                None => base_url.clone(),
            }
        }
        AuthKind::OAuth2(o) => {
            let needed = match o.grant {
                Grant::Device => ("device_authorization_url", &o.device_authorization_url),
                Grant::AuthorizationCode => ("authorize_url", &o.authorize_url),
            };
            if needed.1.is_none() {
                return Err(at(
                    0,
                    format!("oauth2 grant {:?} needs auth.{}", o.grant, needed.0),
                ));
            }
            let urls = [
                Some(&o.token_url),
                o.device_authorization_url.as_ref(),
                o.authorize_url.as_ref(),
                o.revocation_url.as_ref(),
            ];
            for u in urls.into_iter().flatten() {
                if !(u.starts_with('/') || check_base_url(u).is_ok()) {
                    return Err(at(
                        0,
                        format!(
                            "auth endpoint {u:?} must be a path starting with / or an http(s) URL"
                        ),
                    ));
                }
            }
            match &o.base_url {
                Some(u) => check_base_url(u).map_err(|m| at(0, format!("auth base_url: {m}")))?,
                None => base_url.clone(),
            }
        }
        _ => base_url.clone(),
    };
    let whoami = match &s.whoami {
        Some(w) => Some(compile_request(
            &format!("{name}/whoami"),
            w.get_ref(),
            &[],
            templates,
            &at,
        )?),
        None => None,
    };

    let mut commands: Vec<Command> = Vec::new();
    for c in &def.command {
        let start = c.span().start;
        let c = c.get_ref();
        let cname = c.name.trim().to_lowercase();
        if !is_word(&cname) || BUILTIN_WORDS.contains(&cname.as_str()) {
            return Err(at(
                start,
                format!("command name {:?} must be one lowercase word and not a built-in ({BUILTIN_WORDS:?})", c.name),
            ));
        }
        if commands.iter().any(|o| o.name == cname) {
            return Err(at(start, format!("command {cname:?} is declared twice")));
        }
        let mut args = Vec::new();
        for (i, a) in c.args.iter().enumerate() {
            let spec =
                ArgSpec::parse(a).map_err(|m| at(start, format!("command {cname:?}: {m}")))?;
            let rest = matches!(spec.arity, Arity::Many | Arity::AtLeastOne | Arity::Rest);
            if rest && i + 1 != c.args.len() {
                return Err(at(
                    start,
                    format!(
                        "command {cname:?}: {a:?} takes the remaining words, so it must come last"
                    ),
                ));
            }
            if args.iter().any(|o: &ArgSpec| o.name == spec.name) {
                return Err(at(
                    start,
                    format!("command {cname:?}: argument {a:?} is declared twice"),
                ));
            }
            args.push(spec);
        }
        if matches!(s.auth, AuthKind::OAuth1 { .. })
            && c.content_type
                .as_deref()
                .is_some_and(|t| t.contains("x-www-form-urlencoded"))
        {
            // reqwest-oauth1 signs only the query when a URL has one and skips bodies set
            // directly: a form body would be sent unsigned and rejected by the provider.
            return Err(at(
                start,
                format!("command {cname:?}: OAuth 1.0a commands cannot send a form body; put the parameters in `query`"),
            ));
        }
        let arg_names: Vec<&str> = args.iter().map(|a| a.name.as_str()).collect();
        let request = compile_request(
            &format!("{name}/{cname}"),
            &c.request(),
            &arg_names,
            templates,
            &at,
        )?;
        let usage = c.usage.clone().unwrap_or_else(|| {
            std::iter::once(cname.clone())
                .chain(args.iter().map(ArgSpec::usage))
                .collect::<Vec<_>>()
                .join(" ")
        });
        if !c.scopes.is_empty() && !matches!(s.auth, AuthKind::OAuth2(_)) {
            return Err(at(
                start,
                format!("command {cname:?}: `scopes` only applies to oauth2 services"),
            ));
        }
        commands.push(Command {
            name: cname,
            usage,
            help: c.help.trim().to_string(),
            args,
            scopes: c.scopes.clone(),
            request,
        });
    }

    Ok(Pack {
        file: file.to_owned(),
        service: Service {
            name,
            prefixes,
            summary: s.summary.trim().to_string(),
            base_url,
            timeout: s.timeout_secs.map(Duration::from_secs),
            auth: s.auth.clone(),
            auth_base_url,
            consumer: None,
            whoami,
        },
        commands,
    })
}

fn compile_request(
    id: &str,
    r: &RequestDef,
    args: &[&str],
    templates: &mut Templates,
    at: &dyn Fn(usize, String) -> PackError,
) -> Result<Request, PackError> {
    let method = reqwest::Method::from_bytes(r.method.get_ref().to_uppercase().as_bytes())
        .ok()
        .filter(|m| {
            [
                reqwest::Method::GET,
                reqwest::Method::POST,
                reqwest::Method::PUT,
                reqwest::Method::PATCH,
                reqwest::Method::DELETE,
            ]
            .contains(m)
        })
        .ok_or_else(|| {
            at(
                r.method.span().start,
                format!(
                    "{id}: method {:?} must be GET, POST, PUT, PATCH or DELETE",
                    r.method.get_ref()
                ),
            )
        })?;
    if !r.path.get_ref().starts_with('/') {
        return Err(at(
            r.path.span().start,
            format!("{id}: path must start with / (it is appended to the service's base_url)"),
        ));
    }
    // Request templates may use the arguments, `user` and `service`; anything else is a typo.
    let mut allowed: HashSet<&str> = args.iter().copied().collect();
    allowed.extend(["user", "service"]);
    let mut add = |part: &str, src: &Spanned<String>, allowed: Option<&HashSet<&str>>| {
        let name = format!("{id}/{part}");
        templates
            .add(&name, src.get_ref(), allowed)
            .map_err(|(line, m)| {
                let mut e = at(src.span().start, format!("{id}: {part} template: {m}"));
                e.line += line.saturating_sub(1);
                e
            })?;
        Ok::<String, PackError>(name)
    };
    let path = add("path", &r.path, Some(&allowed))?;
    let query = match &r.query {
        Some(q) => Some(add("query", q, Some(&allowed))?),
        None => None,
    };
    let mut headers = Vec::new();
    for (h, v) in &r.headers {
        if reqwest::header::HeaderName::from_bytes(h.as_bytes()).is_err() {
            return Err(at(
                v.span().start,
                format!("{id}: {h:?} is not a header name"),
            ));
        }
        if h.eq_ignore_ascii_case("authorization") {
            return Err(at(
                v.span().start,
                format!(
                    "{id}: the Authorization header comes from the user's credential, not the pack"
                ),
            ));
        }
        headers.push((h.clone(), add(&format!("header {h}"), v, Some(&allowed))?));
    }
    let body = match &r.body {
        Some(b) => Some(add("body", b, Some(&allowed))?),
        None => None,
    };
    let reply_src = r
        .reply
        .clone()
        .unwrap_or_else(|| Spanned::new(0..0, DEFAULT_REPLY.to_string()));
    let reply = add("reply", &reply_src, None)?;
    Ok(Request {
        method,
        path,
        query,
        headers,
        body,
        content_type: r
            .content_type
            .clone()
            .unwrap_or_else(|| "application/json".into()),
        response: r.response,
        reply,
    })
}

fn is_word(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[service]
name = "jenkins"
prefixes = ["jenkins", "j"]
summary = "Jenkins"
base_url = "https://jenkins.example.com"
auth = { kind = "basic", hint = "user:token" }

[[command]]
name = "build"
help = "Start a build"
args = ["job", "params*"]
method = "POST"
path = "/job/{{ job | urlencode }}/buildWithParameters"
query = "{{ params | join('&') }}"
reply = "Started {{ job }}"
"#;

    fn load(text: &str) -> Result<Pack, PackError> {
        load_one(Path::new("commands/x.toml"), text, &mut Templates::new())
    }

    #[test]
    fn good_pack_loads_with_generated_usage() {
        let p = load(GOOD).unwrap();
        assert_eq!(p.service.prefixes, ["jenkins", "j"]);
        assert_eq!(p.commands[0].usage, "build <job> [params...]");
        assert_eq!(p.commands[0].request.method, reqwest::Method::POST);
    }

    #[test]
    fn errors_name_file_and_line() {
        let cases = [
            (
                GOOD.replace("help = \"Start a build\"", "help = \"Start\"\nhlep = 1"),
                12,
                "hlep",
            ),
            (
                GOOD.replace("{{ job | urlencode }}", "{{ job | urlencode"),
                14,
                "path template",
            ),
            (
                GOOD.replace("{{ params | join('&') }}", "{{ parms }}"),
                15,
                "parms",
            ),
            (
                GOOD.replace("\"job\", \"params*\"", "\"params*\", \"job\""),
                9,
                "must come last",
            ),
            (
                GOOD.replace("method = \"POST\"", "method = \"FETCH\""),
                13,
                "method",
            ),
            (
                GOOD.replace("https://jenkins.example.com", "jenkins.example.com"),
                6,
                "not a URL",
            ),
            (
                GOOD.replace("name = \"build\"", "name = \"setkey\""),
                9,
                "built-in",
            ),
            (GOOD.replace("/job/", "job/"), 14, "must start with /"),
            (
                format!("{GOOD}\n[[command]]\nname = \"build\"\nhelp = \"x\"\npath = \"/\"\n"),
                18,
                "twice",
            ),
        ];
        for (text, line, needle) in cases {
            let e = load(&text).unwrap_err();
            let s = e.to_string();
            assert!(s.starts_with(&format!("commands/x.toml:{line}:")), "{s}");
            assert!(s.contains(needle), "{s}");
        }
    }

    #[test]
    fn oauth1_packs_refuse_form_bodies() {
        let pack = r#"
[service]
name = "x"
prefixes = ["x"]
base_url = "https://api.example.com"
auth = { kind = "oauth1" }

[[command]]
name = "post"
help = "x"
method = "POST"
path = "/p"
query = "a=1"
body = "b=2"
content_type = "application/x-www-form-urlencoded"
"#;
        let e = load(pack).unwrap_err().to_string();
        assert!(e.starts_with("commands/x.toml:8:"), "{e}");
        assert!(e.contains("cannot send a form body"), "{e}");
        let ok = load(&pack.replace("content_type = \"application/x-www-form-urlencoded\"\n", ""))
            .unwrap();
        assert_eq!(
            ok.service.auth_url("/oauth/request_token"),
            "https://api.example.com/oauth/request_token"
        );
    }

    #[test]
    fn binding_arguments() {
        let p = load(GOOD).unwrap();
        let c = &p.commands[0];
        let w = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
        let a = c.bind(&w("deploy a=1 b=2")).unwrap();
        assert_eq!(a["job"].as_str(), Some("deploy"));
        assert_eq!(a["params"].len(), Some(2));
        assert_eq!(c.bind(&[]).unwrap_err(), "missing <job>");
        let mut rest = c.clone();
        rest.args = vec![ArgSpec::parse("text...").unwrap()];
        assert_eq!(
            rest.bind(&w("hello big world")).unwrap()["text"].as_str(),
            Some("hello big world")
        );
        rest.args = vec![ArgSpec::parse("x").unwrap()];
        assert_eq!(rest.bind(&w("a b")).unwrap_err(), "unexpected \"b\"");
    }
}
