//! Property test: the breaker against a plainly written reference model,
//! over arbitrary sequences of operations on a paused tokio clock.

use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;

use super::Counting;
use crate::{CircuitBreaker, CircuitBreakerConfig, CircuitBreakerStats, CircuitState, Permit};

/// Permits the test may hold at once, to interleave long requests.
const MAX_HELD: usize = 3;

#[derive(Debug, Clone, Copy)]
enum Outcome {
    Succeed,
    Fail,
    Drop,
}

#[derive(Debug, Clone, Copy)]
enum Op {
    /// Acquire a permit and record the outcome at once.
    Acquire(Outcome),
    /// Acquire a permit and keep it for later.
    Hold,
    /// Record the outcome of the held permit at this index (modulo count).
    Finish(usize, Outcome),
    Check,
    Advance(u64),
    Trip,
    Reset,
}

fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        Just(Outcome::Succeed),
        Just(Outcome::Fail),
        Just(Outcome::Drop)
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => outcome().prop_map(Op::Acquire),
        1 => Just(Op::Hold),
        1 => (any::<usize>(), outcome()).prop_map(|(i, o)| Op::Finish(i, o)),
        2 => Just(Op::Check),
        2 => (0u64..=150).prop_map(Op::Advance),
        1 => Just(Op::Trip),
        1 => Just(Op::Reset),
    ]
}

/// The reference: what the docs say, with time in whole milliseconds.
#[derive(Debug, Default)]
struct Model {
    failure_threshold: u32,
    success_threshold: u32,
    timeout: u64,
    now: u64,
    state: CircuitState,
    /// Bumped on every transition; a permit only counts in its own period.
    period: u64,
    open_until: u64,
    trial_out: bool,
    stats: CircuitBreakerStats,
    hooks: (usize, usize, usize, usize),
}

/// What the model granted: the period and whether it is the trial.
type ModelPermit = (u64, bool);

impl Model {
    fn enter(&mut self, state: CircuitState) {
        self.state = state;
        self.period += 1;
        self.trial_out = false;
        self.stats.success_count = 0;
        match state {
            CircuitState::Open => {
                self.open_until = self.now + self.timeout;
                self.stats.times_opened += 1;
                self.hooks.0 += 1;
            }
            CircuitState::HalfOpen => self.hooks.1 += 1,
            CircuitState::Closed => {
                self.stats.failure_count = 0;
                self.hooks.2 += 1;
            }
        }
    }

    /// An Open circuit whose timeout has elapsed is HalfOpen.
    fn refresh(&mut self) {
        if self.state == CircuitState::Open && self.now >= self.open_until {
            self.enter(CircuitState::HalfOpen);
        }
    }

    fn reject(&mut self) {
        self.stats.rejected_requests += 1;
        self.hooks.3 += 1;
    }

    fn acquire(&mut self) -> Option<ModelPermit> {
        self.stats.total_requests += 1;
        self.refresh();
        match self.state {
            CircuitState::Closed => Some((self.period, false)),
            CircuitState::HalfOpen if !self.trial_out => {
                self.trial_out = true;
                Some((self.period, true))
            }
            CircuitState::HalfOpen | CircuitState::Open => {
                self.reject();
                None
            }
        }
    }

    fn check(&mut self) -> bool {
        self.stats.total_requests += 1;
        self.refresh();
        if self.state == CircuitState::Open {
            self.reject();
            return false;
        }
        true
    }

    fn finish(&mut self, (period, trial): ModelPermit, outcome: Outcome) {
        match outcome {
            Outcome::Succeed => self.stats.total_successes += 1,
            Outcome::Fail => self.stats.total_failures += 1,
            Outcome::Drop => {}
        }
        if period != self.period {
            return;
        }
        match (self.state, outcome) {
            (CircuitState::HalfOpen, Outcome::Drop) if trial => self.trial_out = false,
            (CircuitState::Closed, Outcome::Succeed) => self.stats.failure_count = 0,
            (CircuitState::Closed, Outcome::Fail) => {
                self.stats.failure_count += 1;
                if self.stats.failure_count >= self.failure_threshold {
                    self.enter(CircuitState::Open);
                }
            }
            (CircuitState::HalfOpen, Outcome::Succeed) => {
                self.trial_out = false;
                self.stats.failure_count = 0;
                self.stats.success_count += 1;
                if self.stats.success_count >= self.success_threshold {
                    self.enter(CircuitState::Closed);
                }
            }
            (CircuitState::HalfOpen, Outcome::Fail) => {
                self.stats.failure_count += 1;
                self.enter(CircuitState::Open);
            }
            _ => {}
        }
    }

