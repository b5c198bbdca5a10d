//! State-machine property test: random sequences of the non-waiting
//! operations, under every strategy, against a plain reference model (a
//! `VecDeque` and counters), plus a ledger that tracks where every item is.

use std::collections::{HashMap, VecDeque};

use proptest::prelude::*;

use crate::{
    BackpressureConfig, BackpressureQueue, BackpressureStats, BackpressureStrategy, PushError,
    Pushed,
};

#[derive(Debug, Clone)]
enum Op {
    TryPush,
    /// Put back up to this many of the most recently popped items.
    PushFront(usize),
    TryPop,
    TryPopBatch(usize),
    Drain,
    Close,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        12 => Just(Op::TryPush),
        4 => (0..5usize).prop_map(Op::PushFront),
        5 => Just(Op::TryPop),
        4 => (0..6usize).prop_map(Op::TryPopBatch),
        2 => Just(Op::Drain),
        1 => Just(Op::Close),
    ]
}

fn strategy() -> impl Strategy<Value = BackpressureStrategy> {
    prop_oneof![
        Just(BackpressureStrategy::DropOldest),
        Just(BackpressureStrategy::DropNewest),
        Just(BackpressureStrategy::Block),
    ]
}

/// The obvious implementation, without locks, waiting or logging.
#[derive(Debug)]
struct Model {
    strategy: BackpressureStrategy,
    capacity: usize,
    items: VecDeque<u64>,
    closed: bool,
    evicted: u64,
    rejected: u64,
    overflowed: u64,
    enqueued: u64,
    dequeued: u64,
    peak: usize,
}

impl Model {
    fn new(strategy: BackpressureStrategy, capacity: usize) -> Self {
        Self {
            strategy,
            capacity,
            items: VecDeque::new(),
            closed: false,
            evicted: 0,
            rejected: 0,
            overflowed: 0,
            enqueued: 0,
            dequeued: 0,
            peak: 0,
        }
    }

    fn try_push(&mut self, item: u64) -> Result<Pushed<u64>, PushError<u64>> {
        if self.closed {
            return Err(PushError::Closed(item));
        }
        if self.items.len() == self.capacity {
            if self.strategy != BackpressureStrategy::DropOldest {
                self.rejected += 1;
                return Err(PushError::Full(item));
            }
            let oldest = self.items.pop_front().unwrap();
            self.items.push_back(item);
            self.evicted += 1;
            self.enqueued += 1;
            return Ok(Pushed::Evicted(oldest));
        }
        self.items.push_back(item);
        self.enqueued += 1;
        self.peak = self.peak.max(self.items.len());
        Ok(Pushed::Enqueued)
    }

    fn push_front(&mut self, mut items: Vec<u64>) -> Vec<u64> {
        let room = self.capacity - self.items.len();
        let overflow = items.len().saturating_sub(room);
        let kept = items.split_off(overflow);
        self.enqueued += kept.len() as u64;
        self.overflowed += overflow as u64;
        for item in kept.into_iter().rev() {
            self.items.push_front(item);
        }
        self.peak = self.peak.max(self.items.len());
        items
    }

    fn pop_batch(&mut self, max: usize) -> Vec<u64> {
        let taken: Vec<u64> = (0..max).map_while(|_| self.items.pop_front()).collect();
        self.dequeued += taken.len() as u64;
        taken
    }

    fn stats(&self) -> BackpressureStats {
        BackpressureStats {
            current_queue_size: self.items.len(),
            max_queue_size: self.capacity,
            dropped_events: self.evicted + self.rejected + self.overflowed,
            evicted_events: self.evicted,
            rejected_events: self.rejected,
            total_enqueued: self.enqueued,
            total_dequeued: self.dequeued,
            peak_queue_size: self.peak,
            blocked_pushes: 0,
        }
    }
}

/// Where an item is, judged only from what the real queue returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Queued,
    /// Popped by the consumer; may be put back with `push_front`.
    Popped,
    /// Handed back by a push (`Evicted`, `Full`, `Closed`) or by `push_front`.
    Returned,
    Drained,
}

#[derive(Debug, Default)]
struct Ledger(HashMap<u64, Fate>);

impl Ledger {
    fn create(&mut self, item: u64) -> Result<(), TestCaseError> {
        prop_assert!(self.0.insert(item, Fate::Queued).is_none(), "{item} reused");
        Ok(())
    }

