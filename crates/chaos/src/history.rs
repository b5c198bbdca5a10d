//! The recorder: everything that happened in a campaign, with timestamps,
//! as the checker reads it afterwards.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use serde_json::{Value, json};

/// Microseconds since the campaign started.
pub type Micros = u64;

/// Formats a timestamp as seconds: `12.345s`.
pub fn secs(t: Micros) -> String {
    format!("{:.3}s", t as f64 / 1e6)
}

/// What a resuming client was told on a (re)connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Every event after its position follows (`replayed` from history).
    Recovered {
        /// Events replayed.
        replayed: u64,
    },
    /// Events since its position may be missing, with the hub's reason
    /// (`epoch`, `expired`, `too_many`, …).
    NotRecovered {
        /// The reason as the hub gave it.
        reason: String,
        /// Events the hub had after the client's position, when both
        /// positions are known (the one before and the one answered, in
        /// one epoch).
        gap: Option<u64>,
    },
}

impl fmt::Display for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Answer::Recovered { replayed } => write!(f, "recovered ({replayed} replayed)"),
            Answer::NotRecovered { reason, gap: None } => {
                write!(f, "NOT recovered, reason={reason}")
            }
            Answer::NotRecovered {
                reason,
                gap: Some(gap),
            } => write!(
                f,
                "NOT recovered, reason={reason} ({gap} events after its position)"
            ),
        }
    }
}

/// One thing that happened.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// A publisher handed an event to its transport (or its CLI's stdin).
    Publish {
        /// When.
        t: Micros,
        /// The publisher (one transport, or one `watchtower publish` process).
        publisher: Arc<str>,
        /// Its number, from 1 per publisher.
        seq: u64,
        /// The event type.
        event_type: Arc<str>,
    },
    /// The events were acknowledged (a `flush` returned Ok, or a
    /// `watchtower publish --at-least-once` exited 0).
    Ack {
        /// When.
        t: Micros,
        /// The publisher.
        publisher: Arc<str>,
        /// The acknowledged events.
        seqs: Vec<u64>,
    },
    /// `publish` failed: the event was refused before it was queued.
    Refused {
        /// When.
        t: Micros,
        /// The publisher.
        publisher: Arc<str>,
        /// The event.
        seq: u64,
        /// The error.
        why: String,
    },
    /// A transport dead-lettered an event (its own, or a received one).
    DeadLetter {
        /// When it was seen.
        t: Micros,
        /// The client whose dead-letter queue held it.
        client: Arc<str>,
        /// The event's publisher and number, when it was one of ours.
        event: Option<(Arc<str>, u64)>,
        /// The reason.
        reason: String,
    },
    /// An event reached a subscriber's handler (or a CLI printed it).
    Delivery {
        /// When.
        t: Micros,
        /// The subscriber instance (one transport, or one CLI process).
        instance: u32,
        /// The event's publisher.
        publisher: Arc<str>,
        /// The event's number.
        seq: u64,
    },
    /// A subscriber instance started.
    InstanceStart {
        /// When.
        t: Micros,
        /// Its number.
        instance: u32,
        /// The logical subscriber it continues (a CLI restarted with
        /// `--since` continues the one before it).
        subscriber: Arc<str>,
        /// The publisher name of the same client, for the echo check.
        own_publisher: Option<Arc<str>>,
        /// Its filter (empty: every type).
        filter: Vec<String>,
        /// The position it started from, if any.
        since: Option<String>,
        /// The process id, for CLI instances.
        pid: Option<u32>,
    },
    /// From here on, the subscriber must receive every matching event
    /// published (its subscription is in place, or its position is).
    Ready {
        /// When.
        t: Micros,
        /// The instance.
        instance: u32,
    },
    /// The hub answered a resume.
    Resume {
        /// When.
        t: Micros,
        /// The instance.
        instance: u32,
        /// What it said.
        answer: Answer,
    },
    /// A subscriber instance ended.
    InstanceEnd {
        /// When.
        t: Micros,
        /// The instance.
        instance: u32,
        /// How it was stopped (`sigint`, `kill -9`, `shutdown`).
        how: String,
        /// Its exit status, for a process.
        exit: Option<String>,
        /// The position it printed, if any.
        position: Option<String>,
    },
    /// A scheduled fault began.
    FaultBegin {
        /// When.
        t: Micros,
        /// Its number in the schedule.
        id: usize,
        /// What it is, as in the schedule (`cut link of sub0 for 2.10s`).
        text: String,
        /// The client it targets, for link faults and CLI restarts.
        client: Option<String>,
        /// Whether it hits every client (a hub, NATS, the hostile client).
        global: bool,
    },
    /// A scheduled fault ended (healed, restarted).
    FaultEnd {
        /// When.
        t: Micros,
        /// Its number in the schedule.
        id: usize,
    },
    /// A process exited.
    Exit {
        /// When.
        t: Micros,
        /// Which (`hub0`, `cli-pub0.3`, …).
        process: String,
        /// Its id.
        pid: u32,
        /// Its status.
        status: String,
        /// The exit was expected (stopped on purpose) and its status is
        /// as it should be.
        as_expected: bool,
        /// What was expected, for the report.
        expected: String,
        /// Whether a fault that hit the process's client may explain a bad
        /// exit (a publisher cut off from every hub); never for hubs, nor
        /// for the final stop after the drain.
        excusable: bool,
    },
    /// Events published by clients the checker does not track (the
    /// hostile flood): they take room in the hub's history.
    Untracked {
        /// When.
        t: Micros,
        /// How many.
        events: u64,
    },
    /// A hub process's resident memory and open sockets (invariant 6).
    HubMemory {
        /// When.
        t: Micros,
        /// Which hub (`hub0`).
        hub: String,
        /// `VmRSS`, in bytes.
        rss: u64,
        /// Open sockets (clients, the listener, NATS).
        sockets: u64,
        /// Whether this is its baseline: taken once it listened, before
        /// any client connected.
        baseline: bool,
    },
    /// A deadline passed: the run stopped making progress.
    Stalled {
        /// When.
        t: Micros,
        /// What did not finish in time.
        what: String,
    },
    /// A phase of the campaign began (`workload`, `drain`, `stop`).
    Phase {
        /// When.
        t: Micros,
        /// Its name.
        name: String,
    },
}

