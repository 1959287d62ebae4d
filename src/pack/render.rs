//! Pack templates (minijinja): request parts rendered from the arguments, replies rendered
//! from the upstream's JSON. Autoescaping is off: the output is chat text and URL parts the
//! author encodes explicitly (`urlencode`).

use std::collections::HashSet;

use minijinja::{Environment, Value};

/// Longest reply a template may produce before it is trimmed.
pub const MAX_REPLY_CHARS: usize = 3500;

pub struct Templates {
    env: Environment<'static>,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Templates")
    }
}

impl Default for Templates {
    fn default() -> Self {
        Templates::new()
    }
}

impl Templates {
    pub fn new() -> Templates {
        let mut env = Environment::new();
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        env.set_keep_trailing_newline(false);
        env.add_filter("truncate", truncate);
        env.add_filter("segment", segment);
        env.add_filter("segments", segments);
        env.add_filter("querystring", querystring);
        Templates { env }
    }

    /// Compiles a template. With `allowed`, every variable it reads must be one of those names
    /// (catches `{{ jobb }}` at load time). Errors carry the line within the template.
    pub fn add(
        &mut self,
        name: &str,
        source: &str,
        allowed: Option<&HashSet<&str>>,
    ) -> Result<(), (usize, String)> {
        self.env
            .add_template_owned(name.to_string(), source.to_string())
            .map_err(|e| {
                (
                    e.line().unwrap_or(1),
                    e.detail().unwrap_or("syntax error").to_string(),
                )
            })?;
        if let Some(allowed) = allowed {
            let t = self.env.get_template(name).expect("just added");
            let mut unknown: Vec<String> = t
                .undeclared_variables(false)
                .into_iter()
                .filter(|v| !allowed.contains(v.as_str()))
                .collect();
            if !unknown.is_empty() {
                unknown.sort();
                let mut known: Vec<&str> = allowed.iter().copied().collect();
                known.sort();
                return Err((
                    1,
                    format!(
                        "unknown variable(s) {} (available: {})",
                        unknown.join(", "),
                        known.join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }

    pub fn render(&self, name: &str, ctx: &Value) -> Result<String, minijinja::Error> {
        self.env.get_template(name)?.render(ctx)
    }
}

/// `{{ text | truncate(80) }}`: at most n characters, with an ellipsis when cut.
fn truncate(value: String, n: Option<usize>) -> String {
    let n = n.unwrap_or(200);
    if value.chars().count() <= n {
        value
    } else {
        let mut s: String = value.chars().take(n.saturating_sub(1)).collect();
        s.push('…');
        s
    }
}

/// Characters left alone in a URL path segment or query part (RFC 3986 unreserved).
const UNRESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `{{ project | segment }}`: one URL path segment, `/` included in what is encoded
/// (`group/name` → `group%2Fname`), unlike `urlencode`, which keeps `/` as Jinja does.
fn segment(value: String) -> Result<String, minijinja::Error> {
    // `.` and `..` are unreserved, so encoding leaves them as they are, and the URL parser
    // would then resolve them: `/job/../lastBuild` is `/lastBuild`. An empty segment
    // changes the path's shape too. All three are refused.
    if value.is_empty() || value == "." || value == ".." {
        return Err(minijinja::Error::new(
            minijinja::ErrorKind::InvalidOperation,
            format!("{BAD_ARGUMENT}{value:?} cannot be a name here"),
        ));
    }
    Ok(encode_segment(&value))
}

fn encode_segment(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, UNRESERVED).to_string()
}

/// Prefix of a filter error caused by what the user typed (not by the pack): the dispatcher
/// shows these to the user instead of blaming the pack.
pub const BAD_ARGUMENT: &str = "bad argument: ";

/// `{{ repo | segments }}`: a `/`-separated path (`owner/repo`), each part encoded as a
/// segment; empty, `.` and `..` parts are refused so an argument cannot climb the path.
fn segments(value: String) -> Result<String, minijinja::Error> {
    let parts: Vec<&str> = value.split('/').collect();
    if parts
        .iter()
        .any(|p| p.is_empty() || *p == "." || *p == "..")
    {
        return Err(minijinja::Error::new(
            minijinja::ErrorKind::InvalidOperation,
            format!("{BAD_ARGUMENT}{value:?} is not a path like owner/name"),
        ));
    }
    Ok(parts
        .into_iter()
        .map(encode_segment)
        .collect::<Vec<_>>()
        .join("/"))
}

/// `{{ params | querystring }}`: a list of `key=value` words, or a map, as an encoded query
/// string (`a b=c&d` → `a%20b=c%26d`).
fn querystring(value: Value) -> Result<String, minijinja::Error> {
    let enc = |s: &str| percent_encoding::utf8_percent_encode(s, UNRESERVED).to_string();
    let mut parts = Vec::new();
    if value.kind() == minijinja::value::ValueKind::Map {
        for key in value.try_iter()? {
            let v = value.get_item(&key)?;
            parts.push(format!("{}={}", enc(&key.to_string()), enc(&v.to_string())));
        }
    } else {
        for item in value.try_iter()? {
            let item = item.to_string();
            let (k, v) = item.split_once('=').unwrap_or((&item, ""));
            parts.push(format!("{}={}", enc(k), enc(v)));
        }
    }
    Ok(parts.join("&"))
}

/// Trims a reply to [`MAX_REPLY_CHARS`] at a line boundary where possible.
pub fn trim_reply(text: &str) -> String {
    let text = text.trim();
    if text.chars().count() <= MAX_REPLY_CHARS {
        return text.to_string();
    }
    let cut: String = text.chars().take(MAX_REPLY_CHARS).collect();
    let cut = match cut.rfind('\n') {
        Some(i) if i > MAX_REPLY_CHARS / 2 => cut[..i].to_string(),
        _ => cut,
    };
    format!("{cut}\n… (trimmed)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_with_filters() {
        let mut t = Templates::new();
        t.add(
            "a",
            "{{ job | urlencode }} {{ job | segment }} {{ job | segments }} {{ params | querystring }} {{ s | truncate(4) }} <{{ x }}>",
            None,
        )
        .unwrap();
        let ctx = minijinja::context! { job => "a b/c", params => vec!["x=1", "y=a b&c=d"], s => "abcdef", x => "<b>" };
        assert_eq!(
            t.render("a", &ctx).unwrap(),
            "a%20b/c a%20b%2Fc a%20b/c x=1&y=a%20b%26c%3Dd abc… <<b>>"
        );
    }

    #[test]
    fn segments_refuse_climbing() {
        let mut t = Templates::new();
        t.add("p", "/repos/{{ r | segments }}", None).unwrap();
        for bad in ["../user", "a//b", "a/..", ""] {
            assert!(
                t.render("p", &minijinja::context! { r => bad }).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn unknown_variables_refused() {
        let mut t = Templates::new();
        let allowed: HashSet<&str> = ["job", "user"].into();
        assert!(t
            .add("ok", "{{ job }} {{ user.name }}", Some(&allowed))
            .is_ok());
        let (_, m) = t.add("bad", "{{ jobb }}", Some(&allowed)).unwrap_err();
        assert!(m.contains("jobb"), "{m}");
    }

    #[test]
    fn long_replies_trimmed() {
        let long = "line\n".repeat(2000);
        let r = trim_reply(&long);
        assert!(r.chars().count() <= MAX_REPLY_CHARS + 20);
        assert!(r.ends_with("(trimmed)"));
    }
}
