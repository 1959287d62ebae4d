//! Validation: one pack's text to a [`Pack`], refusing everything an author can get wrong
//! (TOML, unknown keys, templates, argument specs, URLs) with the file and line.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::args::{ArgSpec, Arity};
use super::format::{AuthKind, Grant, PackFile, RequestDef, DEFAULT_REPLY};
use super::model::{Command, Pack, Request, Service, BUILTIN_WORDS};
use super::render::Templates;
use crate::config::{check_base_url, line_col, toml_message};

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

/// Parses and validates one pack's text; `file` names it in errors.
pub fn load_one(file: &Path, text: &str, templates: &mut Templates) -> Result<Pack, PackError> {
    let at = |offset: usize, message: String| PackError {
        file: file.to_owned(),
        line: line_col(text, offset).0,
        message,
    };
    let def: PackFile =
        toml::from_str(text).map_err(|e| at(e.span().map_or(0, |s| s.start), toml_message(&e)))?;
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
            allow: c.allow.clone(),
            confirm: c.confirm,
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
