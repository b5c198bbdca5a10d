//! Property test: random sequences of pushes, drains and the transitions a
//! consumer makes (take, park, put back, finish), against a plain reference
//! model. Items are unique integers pushed in increasing order, so "oldest"
//! is simply "smallest".

use std::collections::VecDeque;
use std::sync::atomic::AtomicBool;

use proptest::prelude::*;

use crate::queue::{Entry, Take};
use crate::{DeadLetter, DeadLetterQueue, DeadLetterReason, DlqConfig, DlqStats, ReasonCounts};

#[derive(Debug, Clone)]
enum Op {
    Push(DeadLetterReason),
    /// `push_letter` of a letter that has already failed this many times.
    PushLetter(u32),
    Drain,
    DrainParked,
    /// A consumer takes the next pending entry.
    Take,
    /// A consumer gives up on one of the entries it holds (index modulo).
    Park(usize),
    /// A stopping consumer puts one back.
    PutBack(usize),
    /// A consumer's handler succeeds for one.
    Finish(usize),
}

fn reason() -> impl Strategy<Value = DeadLetterReason> {
    prop_oneof![
        Just(DeadLetterReason::Overflow),
        Just(DeadLetterReason::SendFailed),
        Just(DeadLetterReason::HandlerFailed),
        Just(DeadLetterReason::Shutdown),
        Just(DeadLetterReason::AckTimeout),
        Just(DeadLetterReason::Manual),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        10 => reason().prop_map(Op::Push),
        2 => (1..5u32).prop_map(Op::PushLetter),
        2 => Just(Op::Drain),
        1 => Just(Op::DrainParked),
        4 => Just(Op::Take),
        2 => any::<usize>().prop_map(Op::Park),
        2 => any::<usize>().prop_map(Op::PutBack),
        2 => any::<usize>().prop_map(Op::Finish),
    ]
}

/// The obvious implementation: sorted lists of item numbers.
#[derive(Debug, Default)]
struct Model {
    capacity: usize,
    pending: VecDeque<u64>,
    parked: VecDeque<u64>,
    held: Vec<u64>,
    total_pushed: u64,
    dropped: u64,
    consumed: u64,
    retries: u64,
    drained: u64,
    by_reason: ReasonCounts,
}

impl Model {
    /// Returns the item evicted or dropped, if any.
    fn push(&mut self, item: u64, reason: DeadLetterReason) -> Option<u64> {
        self.total_pushed += 1;
        self.by_reason.count(reason);
        if self.pending.len() + self.parked.len() + self.held.len() < self.capacity {
            self.pending.push_back(item);
            return None;
        }
        self.dropped += 1;
        let oldest = match (self.pending.front(), self.parked.front()) {
            (Some(pending), Some(parked)) if parked < pending => self.parked.pop_front(),
            (Some(_), _) => self.pending.pop_front(),
            (None, _) => self.parked.pop_front(),
        };
        match oldest {
            Some(oldest) => {
                self.pending.push_back(item);
                Some(oldest)
            }
            None => Some(item),
        }
    }

    fn stats(&self) -> DlqStats {
        DlqStats {
            len: self.pending.len(),
            capacity: self.capacity,
            parked: self.parked.len(),
            in_flight: self.held.len(),
            total_pushed: self.total_pushed,
            dropped: self.dropped,
            consumed: self.consumed,
            retries: self.retries,
            by_reason: self.by_reason,
        }
    }
}

fn insert_sorted(items: &mut VecDeque<u64>, item: u64) {
    let at = items.partition_point(|other| *other < item);
    items.insert(at, item);
}

fn item_numbers(letters: &[DeadLetter<u64>]) -> Vec<u64> {
    letters.iter().map(|letter| letter.item).collect()
}

fn run(capacity: usize, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let queue = DeadLetterQueue::new(DlqConfig {
        capacity,
        ..DlqConfig::default()
    })
    .unwrap();
    let inner = queue.inner();
    let never = AtomicBool::new(false);
    let mut model = Model {
        capacity,
        ..Model::default()
    };
    // What the simulated consumers hold, in step with `model.held`.
    let mut held: Vec<Entry<u64>> = Vec::new();
    let mut next_item = 0;

    for op in ops {
        match op {
            Op::Push(reason) => {
                let item = next_item;
                next_item += 1;
                let evicted = queue.push(item, reason, "failed");
                prop_assert_eq!(evicted.map(|letter| letter.item), model.push(item, reason));
            }
            Op::PushLetter(attempts) => {
                let item = next_item;
                next_item += 1;
                let mut letter = DeadLetter::new(item, DeadLetterReason::Manual, "failed");
                letter.attempts = attempts;
                let evicted = queue.push_letter(letter);
                let expected = model.push(item, DeadLetterReason::Manual);
                prop_assert_eq!(evicted.map(|letter| letter.item), expected);
            }
            Op::Drain => {
                let drained = item_numbers(&queue.drain());
                prop_assert_eq!(&drained, &Vec::from(std::mem::take(&mut model.pending)));
                model.drained += drained.len() as u64;
            }
            Op::DrainParked => {
                let drained = item_numbers(&queue.drain_parked());
                prop_assert_eq!(&drained, &Vec::from(std::mem::take(&mut model.parked)));
                model.drained += drained.len() as u64;
            }
            Op::Take => match inner.take_next(&never) {
                Take::Entry(entry) => {
                    prop_assert_eq!(Some(entry.letter.item), model.pending.pop_front());
                    model.held.push(entry.letter.item);
                    held.push(entry);
                }
                Take::Empty => prop_assert!(model.pending.is_empty()),
                Take::Stop => prop_assert!(false, "the queue is never closed here"),
            },
            Op::Park(index) | Op::PutBack(index) | Op::Finish(index) if !held.is_empty() => {
                let entry = held.remove(index % held.len());
                let item = model.held.remove(index % model.held.len());
                prop_assert_eq!(entry.letter.item, item);
                match op {
                    Op::Park(_) => {
                        inner.park(entry);
                        insert_sorted(&mut model.parked, item);
                        model.retries += 1;
                    }
                    Op::PutBack(_) => {
                        inner.put_back(entry);
                        insert_sorted(&mut model.pending, item);
                    }
                    _ => {
                        inner.consumed(entry);
                        model.consumed += 1;
                        model.retries += 1;
                    }
                }
            }
            Op::Park(_) | Op::PutBack(_) | Op::Finish(_) => {}
        }

        let stats = queue.stats();
        prop_assert_eq!(stats, model.stats());
        prop_assert!(stats.len + stats.parked + stats.in_flight <= capacity);
        prop_assert_eq!(queue.len(), stats.len);
        prop_assert_eq!(
            stats.total_pushed,
            (stats.len + stats.parked + stats.in_flight) as u64
                + model.drained
                + stats.consumed
                + stats.dropped
        );
        prop_assert_eq!(stats.by_reason.total(), stats.total_pushed);
        // Oldest first: both lists come out sorted.
        prop_assert_eq!(
            item_numbers(&queue.parked()),
            Vec::from(model.parked.clone())
        );
    }

    // Whatever is left comes out in order.
    for entry in held {
        inner.put_back(entry);
    }
    for item in model.held.drain(..) {
        insert_sorted(&mut model.pending, item);
    }
    prop_assert_eq!(
        item_numbers(&queue.drain()),
        Vec::from(model.pending.clone())
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn queue_matches_the_reference_model(
        capacity in 1..8usize,
        ops in proptest::collection::vec(op(), 0..120),
    ) {
        run(capacity, ops)?;
    }
}
