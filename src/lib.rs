//! deputy: a chat-ops bot that calls external APIs *as the chat user who asks*.
//!
//! One message: an adapter ([`chat`]) turns a platform event into a [`message::Message`]; the
//! [`dispatch`]er strips the mention, finds the service by prefix and runs a built-in account
//! command through the service's auth kind ([`auth`]) or a pack command ([`pack`]), whose
//! request goes out through [`upstream`] with the credential the kind applies; the [`brain`]
//! keeps credentials and sign-ins in progress sealed.
//!
//! Dependencies point one way (checked by `tests/layers.rs`); no module imports one above it:
//!
//! ```text
//! main, app, web, chat (adapters)   wiring, the HTTP listener, shell / discord / slack / web
//!   └▶ dispatch                      routing, help; names no auth kind
//!        └▶ auth, pack               auth kinds (AuthScheme) │ packs: format, validate, load
//!             └▶ message, upstream   Message/Reply/Adapter/Outbox │ one HTTP call, audit line
//!                  └▶ brain, secret  the sealed store │ Secret, Consumer
//!                       └▶ config, metrics  the operator's deputy.toml │ Prometheus metrics
//! ```
//!
//! Extension points, and the one file a newcomer writes for each:
//!
//! | to add        | write                                   | and register it in                    |
//! |---------------|-----------------------------------------|---------------------------------------|
//! | a service     | `commands/<service>.toml` ([`pack::format`]) | nothing: every pack in the folder loads |
//! | an auth kind  | `src/auth/<kind>.rs`: an [`auth::AuthScheme`] | [`auth::Kinds::new`] (one line), its `auth = { kind = ... }` in [`pack::format::AuthKind`] |
//! | an adapter    | `src/chat/<platform>.rs`: a [`message::Adapter`] feeding a [`chat::Runner`] | `src/main.rs` (start it), `[<platform>]` in [`config`] |
//! | a store       | `src/brain/<store>.rs`: a [`brain::Store`] (see `sled.rs`, `redis.rs`; `tests/stores.rs` is the behaviour suite it must pass) | [`app::open_configured_brain`] |
//!
//! An auth kind uses only what [`auth::AuthContext`] gives it and the shared pieces beside it
//! ([`auth::pending`], [`auth::conversation`], [`auth::replies`], [`auth::credential`]), never
//! another kind. [`sandbox`] is the offline provider (fake X, Jenkins, GitHub-shaped OAuth 2.0)
//! for `deputy shell --sandbox` and the tests. [`fuzzing`] holds what the fuzz targets in
//! `fuzz/` run (and `tests/fuzz_corpus.rs` replays on stable).
#![forbid(unsafe_code)]

pub mod app;
pub mod auth;
pub mod brain;
pub mod chat;
pub mod config;
pub mod dispatch;
pub mod fuzzing;
pub mod message;
pub mod metrics;
pub mod pack;
pub mod sandbox;
pub mod secret;
pub mod upstream;
pub mod web;