    fn trip(&mut self) {
        self.refresh();
        if self.state == CircuitState::Open {
            self.open_until = self.now + self.timeout;
        } else {
            self.enter(CircuitState::Open);
        }
    }

    fn reset(&mut self) {
        let was_closed = self.state == CircuitState::Closed;
        self.enter(CircuitState::Closed);
        if was_closed {
            self.hooks.2 -= 1;
        }
    }

    /// What `stats()` and `retry_after()` should say now.
    fn observe(&mut self) -> (CircuitBreakerStats, Option<Duration>) {
        self.refresh();
        self.stats.state = self.state;
        let retry_after = (self.state == CircuitState::Open)
            .then(|| Duration::from_millis(self.open_until - self.now));
        (self.stats, retry_after)
    }
}

fn record<O: crate::CircuitObserver>(permit: Permit<'_, O>, outcome: Outcome) {
    match outcome {
        Outcome::Succeed => permit.success(),
        Outcome::Fail => permit.failure(),
        Outcome::Drop => drop(permit),
    }
}

fn run(failure_threshold: u32, success_threshold: u32, timeout: u64, ops: &[Op]) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    runtime.block_on(async {
        let observer = Arc::new(Counting::default());
        let config = CircuitBreakerConfig {
            failure_threshold,
            timeout: Duration::from_millis(timeout),
            success_threshold,
        };
        let breaker = CircuitBreaker::with_observer(config, Arc::clone(&observer)).unwrap();
        let mut model = Model {
            failure_threshold,
            success_threshold,
            timeout,
            ..Model::default()
        };
        let mut held: Vec<(Permit<'_, _>, ModelPermit)> = Vec::new();

        for (step, &op) in ops.iter().enumerate() {
            match op {
                Op::Acquire(outcome) => {
                    let real = breaker.try_acquire();
                    let expected = model.acquire();
                    assert_eq!(real.is_ok(), expected.is_some(), "step {step}: {op:?}");
                    if let (Ok(permit), Some(granted)) = (real, expected) {
                        assert_eq!(permit.is_trial(), granted.1, "step {step}: {op:?}");
                        record(permit, outcome);
                        model.finish(granted, outcome);
                    }
                }
                Op::Hold => {
                    if held.len() < MAX_HELD {
                        let real = breaker.try_acquire();
                        let expected = model.acquire();
                        assert_eq!(real.is_ok(), expected.is_some(), "step {step}: {op:?}");
                        if let (Ok(permit), Some(granted)) = (real, expected) {
                            held.push((permit, granted));
                        }
                    }
                }
                Op::Finish(index, outcome) => {
                    if !held.is_empty() {
                        let (permit, granted) = held.remove(index % held.len());
                        record(permit, outcome);
                        model.finish(granted, outcome);
                    }
                }
                Op::Check => {
                    assert_eq!(
                        breaker.check().is_ok(),
                        model.check(),
                        "step {step}: {op:?}"
                    );
                }
                Op::Advance(ms) => {
                    tokio::time::advance(Duration::from_millis(ms)).await;
                    model.now += ms;
                }
                Op::Trip => {
                    breaker.trip();
                    model.trip();
                }
                Op::Reset => {
                    breaker.reset();
                    model.reset();
                }
            }

            let (stats, retry_after) = model.observe();
            assert_eq!(breaker.stats(), stats, "step {step}: {op:?}");
            assert_eq!(breaker.state(), stats.state, "step {step}: {op:?}");
            assert_eq!(breaker.retry_after(), retry_after, "step {step}: {op:?}");
            assert_eq!(observer.counts(), model.hooks, "hooks, step {step}: {op:?}");
            assert!(stats.rejected_requests <= stats.total_requests);
        }
    });
}

proptest! {
    #[test]
    fn breaker_matches_the_reference_model(
        failure_threshold in 1u32..=4,
        success_threshold in 1u32..=3,
        timeout in prop_oneof![Just(0u64), 1u64..=100],
        ops in proptest::collection::vec(op(), 0..80),
    ) {
        run(failure_threshold, success_threshold, timeout, &ops);
    }
}
