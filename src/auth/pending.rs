//! Sign-ins in progress, whatever the kind: where a user's pending flow waits in the brain,
//! when it expires, and the one lockout that counts wrong answers (OAuth 1.0a PINs, OAuth 2.0
//! magic codes) alike.

use crate::brain::{Brain, KeyPath, Owner};

use super::credential::now_secs;

/// The brain key of a user's pending flow for a service (one at a time per user and service).
pub fn flow_key(owner: &Owner, service: &str) -> KeyPath {
    KeyPath::of(
        "flow",
        &[&owner.adapter, &owner.workspace, &owner.user, service],
    )
}

/// Unix seconds when a flow started now with a lifetime of `ttl_secs` expires.
pub fn expiry(ttl_secs: u64) -> u64 {
    now_secs().saturating_add(ttl_secs)
}

/// At or after `expires_at`, a flow is expired.
pub fn expired(expires_at: u64) -> bool {
    now_secs() >= expires_at
}

/// What one more wrong answer leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wrong {
    /// That was the last try: the flow is to be dropped.
    LockedOut,
    /// The flow stays (store the new count), with this many tries left.
    Left(u32),
}

/// Counts a wrong answer against the lockout of `max_attempts`.
pub fn wrong_answer(attempts: &mut u32, max_attempts: u32) -> Wrong {
    *attempts += 1;
    if *attempts >= max_attempts {
        Wrong::LockedOut
    } else {
        Wrong::Left(max_attempts - *attempts)
    }
}

/// Counts a wrong answer to the flow at `flow` (the one expiring at `expires_at`) with the
/// brain's atomic counter, so two conversations, or two replicas, answering at once cannot
/// both be given the last try. The count expires with the flow; a new flow counts afresh.
pub async fn count_wrong(
    brain: &Brain,
    flow: &KeyPath,
    expires_at: u64,
    max_attempts: u32,
) -> anyhow::Result<Wrong> {
    let counter = format!("attempts/{flow}/{expires_at}");
    let n = brain
        .store()
        .increment(counter.as_bytes(), expires_at.max(now_secs() + 1))
        .await?;
    let mut attempts = u32::try_from(n.saturating_sub(1)).unwrap_or(u32::MAX);
    let wrong = wrong_answer(&mut attempts, max_attempts);
    if wrong == Wrong::LockedOut {
        metrics::counter!("deputy_signins_failed_total", "kind" => "lockout").increment(1);
    }
    Ok(wrong)
}

/// `3 tries left`, `1 try left`.
pub fn tries_left(left: u32) -> String {
    format!("{left} tr{} left", if left == 1 { "y" } else { "ies" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lockout_counts_to_the_limit() {
        let mut attempts = 0;
        assert_eq!(wrong_answer(&mut attempts, 3), Wrong::Left(2));
        assert_eq!(tries_left(2), "2 tries left");
        assert_eq!(wrong_answer(&mut attempts, 3), Wrong::Left(1));
        assert_eq!(tries_left(1), "1 try left");
        assert_eq!(wrong_answer(&mut attempts, 3), Wrong::LockedOut);
    }
}
