//! Command packs: `commands/<service>.toml` declares one service and its commands.
//!
//! - [`format`](mod@format): the TOML a pack author writes (the author's reference);
//! - [`validate`]: one file to a [`Pack`], every mistake named with file and line;
//! - [`load`]: the built-in packs and the operator's folder, their overrides, clashes;
//! - [`builtin`]: the packs compiled into the binary;
//! - [`model`]: the loaded pack the dispatcher works with; [`args`]: argument specs;
//! - [`render`]: the templates (minijinja).

pub mod args;
pub mod builtin;
pub mod format;
pub mod load;
pub mod model;
pub mod render;
pub mod validate;

pub use self::args::{ArgSpec, Args, Arity};
pub use self::format::{AuthKind, ClientAuth, Grant, OAuth2Def, ResponseKind};
pub use self::load::load_all;
pub use self::model::{Command, Pack, Request, Service, BUILTIN_WORDS};
pub use self::render::Templates;
pub use self::validate::{load_one, PackError};
pub use crate::secret::Consumer;

#[cfg(test)]
mod tests {
    use std::path::Path;

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