impl Record {
    /// When it happened.
    pub fn t(&self) -> Micros {
        match self {
            Record::Publish { t, .. }
            | Record::Ack { t, .. }
            | Record::Refused { t, .. }
            | Record::DeadLetter { t, .. }
            | Record::Delivery { t, .. }
            | Record::InstanceStart { t, .. }
            | Record::Ready { t, .. }
            | Record::Resume { t, .. }
            | Record::InstanceEnd { t, .. }
            | Record::FaultBegin { t, .. }
            | Record::FaultEnd { t, .. }
            | Record::Exit { t, .. }
            | Record::Untracked { t, .. }
            | Record::HubMemory { t, .. }
            | Record::Stalled { t, .. }
            | Record::Phase { t, .. } => *t,
        }
    }

    /// One JSON object, for the history file.
    pub fn to_json(&self) -> Value {
        match self {
            Record::Publish {
                t,
                publisher,
                seq,
                event_type,
            } => json!({"t": t, "publish": &**publisher, "seq": seq, "type": &**event_type}),
            Record::Ack { t, publisher, seqs } => {
                json!({"t": t, "ack": &**publisher, "seqs": seqs})
            }
            Record::Refused {
                t,
                publisher,
                seq,
                why,
            } => json!({"t": t, "refused": &**publisher, "seq": seq, "why": why}),
            Record::DeadLetter {
                t,
                client,
                event,
                reason,
            } => json!({"t": t, "dead_letter": &**client,
                "event": event.as_ref().map(|(p, s)| format!("{p}#{s}")), "reason": reason}),
            Record::Delivery {
                t,
                instance,
                publisher,
                seq,
            } => json!({"t": t, "delivery": instance, "publisher": &**publisher, "seq": seq}),
            Record::InstanceStart {
                t,
                instance,
                subscriber,
                own_publisher,
                filter,
                since,
                pid,
            } => json!({"t": t, "start": instance, "subscriber": &**subscriber,
                "own": own_publisher.as_deref(), "filter": filter, "since": since, "pid": pid}),
            Record::Ready { t, instance } => json!({"t": t, "ready": instance}),
            Record::Resume {
                t,
                instance,
                answer,
            } => {
                json!({"t": t, "resume": instance, "answer": answer.to_string()})
            }
            Record::InstanceEnd {
                t,
                instance,
                how,
                exit,
                position,
            } => json!({"t": t, "end": instance, "how": how, "exit": exit, "position": position}),
            Record::FaultBegin {
                t,
                id,
                text,
                client,
                global,
            } => json!({"t": t, "fault": id, "text": text, "client": client, "global": global}),
            Record::FaultEnd { t, id } => json!({"t": t, "fault_end": id}),
            Record::Exit {
                t,
                process,
                pid,
                status,
                as_expected,
                expected,
                excusable,
            } => json!({"t": t, "exit": process, "pid": pid, "status": status,
                "as_expected": as_expected, "expected": expected, "excusable": excusable}),
            Record::Untracked { t, events } => json!({"t": t, "untracked": events}),
            Record::HubMemory {
                t,
                hub,
                rss,
                sockets,
                baseline,
            } => json!({"t": t, "memory": hub, "rss": rss, "sockets": sockets,
                "baseline": baseline}),
            Record::Stalled { t, what } => json!({"t": t, "stalled": what}),
            Record::Phase { t, name } => json!({"t": t, "phase": name}),
        }
    }
}

/// Where every part of the campaign writes what happened. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Recorder {
    start: Instant,
    records: Arc<Mutex<Vec<Record>>>,
    instances: Arc<std::sync::atomic::AtomicU32>,
    /// Records of the workload (all but memory samples, which come on a
    /// timer): the drain waits for this to stop moving.
    activity: Arc<std::sync::atomic::AtomicU64>,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder::new()
    }
}

impl Recorder {
    /// A recorder whose clock starts now.
    pub fn new() -> Recorder {
        Recorder {
            start: Instant::now(),
            records: Arc::default(),
            instances: Arc::default(),
            activity: Arc::default(),
        }
    }

    /// Microseconds since the start.
    pub fn now(&self) -> Micros {
        u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// Records `record`.
    pub fn push(&self, record: Record) {
        if !matches!(record, Record::HubMemory { .. }) {
            self.activity
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        self.records
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(record);
    }

    /// How many records there are (it grows while anything happens).
    pub fn len(&self) -> usize {
        self.records
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// How many records the workload made (memory samples, which a timer
    /// makes, left out): still while nothing happens any more.
    pub fn activity(&self) -> u64 {
        self.activity.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether nothing was recorded yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A new subscriber instance number.
    pub fn next_instance(&self) -> u32 {
        self.instances
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    /// Everything recorded so far, in time order.
    pub fn snapshot(&self) -> Vec<Record> {
        let mut records = self
            .records
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        records.sort_by_key(Record::t);
        records
    }
}

/// Parses the `{"p": publisher, "s": seq}` payload the workload's events
/// carry; `None` for anything else.
pub fn parse_payload(payload: &Value) -> Option<(&str, u64)> {
    let publisher = payload.get("p")?.as_str()?;
    let seq = payload.get("s")?.as_u64()?;
    Some((publisher, seq))
}
