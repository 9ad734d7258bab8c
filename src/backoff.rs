//! Retry delays as a value: doubling from an initial delay up to a cap, with jitter so that
//! many machines retrying at once spread out.

use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            next: initial,
        }
    }

    /// Starts over from the initial delay (after a success).
    pub fn reset(&mut self) {
        self.next = self.initial;
    }

    /// The next delay, between 80 % and 100 % of the undisturbed doubling sequence.
    pub fn next_delay(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(self.max);
        base.mul_f64(0.8 + 0.2 * rand::random::<f64>())
    }
}

impl Iterator for Backoff {
    type Item = Duration;
    fn next(&mut self) -> Option<Duration> {
        Some(self.next_delay())
    }
}

/// Sleeps until `at`, or forever without one: the arm of a `select!` loop waiting on a
/// deadline that may not be set (a retry, a debounce).
pub async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_and_reset() {
        let ms = Duration::from_millis;
        let mut b = Backoff::new(ms(100), ms(1000));
        let delays: Vec<Duration> = b.by_ref().take(6).collect();
        let bases = [100, 200, 400, 800, 1000, 1000];
        for (d, base) in delays.iter().zip(bases) {
            assert!(
                *d <= ms(base) && *d >= ms(base).mul_f64(0.8),
                "{d:?} vs {base} ms"
            );
        }
        b.reset();
        assert!(b.next_delay() <= ms(100));
    }
}