    /// Moves `item` from `from` to `to`; anything else means an item was lost
    /// or duplicated.
    fn moved(&mut self, item: u64, from: Fate, to: Fate) -> Result<(), TestCaseError> {
        let fate = self.0.get_mut(&item);
        prop_assert_eq!(
            fate.as_deref(),
            Some(&from),
            "item {} went to {:?}",
            item,
            to
        );
        if let Some(fate) = fate {
            *fate = to;
        }
        Ok(())
    }

    fn queued(&self) -> usize {
        self.0
            .values()
            .filter(|fate| **fate == Fate::Queued)
            .count()
    }
}

fn run(strategy: BackpressureStrategy, capacity: usize, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let queue = BackpressureQueue::new(BackpressureConfig {
        max_queue_size: capacity,
        strategy,
        warning_threshold: 0.5,
    })
    .unwrap();
    let mut model = Model::new(strategy, capacity);
    let mut ledger = Ledger::default();
    // Items the consumer popped and has not put back, in pop order.
    let mut popped: Vec<u64> = Vec::new();
    let mut next_item = 0;

    for op in ops {
        match op {
            Op::TryPush => {
                let item = next_item;
                next_item += 1;
                ledger.create(item)?;
                let result = queue.try_push(item);
                prop_assert_eq!(&result, &model.try_push(item));
                match result {
                    Ok(Pushed::Enqueued) => {}
                    Ok(Pushed::Evicted(oldest)) => {
                        ledger.moved(oldest, Fate::Queued, Fate::Returned)?;
                    }
                    Err(error) => {
                        let back = error.into_inner();
                        prop_assert_eq!(back, item);
                        ledger.moved(back, Fate::Queued, Fate::Returned)?;
                    }
                }
            }
            Op::PushFront(count) => {
                let back = popped.split_off(popped.len().saturating_sub(count));
                for &item in &back {
                    ledger.moved(item, Fate::Popped, Fate::Queued)?;
                }
                let overflow = queue.push_front(back.clone());
                prop_assert_eq!(&overflow, &model.push_front(back));
                for item in overflow {
                    ledger.moved(item, Fate::Queued, Fate::Returned)?;
                }
            }
            Op::TryPop => {
                let item = queue.try_pop();
                prop_assert_eq!(item.into_iter().collect::<Vec<_>>(), model.pop_batch(1));
                if let Some(item) = item {
                    ledger.moved(item, Fate::Queued, Fate::Popped)?;
                    popped.push(item);
                }
            }
            Op::TryPopBatch(max) => {
                let mut out = vec![u64::MAX]; // must be kept: batches append
                let moved = queue.try_pop_batch(max, &mut out);
                prop_assert_eq!(out.remove(0), u64::MAX);
                prop_assert_eq!(moved, out.len());
                prop_assert!(moved <= max);
                prop_assert_eq!(&out, &model.pop_batch(max));
                for item in out {
                    ledger.moved(item, Fate::Queued, Fate::Popped)?;
                    popped.push(item);
                }
            }
            Op::Drain => {
                let drained = queue.drain();
                prop_assert_eq!(&drained, &model.pop_batch(usize::MAX));
                for item in drained {
                    ledger.moved(item, Fate::Queued, Fate::Drained)?;
                }
            }
            Op::Close => {
                queue.close();
                model.closed = true;
            }
        }

        prop_assert!(queue.len() <= capacity);
        prop_assert_eq!(queue.len(), model.items.len());
        prop_assert_eq!(queue.len(), ledger.queued());
        prop_assert_eq!(queue.is_closed(), model.closed);
        let stats = queue.stats();
        prop_assert_eq!(stats, model.stats());
        prop_assert_eq!(
            stats.total_enqueued,
            stats.total_dequeued + stats.evicted_events + stats.current_queue_size as u64
        );
    }

    // Every item still queued comes out, in the model's order.
    let rest = queue.drain();
    prop_assert_eq!(&rest, &Vec::from(model.items.clone()));
    for item in rest {
        ledger.moved(item, Fate::Queued, Fate::Drained)?;
    }
    prop_assert_eq!(ledger.0.len() as u64, next_item);
    prop_assert_eq!(ledger.queued(), 0);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn queue_matches_the_reference_model(
        strategy in strategy(),
        capacity in 1..8usize,
        ops in proptest::collection::vec(op(), 0..120),
    ) {
        run(strategy, capacity, ops)?;
    }
}
