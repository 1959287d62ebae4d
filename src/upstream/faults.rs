//! How deputy treats a struggling upstream: which failed calls may be sent again and after how
//! long (exponential backoff with jitter, or a short `Retry-After`), and the per-service slots
//! that keep one stalled service from holding every connection and every task.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::CallError;
use crate::config::{HttpConfig, ServiceOverride};

/// Retry and concurrency settings, `[http]` with each service's overrides.
pub struct Faults {
    retries: u32,
    backoff: Duration,
    retry_after_max: Duration,
    max_concurrent: usize,
    max_waiting: usize,
    /// Per service: (max_concurrent, retries) when the operator overrode them.
    overrides: HashMap<String, (Option<usize>, Option<u32>)>,
    slots: Mutex<HashMap<String, Arc<Slots>>>,
}

/// One service's turns: `in_flight` permits, and a count of calls waiting for one, which is
/// capped too so a stalled service cannot gather callers without bound.
struct Slots {
    in_flight: Arc<Semaphore>,
    waiting: AtomicUsize,
}

/// Counts a call as waiting while it lives, however the wait ends (even cancelled).
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Faults {
    pub fn new(http: &HttpConfig) -> Faults {
        Faults {
            retries: http.retries,
            backoff: Duration::from_millis(http.retry_backoff_ms),
            retry_after_max: Duration::from_secs(http.retry_after_max_secs),
            max_concurrent: http.max_concurrent.max(1),
            max_waiting: http.max_waiting,
            overrides: HashMap::new(),
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// Takes `[services.NAME] max_concurrent` and `retries` into account.
    pub fn with_services(mut self, services: &BTreeMap<String, ServiceOverride>) -> Faults {
        self.overrides = services
            .iter()
            .map(|(name, o)| (name.clone(), (o.max_concurrent, o.retries)))
            .collect();
        self
    }

    /// How many calls to `service` may be in flight at once.
    pub fn limit(&self, service: &str) -> usize {
        self.overrides
            .get(service)
            .and_then(|o| o.0)
            .unwrap_or(self.max_concurrent)
            .max(1)
    }

    fn retries(&self, service: &str) -> u32 {
        self.overrides
            .get(service)
            .and_then(|o| o.1)
            .unwrap_or(self.retries)
    }

    fn slots(&self, service: &str) -> Arc<Slots> {
        let mut slots = self.slots.lock().expect("slot map poisoned");
        if let Some(s) = slots.get(service) {
            return s.clone();
        }
        slots
            .entry(service.to_string())
            .or_insert_with(|| {
                Arc::new(Slots {
                    in_flight: Arc::new(Semaphore::new(self.limit(service))),
                    waiting: AtomicUsize::new(0),
                })
            })
            .clone()
    }

    /// Calls to `service` waiting for a turn right now.
    pub fn waiting(&self, service: &str) -> usize {
        self.slots(service).waiting.load(Ordering::SeqCst)
    }

    /// A turn to call `service`, waited for until `deadline`; `None` when none came in time,
    /// or at once when `[http] max_waiting` calls are already waiting.
    pub async fn slot(&self, service: &str, deadline: Instant) -> Option<OwnedSemaphorePermit> {
        let slots = self.slots(service);
        if let Ok(permit) = slots.in_flight.clone().try_acquire_owned() {
            return Some(permit);
        }
        let _waiting = Waiting(&slots.waiting);
        if slots.waiting.fetch_add(1, Ordering::SeqCst) >= self.max_waiting {
            return None;
        }
        tracing::debug!(
            service,
            "every slot to the service is taken; waiting for one"
        );
        match tokio::time::timeout_at(deadline, slots.in_flight.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Some(permit),
            _ => None,
        }
    }

    /// How long to wait before attempt `done + 1` of a call that failed with `error`, or
    /// `None` when it must not be sent again. `repeatable`: the method is safe to repeat.
    pub fn retry_after(
        &self,
        service: &str,
        error: &CallError,
        repeatable: bool,
        done: u32,
    ) -> Option<Duration> {
        if done >= self.retries(service) {
            return None;
        }
        match error {
            // The request never left: even a POST may go again.
            CallError::Connect => Some(backoff(self.backoff, done)),
            _ if !repeatable => None,
            CallError::Broken | CallError::Server(502..=504) => Some(backoff(self.backoff, done)),
            CallError::RateLimited(Some(secs)) => {
                let wait = Duration::from_secs(*secs);
                (wait <= self.retry_after_max).then(|| wait.max(backoff(self.backoff, done)))
            }
            _ => None,
        }
    }
}

/// Whether a call with `method` may be sent twice: only the safe methods. PUT and DELETE are
/// idempotent on paper, but a pack may use them for anything, and a repeated DELETE whose
/// first answer was lost reports a confusing 404.
pub fn repeatable(method: &reqwest::Method) -> bool {
    matches!(
        *method,
        reqwest::Method::GET | reqwest::Method::HEAD | reqwest::Method::OPTIONS
    )
}

/// Exponential backoff with "equal jitter": half the step for sure, the other half at random,
/// so retries from many users spread out instead of arriving together.
fn backoff(base: Duration, done: u32) -> Duration {
    let step = base.saturating_mul(1 << done.min(16));
    let half = step / 2;
    half + half.mul_f64(rand::random::<f64>())
}

/// A `Retry-After` value in seconds from now: delay-seconds or an HTTP date (RFC 9110 10.2.3).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<u64> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(secs);
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(now)
            .map_or(0, |d| d.as_secs() + u64::from(d.subsec_nanos() > 0)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn faults(retries: u32) -> Faults {
        Faults::new(&HttpConfig {
            retries,
            retry_after_max_secs: 5,
            ..HttpConfig::default()
        })
    }

    #[test]
    fn only_safe_methods_are_repeated_except_when_nothing_was_sent() {
        let f = faults(2);
        let get = true;
        let post = false;
        for e in [CallError::Broken, CallError::Server(503)] {
            assert!(f.retry_after("s", &e, get, 0).is_some(), "{e}");
            assert!(f.retry_after("s", &e, post, 0).is_none(), "{e}");
        }
        assert!(f.retry_after("s", &CallError::Connect, post, 0).is_some());
        for e in [
            CallError::Server(500),
            CallError::Timeout(1),
            CallError::Unreadable,
            CallError::NotFound,
            CallError::Rejected(401),
            CallError::TooLarge(10),
        ] {
            assert!(f.retry_after("s", &e, get, 0).is_none(), "{e}");
        }
        assert!(f.retry_after("s", &CallError::Broken, get, 2).is_none());
        assert!(faults(0)
            .retry_after("s", &CallError::Connect, get, 0)
            .is_none());
    }

    #[test]
    fn short_retry_after_is_waited_out_and_long_one_is_not() {
        let f = faults(2);
        let wait = f
            .retry_after("s", &CallError::RateLimited(Some(3)), true, 0)
            .unwrap();
        assert!(wait >= Duration::from_secs(3), "{wait:?}");
        assert!(f
            .retry_after("s", &CallError::RateLimited(Some(6)), true, 0)
            .is_none());
        assert!(f
            .retry_after("s", &CallError::RateLimited(None), true, 0)
            .is_none());
        assert!(f
            .retry_after("s", &CallError::RateLimited(Some(1)), false, 0)
            .is_none());
    }

    #[test]
    fn backoff_grows_and_jitters_within_its_step() {
        let base = Duration::from_millis(100);
        for done in 0..4 {
            let step = base * (1 << done);
            let w = backoff(base, done);
            assert!(w >= step / 2 && w <= step, "{done}: {w:?}");
        }
        let waits: std::collections::HashSet<_> = (0..20).map(|_| backoff(base, 3)).collect();
        assert!(waits.len() > 1, "jitter varies the wait");
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480);
        assert_eq!(parse_retry_after(" 7 ", now), Some(7));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(30)
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now),
            Some(0)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn per_service_overrides_win() {
        let mut services = BTreeMap::new();
        services.insert(
            "slow".to_string(),
            ServiceOverride {
                max_concurrent: Some(2),
                retries: Some(0),
                ..ServiceOverride::default()
            },
        );
        let f = faults(2).with_services(&services);
        assert_eq!((f.limit("slow"), f.limit("other")), (2, 64));
        assert!(f.retry_after("slow", &CallError::Broken, true, 0).is_none());
        assert!(f
            .retry_after("other", &CallError::Broken, true, 0)
            .is_some());
    }
}
