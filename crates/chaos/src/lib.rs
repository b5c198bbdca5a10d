//! Seeded fault campaigns against real `watchtower` processes, with every
//! delivery checked against the guarantees: `cargo xtask chaos`.
//!
//! A campaign starts release `watchtower hub` processes (one, or three on
//! a real `nats-server -js`), puts a [fault proxy] in front of every
//! client, and runs a workload of at-least-once publishers that number
//! their events, subscribers with and without filters, a client that
//! publishes and subscribes, and `watchtower subscribe` / `watchtower
//! publish` processes. A [`Schedule`] made from the seed injects the
//! enabled [`FaultKind`]s; the [`Recorder`] keeps every publish, ack,
//! delivery, resume answer, dead letter and exit; afterwards [`check()`]
//! judges the history against the guarantees (see [`mod@check`]'s module
//! docs for the six invariants; [`mod@memory`] for the hubs' memory
//! bound) and [`report::render`] says what broke, with the events'
//! history and the command that replays the run.
//!
//! [`Profile::NatsSoak`] plays issue #27's soak instead of a mixed
//! schedule: nats-server killed with -9 every 10–20 s, its store wiped
//! once ([`FaultKind::NatsWipe`]), checked by the same checker.
//!
//! ```
//! use std::time::Duration;
//! use watchtower_chaos::{FaultKind, Schedule, Topology};
//!
//! let topology = Topology { links: vec!["sub0".into()], hubs: 1, ..Topology::default() };
//! let a = Schedule::generate(42, Duration::from_secs(60), &[FaultKind::Cut], &topology);
//! let b = Schedule::generate(42, Duration::from_secs(60), &[FaultKind::Cut], &topology);
//! assert_eq!(a, b); // same seed, same schedule
//! ```
//!
//! [fault proxy]: watchtower_test_support::FaultProxy

#![deny(missing_docs)]

pub mod campaign;
pub mod check;
pub mod fault;
pub mod history;
pub mod memory;
pub mod procs;
pub mod report;
pub mod resend;
pub mod schedule;
pub mod workload;

pub use campaign::{Backplane, Options, Outcome, Profile, run};
pub use check::{CheckConfig, Figures, MemoryPeak, Verdict, Violation, check};
pub use fault::{DEFAULT_FAULTS, EXCLUDED, FaultKind};
pub use history::{Answer, Record, Recorder};
pub use schedule::{Fault, Schedule, Target, Topology};
