//! deputy: a chat-ops bot that calls external APIs *as the chat user who asks*.
//!
//! A message travels through the crate like this:
//!
//! ```text
//! chat adapter ──Message──▶ dispatch ──▶ built-in auth command (auth) ──▶ brain (sealed)
//!  (chat::shell)               │
//!                              └──▶ pack command (pack) ──▶ credential from brain ──▶ upstream
//!                                                                   rendered reply ──▶ adapter
//! ```
//!
//! - [`config`]: the operator's `deputy.toml`; secrets come only from the environment.
//! - [`chat`]: the [`chat::Message`] / [`chat::Reply`] types, the [`chat::Adapter`] trait, the
//!   runner that keeps one conversation in order while conversations run side by side, and the
//!   adapters themselves ([`chat::shell`]).
//! - [`dispatch`]: addressing (`@deputy`, aliases), the pure tokenizer, routing, generated help.
//! - [`pack`]: command packs (`commands/<service>.toml`): loading, validation with file and line,
//!   and template rendering (minijinja).
//! - [`auth`]: auth kinds and the built-in commands every service gets (`setkey`, `logout`,
//!   `whoami`), and how a credential is applied to a request.
//! - [`brain`]: the store: sled underneath, every value sealed with XChaCha20-Poly1305
//!   ([`brain::seal`]), keyed by (adapter, workspace, user, service).
//! - [`upstream`]: one HTTP call as the user: timeouts, status mapping, the audit line.
//! - [`web`]: deputy's HTTP listener: OAuth callbacks and `/healthz`.
//! - [`app`]: wiring it together for the CLI (`src/main.rs`) and for tests.
//! - [`sandbox`]: a local fake of X (OAuth 1.0a, API v2) and Jenkins on 127.0.0.1, for
//!   `deputy shell --sandbox` and as the fake upstream of integration tests.
#![forbid(unsafe_code)]

pub mod app;
pub mod auth;
pub mod brain;
pub mod chat;
pub mod config;
pub mod dispatch;
pub mod message;
pub mod pack;
pub mod sandbox;
pub mod secret;
pub mod upstream;
pub mod web;
