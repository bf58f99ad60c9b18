//! The circuit breaker around the bid-engine call (SPEC §3): after
//! `threshold` consecutive failures it opens and Serve answers no-fill at
//! once; after the cool-down one trial call goes through (half-open), and
//! its result closes or reopens the circuit.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen,
}

#[derive(Debug)]
pub struct CircuitBreaker {
    threshold: u32,
    cooldown: Duration,
    state: Mutex<State>,
}

/// Permission to make one call; report how it went with [`Permit::succeeded`]
/// or [`Permit::failed`]. Dropping it unreported counts as a failure, so an
/// abandoned half-open trial cannot wedge the breaker.
#[derive(Debug)]
pub struct Permit<'a> {
    breaker: &'a CircuitBreaker,
    reported: bool,
}

impl CircuitBreaker {
    pub fn new(threshold: u32, cooldown: Duration) -> Self {
        Self {
            threshold: threshold.max(1),
            cooldown,
            state: Mutex::new(State::Closed { failures: 0 }),
        }
    }

    /// A permit when the circuit lets a call through at `now`.
    pub fn try_acquire(&self, now: Instant) -> Option<Permit<'_>> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match *state {
            State::Closed { .. } => {}
            State::Open { until } if now >= until => *state = State::HalfOpen,
            State::Open { .. } | State::HalfOpen => return None,
        }
        Some(Permit {
            breaker: self,
            reported: false,
        })
    }

    pub fn is_open(&self, now: Instant) -> bool {
        match *self.state.lock().unwrap_or_else(|e| e.into_inner()) {
            State::Closed { .. } => false,
            State::Open { until } => now < until,
            State::HalfOpen => true,
        }
    }

    fn record(&self, success: bool, now: Instant) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        *state = match (*state, success) {
            (_, true) => State::Closed { failures: 0 },
            (State::Closed { failures }, false) if failures + 1 < self.threshold => State::Closed {
                failures: failures + 1,
            },
            // A late failure of a call made before the circuit opened must
            // not push the reopening further out.
            (open @ State::Open { .. }, false) => open,
            (State::Closed { .. } | State::HalfOpen, false) => {
                tracing::warn!(
                    cooldown_ms = self.cooldown.as_millis() as u64,
                    "bid-engine circuit opened"
                );
                State::Open {
                    until: now + self.cooldown,
                }
            }
        };
    }
}

impl Permit<'_> {
    pub fn succeeded(mut self) {
        self.reported = true;
        self.breaker.record(true, Instant::now());
    }

    pub fn failed(mut self) {
        self.reported = true;
        self.breaker.record(false, Instant::now());
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.reported {
            self.breaker.record(false, Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_the_threshold_and_half_opens_after_the_cooldown() {
        let breaker = CircuitBreaker::new(3, Duration::from_millis(100));
        let start = Instant::now();
        for _ in 0..2 {
            breaker.try_acquire(start).expect("closed").failed();
        }
        assert!(!breaker.is_open(start));
        breaker.try_acquire(start).expect("closed").failed();
        assert!(breaker.is_open(Instant::now()));
        assert!(breaker.try_acquire(Instant::now()).is_none());

        let later = Instant::now() + Duration::from_millis(150);
        let trial = breaker.try_acquire(later).expect("half-open trial");
        // Only one trial at a time.
        assert!(breaker.try_acquire(later).is_none());
        trial.succeeded();
        assert!(!breaker.is_open(later));
        assert!(breaker.try_acquire(later).is_some());
    }

    #[test]
    fn a_failed_trial_reopens_and_a_success_resets_the_count() {
        let breaker = CircuitBreaker::new(2, Duration::from_millis(50));
        let start = Instant::now();
        breaker.try_acquire(start).expect("closed").failed();
        breaker.try_acquire(start).expect("closed").succeeded();
        breaker.try_acquire(start).expect("closed").failed();
        assert!(!breaker.is_open(start), "the success reset the count");
        breaker.try_acquire(start).expect("closed").failed();
        assert!(breaker.is_open(Instant::now()));

        let later = Instant::now() + Duration::from_millis(60);
        breaker.try_acquire(later).expect("trial").failed();
        assert!(breaker.try_acquire(Instant::now()).is_none(), "reopened");
    }

    #[test]
    fn an_abandoned_trial_counts_as_a_failure() {
        let breaker = CircuitBreaker::new(1, Duration::from_millis(10));
        breaker
            .try_acquire(Instant::now())
            .expect("closed")
            .failed();
        let later = Instant::now() + Duration::from_millis(20);
        drop(breaker.try_acquire(later).expect("trial"));
        assert!(breaker.is_open(Instant::now()));
    }
}
