//! What one chat user may ask of the bot, checked before a message is queued: a token bucket
//! per (adapter, workspace, user), so a flood is dropped at the door instead of queued, and the
//! replies a refused message gets. The operator sets both in `[limits]`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::LimitsConfig;

type UserKey = (String, String, String);

/// Per-user token buckets.
pub struct RateLimiter {
    /// Tokens added per second; 0: no limit.
    per_sec: f64,
    burst: f64,
    buckets: Mutex<Buckets>,
}

struct Buckets {
    map: HashMap<UserKey, Bucket>,
    /// Full buckets are forgotten when the map reaches this size, so idle users cost nothing.
    prune_at: usize,
}

struct Bucket {
    tokens: f64,
    at: Instant,
    /// The user has been told they are over the limit since their last accepted command.
    told: bool,
}

/// Whether a command may go ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Go,
    /// Over the limit; `tell` is true for the first refusal of a burst (one reply, not one per
    /// dropped message); `wait` is when the next command will be taken.
    Over {
        tell: bool,
        wait: Duration,
    },
}

const PRUNE_FLOOR: usize = 1024;

impl RateLimiter {
    pub fn new(limits: &LimitsConfig) -> RateLimiter {
        RateLimiter {
            per_sec: f64::from(limits.commands_per_minute) / 60.0,
            burst: f64::from(limits.burst.max(1)),
            buckets: Mutex::new(Buckets {
                map: HashMap::new(),
                prune_at: PRUNE_FLOOR,
            }),
        }
    }

    /// Takes one token from the user's bucket if there is one.
    pub fn check(&self, adapter: &str, workspace: &str, user: &str) -> Verdict {
        self.check_at(adapter, workspace, user, Instant::now())
    }

    fn check_at(&self, adapter: &str, workspace: &str, user: &str, now: Instant) -> Verdict {
        if self.per_sec == 0.0 {
            return Verdict::Go;
        }
        let mut buckets = self.buckets.lock().expect("rate buckets poisoned");
        if buckets.map.len() >= buckets.prune_at {
            let (per_sec, burst) = (self.per_sec, self.burst);
            buckets
                .map
                .retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * per_sec < burst);
            buckets.prune_at = (buckets.map.len() * 2).max(PRUNE_FLOOR);
        }
        let key = (adapter.to_string(), workspace.to_string(), user.to_string());
        let bucket = buckets.map.entry(key).or_insert(Bucket {
            tokens: self.burst,
            at: now,
            told: false,
        });
        let refill = now.duration_since(bucket.at).as_secs_f64() * self.per_sec;
        bucket.tokens = (bucket.tokens + refill).min(self.burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            bucket.told = false;
            return Verdict::Go;
        }
        let tell = !bucket.told;
        bucket.told = true;
        Verdict::Over {
            tell,
            wait: Duration::from_secs_f64((1.0 - bucket.tokens) / self.per_sec),
        }
    }

    /// Users with a bucket (for tests of pruning).
    pub fn tracked(&self) -> usize {
        self.buckets
            .lock()
            .expect("rate buckets poisoned")
            .map
            .len()
    }
}

/// The one reply to a user over the rate limit.
pub fn over_rate(limits: &LimitsConfig, wait: Duration) -> String {
    format!(
        "You are sending me commands faster than I take them ({} at once, then {} a minute), so \
         I am skipping them without running them; this is the only time I say so. I take \
         commands again in {} s.",
        limits.burst,
        limits.commands_per_minute,
        wait.as_secs() + 1
    )
}

/// The reply to a message longer than `[limits] max_message_bytes`.
pub fn too_long(limits: &LimitsConfig) -> String {
    format!(
        "That message is longer than {} bytes, so I did not read it; nothing was done.",
        limits.max_message_bytes
    )
}

/// The reply to a message that found its conversation's queue full.
pub fn queue_full(limits: &LimitsConfig) -> String {
    format!(
        "I am still working on {} earlier messages of yours here, so I skipped this one; \
         nothing was done. Send it again once those are answered.",
        limits.max_queued
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(per_minute: u32, burst: u32) -> RateLimiter {
        RateLimiter::new(&LimitsConfig {
            commands_per_minute: per_minute,
            burst,
            ..LimitsConfig::default()
        })
    }

    #[test]
    fn a_burst_then_the_rate_and_one_telling_per_episode() {
        let l = limiter(60, 3);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(l.check_at("a", "w", "u", t0), Verdict::Go);
        }
        let Verdict::Over { tell, wait } = l.check_at("a", "w", "u", t0) else {
            panic!("over the burst")
        };
        assert!(tell);
        assert!(wait <= Duration::from_secs(1), "{wait:?}");
        for _ in 0..100 {
            assert!(matches!(
                l.check_at("a", "w", "u", t0),
                Verdict::Over { tell: false, .. }
            ));
        }
        // Another user, and the same id on another adapter or workspace, are not affected.
        assert_eq!(l.check_at("a", "w", "v", t0), Verdict::Go);
        assert_eq!(l.check_at("b", "w", "u", t0), Verdict::Go);
        assert_eq!(l.check_at("a", "x", "u", t0), Verdict::Go);
        // One second refills one token (60 a minute); a new episode is told again.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(l.check_at("a", "w", "u", t1), Verdict::Go);
        assert!(matches!(
            l.check_at("a", "w", "u", t1),
            Verdict::Over { tell: true, .. }
        ));
    }

    #[test]
    fn zero_per_minute_means_no_limit() {
        let l = limiter(0, 1);
        let t0 = Instant::now();
        for _ in 0..1000 {
            assert_eq!(l.check_at("a", "w", "u", t0), Verdict::Go);
        }
    }

    #[test]
    fn idle_users_are_forgotten() {
        let l = limiter(60, 2);
        let t0 = Instant::now();
        for i in 0..PRUNE_FLOOR {
            l.check_at("a", "w", &i.to_string(), t0);
        }
        assert_eq!(l.tracked(), PRUNE_FLOOR);
        // A minute later every bucket is full again: the next check forgets them.
        l.check_at("a", "w", "new", t0 + Duration::from_secs(60));
        assert_eq!(l.tracked(), 1);
    }
}
