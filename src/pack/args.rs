//! Argument specs (`job`, `job?`, `params*`, `ids+`, `text...`) and binding the words a user
//! typed to them.

use std::collections::BTreeMap;

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
    pub fn parse(s: &str) -> Result<ArgSpec, String> {
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

    pub fn usage(&self) -> String {
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

/// The parsed arguments of one command, by name.
pub type Args = BTreeMap<String, minijinja::Value>;

/// Matches words against the argument specs.
pub fn bind(specs: &[ArgSpec], words: &[String]) -> Result<Args, String> {
    let mut args = Args::new();
    let mut i = 0;
    for spec in specs {
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
