//! When to refresh and how to retry: [`ManagerOptions`].

use std::time::Duration;

/// How long before expiry a token is refreshed: `max(min, fraction × lifetime)`, but never
/// more than half the lifetime (so that short-lived tokens are still used).
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct RefreshMargin {
    /// The least margin (default 30 s).
    pub min: Duration,
    /// The share of the lifetime (default 0.1).
    pub fraction: f64,
}

impl Default for RefreshMargin {
    fn default() -> Self {
        Self {
            min: Duration::from_secs(30),
            fraction: 0.1,
        }
    }
}

impl RefreshMargin {
    /// A margin of `min` or `fraction` of the lifetime, whichever is larger.
    pub fn new(min: Duration, fraction: f64) -> Self {
        Self { min, fraction }
    }

    /// The margin for a token living `lifetime`.
    pub fn for_lifetime(&self, lifetime: Duration) -> Duration {
        let share =
            Duration::try_from_secs_f64(lifetime.as_secs_f64() * self.fraction.clamp(0.0, 1.0))
                .unwrap_or_default();
        self.min.max(share).min(lifetime / 2)
    }
}

/// Retries of transient refresh failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Attempts in all, the first included (default 4).
    pub attempts: u32,
    /// Backoff before the second attempt, doubled each time, with jitter (default 250 ms).
    pub base: Duration,
    /// Largest backoff (default 5 s).
    pub max: Duration,
    /// After a refresh failed for good, how long callers get the old (still valid) token
    /// without a new attempt (default 2 s).
    pub cooldown: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 4,
            base: Duration::from_millis(250),
            max: Duration::from_secs(5),
            cooldown: Duration::from_secs(2),
        }
    }
}

impl RetryPolicy {
    /// A policy with these attempts, base and largest backoff.
    pub fn new(attempts: u32, base: Duration, max: Duration) -> Self {
        Self {
            attempts: attempts.max(1),
            base,
            max,
            ..Self::default()
        }
    }

    /// Sets the cooldown.
    #[must_use]
    pub fn cooldown(mut self, cooldown: Duration) -> Self {
        self.cooldown = cooldown;
        self
    }

    /// The backoff after failed attempt `n` (0-based): uniform in [½, 1] × base × 2ⁿ,
    /// capped at `max`.
    pub fn backoff(&self, n: u32) -> Duration {
        let full = self.base.saturating_mul(1u32 << n.min(20)).min(self.max);
        full.mul_f64(0.5 + fastrand::f64() / 2.0)
    }
}

/// Options of a [`TokenManager`](crate::TokenManager).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[non_exhaustive]
pub struct ManagerOptions {
    /// When to refresh.
    pub margin: RefreshMargin,
    /// How to retry.
    pub retry: RetryPolicy,
}

impl ManagerOptions {
    /// Sets the margin.
    #[must_use]
    pub fn margin(mut self, margin: RefreshMargin) -> Self {
        self.margin = margin;
        self
    }

    /// Sets the retry policy.
    #[must_use]
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }
}
