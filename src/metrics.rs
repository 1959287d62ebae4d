//! Prometheus metrics, through the `metrics` facade and its Prometheus exporter, served at
//! `/metrics` on deputy's web listener. No label carries a user id or a secret: only adapters,
//! services, commands, auth kinds and outcomes.
//!
//! - `deputy_messages_total{adapter}`: messages handled;
//! - `deputy_commands_total{service,command,outcome}`: pack and account calls upstream
//!   (`ok`, `rejected`, `not_found`, `rate_limited`, `client_error`, `server_error`, `failed`);
//! - `deputy_upstream_seconds{service}`: upstream latency (histogram);
//! - `deputy_signins_started_total{kind}`, `deputy_signins_completed_total{kind}`,
//!   `deputy_signins_failed_total{kind}`;
//! - `deputy_token_refreshes_total{service}`;
//! - `deputy_brain_write_seconds`: durable brain writes (histogram);
//! - `deputy_linked_users{service}`: linked credentials, counted at each scrape.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the recorder (once per process); later calls return the same handle.
pub fn install() -> Option<&'static PrometheusHandle> {
    if let Some(h) = HANDLE.get() {
        return Some(h);
    }
    let seconds = [
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ];
    let built = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &seconds)
        .and_then(|b| b.install_recorder());
    match built {
        Ok(h) => Some(HANDLE.get_or_init(|| h)),
        Err(e) => {
            tracing::warn!(error = %e, "metrics are off: the recorder could not be installed");
            None
        }
    }
}

/// The outcome label for an upstream status (or error) as the audit line writes it.
pub fn outcome(status: &str) -> &'static str {
    match status.parse::<u16>() {
        Ok(200..=399) => "ok",
        Ok(401 | 403) => "rejected",
        Ok(404) => "not_found",
        Ok(429) => "rate_limited",
        Ok(400..=499) => "client_error",
        Ok(500..=599) => "server_error",
        _ => "failed",
    }
}
