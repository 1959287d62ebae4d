//! The packs shipped with deputy, compiled into the binary: an installed `deputy` works from
//! any folder. A pack in the operator's folder with the same service name replaces one.

use std::path::PathBuf;

/// File name and text of every shipped pack (`commands/` in the repository).
pub const PACKS: &[(&str, &str)] = &[
    ("github.toml", include_str!("../../commands/github.toml")),
    ("gitlab.toml", include_str!("../../commands/gitlab.toml")),
    ("jenkins.toml", include_str!("../../commands/jenkins.toml")),
    ("twitter.toml", include_str!("../../commands/twitter.toml")),
];

/// What a built-in pack's file is called in messages: `(built in)/jenkins.toml`.
pub fn path(file: &str) -> PathBuf {
    PathBuf::from(BUILT_IN_DIR).join(file)
}

pub const BUILT_IN_DIR: &str = "(built in)";

/// Whether a pack came from the binary rather than the packs folder.
pub fn is_built_in(file: &std::path::Path) -> bool {
    file.starts_with(BUILT_IN_DIR)
}

/// The skeleton `deputy packs new NAME` writes: every part commented, and valid as it is.
pub fn skeleton(name: &str) -> String {
    format!(
        r#"# The {name} pack: what `{name} ...` does in chat. Every key is documented in
# src/pack/format.rs; `deputy check` validates this file and names file:line on a mistake.

[service]
name = "{name}"
# The words that address this service in chat: `{name} hello`.
prefixes = ["{name}"]
summary = "What {name} does, in one line for `help`"
# Operators point this at their own server in deputy.toml: [services.{name}] base_url = "..."
base_url = "https://{name}.example.com"
# How users link their account. An API key pasted in a direct message (`{name} setkey ...`):
auth = {{ kind = "bearer", hint = "a personal access token from your {name} settings" }}
# or `kind = "basic"` (user:token), `kind = "header"` (header = "PRIVATE-TOKEN"), `kind = "none"`,
# or `[service.auth]` tables for OAuth 1.0a / 2.0: see commands/twitter.toml and github.toml.

# What `{name} whoami` asks the service, and how it answers.
[service.whoami]
path = "/api/me"
reply = "You are {{{{ body.name }}}} on {name}."

# One command: `{name} hello <thing>`. Arguments are named in `args`; `thing*` takes the rest.
[[command]]
name = "hello"
help = "Say hello to <thing>"
args = ["thing"]
path = "/api/hello/{{{{ thing | segment }}}}"
reply = "{{{{ body.message }}}}"
# For a command worth a second thought, `confirm = true` makes deputy ask the user first
# (Confirm / Cancel buttons, or a typed `yes` in the shell) and call only once they confirm.
# confirm = true
"#
    )
}
