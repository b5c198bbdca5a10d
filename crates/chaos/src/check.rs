//! The checker: reads a recorded history and reports every breach of the
//! guarantees, numbered as in issue #24.
//!
//! 1. Every acknowledged event reaches every subscriber whose filter
//!    matches and whose position preceded it, unless that subscriber was
//!    told "not recovered" after the event was published — and then only
//!    if the hub had a cause (its history could not hold the gap, or it
//!    restarted without a shared backplane); excused events are counted
//!    by reason. On NATS, only a `nats-wipe` justifies `epoch`, and it
//!    excuses only the events the lost stream held: acknowledged before
//!    the wiped server came back, or stored before the wipe and never sent
//!    again (everything acknowledged into the new stream must still
//!    arrive). Nothing
//!    reaches a subscriber its filter excludes, and nothing arrives that
//!    nobody published.
//! 2. Each publisher's order holds at every subscriber instance.
//! 3. No client receives an event it published itself.
//! 4. No event reaches one subscriber instance twice — except, after a
//!    `nats-wipe`, an event it had received before it was told `epoch`,
//!    sent again in the new epoch (at least once across a broken
//!    continuity: a publisher resends what the lost stream had not
//!    acknowledged); those are counted, any other duplicate is reported.
//! 5. Nothing is refused or dead-lettered, and no process exits badly,
//!    without a fault in the schedule that hit it within
//!    [`CheckConfig::cause_window`].
//! 6. Every phase met its deadline (recorded as [`Record::Stalled`] while
//!    the campaign ran), and each hub's peak resident memory stayed within
//!    the bound [`memory::Budget::bound`] sets from its configured budgets,
//!    its baseline and its peak number of sockets.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::{self, Write as _};
use std::sync::Arc;

use crate::history::{Answer, Micros, Record, secs};
use crate::memory::{self, Budget};

/// What the checker needs to know about the hubs.
#[derive(Debug, Clone)]
pub struct CheckConfig {
    /// The hub's `history_size`: a gap of more events than this may be
    /// answered `expired` or `too_many`.
    pub history_size: u64,
    /// The hub's `history_ttl`, in microseconds: a gap older than this may
    /// be answered `expired`.
    pub history_ttl: Micros,
    /// Hubs share a NATS stream: a hub restart is no reason for `epoch`.
    pub nats: bool,
    /// How long after a fault a refusal, dead letter or bad exit may still
    /// be blamed on it, in microseconds.
    pub cause_window: Micros,
    /// The hubs' memory budgets, when the campaign measured their memory.
    pub memory: Option<Budget>,
}

impl Default for CheckConfig {
    fn default() -> Self {
        CheckConfig {
            history_size: 10_000,
            history_ttl: 120_000_000,
            nats: false,
            cause_window: 30_000_000,
            memory: None,
        }
    }
}

/// One breach of a guarantee.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The invariant's number (1–6, as in the module docs).
    pub invariant: u8,
    /// One line: what broke, where.
    pub title: String,
    /// When (the first offending record).
    pub t: Micros,
    /// The first offending events, as publisher and number.
    pub events: Vec<(Arc<str>, u64)>,
    /// Further lines of explanation.
    pub detail: Vec<String>,
}

/// The run's figures.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Figures {
    /// Events published by tracked publishers.
    pub published: u64,
    /// Of those, acknowledged.
    pub acked: u64,
    /// Deliveries to subscriber instances.
    pub deliveries: u64,
    /// Deliveries each acknowledged event was owed (invariant 1).
    pub owed: u64,
    /// Faults injected.
    pub faults: u64,
    /// Resume answers: recovered.
    pub recovered: u64,
    /// Resume answers: not recovered.
    pub not_recovered: u64,
    /// Events replayed on recovered resumes.
    pub replayed: u64,
    /// Owed deliveries excused by a justified "not recovered", by reason.
    pub excused: BTreeMap<String, u64>,
    /// Events refused or dead-lettered (with a cause).
    pub refused_or_dead: u64,
    /// Subscriber instances (a restarted CLI counts again).
    pub instances: u64,
    /// Events a subscriber received again after it was told `epoch`
    /// following a `nats-wipe`, having had them before (allowed).
    pub epoch_duplicates: u64,
    /// Each hub's memory against its bound, when measured.
    pub memory: Vec<MemoryPeak>,
}

/// One hub's memory over the run (invariant 6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryPeak {
    /// The hub (`hub0`).
    pub hub: String,
    /// Its `VmRSS` once it listened, before any client.
    pub baseline: u64,
    /// Its highest `VmRSS` sampled.
    pub peak: u64,
    /// The most sockets it held at once.
    pub sockets: u64,
    /// What its budgets allow (see [`Budget::bound`]).
    pub bound: u64,
}

impl fmt::Display for MemoryPeak {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} peak {} of {} allowed (baseline {}, {} sockets)",
            self.hub,
            memory::mib(self.peak),
            memory::mib(self.bound),
            memory::mib(self.baseline),
            self.sockets
        )
    }
}

impl fmt::Display for Figures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} events published, {} acknowledged, {} deliveries owed, {} made; {} faults; \
             resumes: {} recovered ({} events replayed), {} not recovered; {} refused or \
             dead-lettered with a cause; {} subscriber instances",
            self.published,
            self.acked,
            self.owed,
            self.deliveries,
            self.faults,
            self.recovered,
            self.replayed,
            self.not_recovered,
            self.refused_or_dead,
            self.instances
        )?;
        if !self.excused.is_empty() {
            let parts: Vec<String> = self
                .excused
                .iter()
                .map(|(reason, n)| format!("{n} ({reason})"))
                .collect();
            write!(
                f,
                "; owed deliveries excused (the subscriber was told, with a cause): {}",
                parts.join(", ")
            )?;
        }
        if self.epoch_duplicates > 0 {
            write!(
                f,
                "; {} event(s) received again after `epoch` (had before the wipe)",
                self.epoch_duplicates
            )?;
        }
        if !self.memory.is_empty() {
            let parts: Vec<String> = self.memory.iter().map(MemoryPeak::to_string).collect();
            write!(f, "; hub memory: {}", parts.join("; "))?;
        }
        Ok(())
    }
}

/// The checker's verdict.
#[derive(Debug, Clone, Default)]
pub struct Verdict {
    /// Every breach, by invariant then time.
    pub violations: Vec<Violation>,
    /// The run's figures.
    pub figures: Figures,
}

impl Verdict {
    /// Whether every guarantee held.
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }
}

#[derive(Debug)]
struct Published {
    event_type: Arc<str>,
    t: Micros,
    acked: Option<Micros>,
    settled: Option<(Micros, String)>,
}

#[derive(Debug, Default)]
struct Instance {
    subscriber: Arc<str>,
    own: Option<Arc<str>>,
    filter: Vec<String>,
    start: Micros,
    since: Option<String>,
    pid: Option<u32>,
    ready: Option<Micros>,
    end: Option<(Micros, String, Option<String>, Option<String>)>,
    deliveries: Vec<(Micros, Arc<str>, u64)>,
    resumes: Vec<(Micros, Answer)>,
}

impl Instance {
    fn wants(&self, event_type: &str) -> bool {
        self.filter.is_empty() || self.filter.iter().any(|f| f == event_type)
    }

    fn name(&self, id: u32) -> String {
        match self.pid {
            Some(pid) => format!("{} (instance {id}, pid {pid})", self.subscriber),
            None => format!("{} (instance {id})", self.subscriber),
        }
    }
}

#[derive(Debug)]
struct FaultSpan {
    text: String,
    client: Option<String>,
    global: bool,
    begin: Micros,
    end: Option<Micros>,
}

impl FaultSpan {
    fn kind(&self) -> &str {
        self.text.split_whitespace().next().unwrap_or("")
    }

    fn describe(&self) -> String {
        match self.end {
            Some(end) => format!("{} .. {}: {}", secs(self.begin), secs(end), self.text),
            None => format!("{} ..: {}", secs(self.begin), self.text),
        }
    }
}

/// An event: its publisher and number.
type Key = (Arc<str>, u64);
/// Offending events of one kind: when first, the first few with a line
/// each, how many in all.
type Sample = (Micros, Vec<Key>, u64, Vec<String>);
/// Offending events of one kind: a note, the first few, how many.
type Tally<N = String> = (N, Vec<Key>, u64);

/// The history, indexed.
struct Index<'a> {
    config: &'a CheckConfig,
    events: HashMap<(Arc<str>, u64), Published>,
    /// Publish times of every event (tracked and untracked), sorted, with
    /// counts.
    load: Vec<(Micros, u64)>,
    instances: BTreeMap<u32, Instance>,
    faults: Vec<FaultSpan>,
    /// Received events a subscriber's transport dead-lettered (told, not
    /// silent: excused for invariant 1; invariant 5 wants a cause).
    dropped: HashSet<(Arc<str>, Arc<str>, u64)>,
}

impl<'a> Index<'a> {
    fn build(records: &[Record], config: &'a CheckConfig) -> Index<'a> {
        let mut index = Index {
            config,
            events: HashMap::new(),
            load: Vec::new(),
            instances: BTreeMap::new(),
            faults: Vec::new(),
            dropped: HashSet::new(),
        };
        let mut fault_ids: HashMap<usize, usize> = HashMap::new();
        for record in records {
            match record {
                Record::Publish {
                    t,
                    publisher,
                    seq,
                    event_type,
                } => {
                    index.events.insert(
                        (Arc::clone(publisher), *seq),
                        Published {
                            event_type: Arc::clone(event_type),
                            t: *t,
                            acked: None,
                            settled: None,
                        },
                    );
                    index.load.push((*t, 1));
                }
                Record::Ack { t, publisher, seqs } => {
                    for seq in seqs {
                        if let Some(e) = index.events.get_mut(&(Arc::clone(publisher), *seq)) {
                            e.acked.get_or_insert(*t);
                        }
                    }
                }
                Record::Refused {
                    t,
                    publisher,
                    seq,
                    why,
                } => {
                    if let Some(e) = index.events.get_mut(&(Arc::clone(publisher), *seq)) {
                        e.settled = Some((*t, format!("refused: {why}")));
                    }
                }
                Record::DeadLetter {
                    t,
                    event: Some(key),
                    reason,
                    client,
                } => {
                    if **client == *key.0 {
                        if let Some(e) = index.events.get_mut(key) {
                            e.settled = Some((*t, format!("dead-lettered: {reason}")));
                        }
                    } else {
                        index
                            .dropped
                            .insert((Arc::clone(client), Arc::clone(&key.0), key.1));
                    }
                }
                Record::Untracked { t, events } => index.load.push((*t, *events)),
                Record::InstanceStart {
                    t,
                    instance,
                    subscriber,
                    own_publisher,
                    filter,
                    since,
                    pid,
                } => {
                    index.instances.insert(
                        *instance,
                        Instance {
                            subscriber: Arc::clone(subscriber),
                            own: own_publisher.clone(),
                            filter: filter.clone(),
                            start: *t,
                            since: since.clone(),
                            pid: *pid,
                            ..Instance::default()
                        },
                    );
                }
                Record::Ready { t, instance } => {
                    if let Some(i) = index.instances.get_mut(instance) {
                        i.ready.get_or_insert(*t);
                    }
                }
                Record::Delivery {
                    t,
                    instance,
                    publisher,
                    seq,
                } => {
                    if let Some(i) = index.instances.get_mut(instance) {
                        i.deliveries.push((*t, Arc::clone(publisher), *seq));
                    }
                }
                Record::Resume {
                    t,
                    instance,
                    answer,
                } => {
                    if let Some(i) = index.instances.get_mut(instance) {
                        i.resumes.push((*t, answer.clone()));
                    }
                }
                Record::InstanceEnd {
                    t,
                    instance,
                    how,
                    exit,
                    position,
                } => {
                    if let Some(i) = index.instances.get_mut(instance) {
                        i.end = Some((*t, how.clone(), exit.clone(), position.clone()));
                    }
                }
                Record::FaultBegin {
                    t,
                    id,
                    text,
                    client,
                    global,
                } => {
                    fault_ids.insert(*id, index.faults.len());
                    index.faults.push(FaultSpan {
                        text: text.clone(),
                        client: client.clone(),
                        global: *global,
                        begin: *t,
                        end: None,
                    });
                }
                Record::FaultEnd { t, id } => {
                    if let Some(span) = fault_ids.get(id).and_then(|i| index.faults.get_mut(*i)) {
                        span.end = Some(*t);
                    }
                }
                _ => {}
            }
        }
        index.load.sort_unstable();
        index
    }

    /// Events published in `(from, to]`, tracked or not.
    fn published_between(&self, from: Micros, to: Micros) -> u64 {
        let lo = self.load.partition_point(|(t, _)| *t <= from);
        let hi = self.load.partition_point(|(t, _)| *t <= to);
        self.load[lo..hi].iter().map(|(_, n)| n).sum()
    }

    /// A fault that hit `client` (or everyone) at `t`, or shortly before.
    fn cause(&self, client: &str, t: Micros) -> Option<&FaultSpan> {
        self.faults.iter().find(|f| {
            (f.global || f.client.as_deref() == Some(client))
                && f.begin <= t
                && f.end.is_none_or(|end| end + self.config.cause_window >= t)
        })
    }

    fn faults_near(&self, t: Micros, before: Micros, after: Micros) -> Vec<String> {
        self.faults
            .iter()
            .filter(|f| {
                f.begin <= t + after && f.end.unwrap_or(Micros::MAX).saturating_add(before) >= t
            })
            .map(FaultSpan::describe)
            .collect()
    }

    /// Whether a "not recovered" answered at `t` had a cause; why not if
    /// not. `gap`: the events the hub had after the client's position,
    /// when known; else they are counted from `last`, the client's last
    /// delivery before. `since`: when the client was last told `epoch`
    /// (or started): a hub restart after that is a cause for `epoch`.
    fn justified(
        &self,
        reason: &str,
        gap: Option<u64>,
        last: Micros,
        since: Micros,
        t: Micros,
    ) -> Result<String, String> {
        let counted = gap.unwrap_or_else(|| self.published_between(last, t));
        let age = t.saturating_sub(last);
        let size = self.config.history_size;
        let full = counted.saturating_mul(10) >= size.saturating_mul(9);
        let old = age.saturating_mul(10) >= self.config.history_ttl.saturating_mul(9);
        let figures = match gap {
            Some(gap) => format!(
                "the hub had {gap} events after its position; its history holds {size} events \
                 for {:.0}s",
                self.config.history_ttl as f64 / 1e6
            ),
            None => format!(
                "{counted} events were published since its last delivery at {} ({:.1}s before); \
                 the history holds {size} events for {:.0}s",
                secs(last),
                age as f64 / 1e6,
                self.config.history_ttl as f64 / 1e6
            ),
        };
        let restart = self.faults.iter().find(|f| {
            matches!(f.kind(), "hub-kill" | "hub-restart") && f.begin <= t && f.begin >= since
        });
        match reason {
            "expired" if full || old => Ok(figures),
            "too_many" if full => Ok(figures),
            "epoch" if !self.config.nats => match restart {
                Some(f) => Ok(format!("the hub restarted: {}", f.describe())),
                None => Err(format!(
                    "no hub restarted since {} (when it started or was last told `epoch`)",
                    secs(since)
                )),
            },
            "epoch" => match self.wipe(since, t) {
                Some(f) => Ok(format!("the NATS store was wiped: {}", f.describe())),
                None => Err(format!(
                    "the hubs share a NATS stream that was not wiped since {}{}",
                    secs(since),
                    restart.map_or(String::new(), |f| format!(" (a hub restarted: {})", f.text))
                )),
            },
            _ => Err(format!("the history held every one of them: {figures}")),
        }
    }

    /// The `nats-wipe` that began in `[since, t]`: the one cause for an
    /// `epoch` answered at `t` to a subscriber last told `epoch` (or
    /// started) at `since`, when the hubs share a stream.
    fn wipe(&self, since: Micros, t: Micros) -> Option<&FaultSpan> {
        self.faults
            .iter()
            .find(|f| f.kind() == "nats-wipe" && f.begin >= since && f.begin <= t)
    }

    /// Whether a `nats-wipe` began before `t`.
    fn wiped_before(&self, t: Micros) -> bool {
        self.faults
            .iter()
            .any(|f| f.kind() == "nats-wipe" && f.begin <= t)
    }

    /// Everything known about one event, for a report.
    fn story(&self, key: &(Arc<str>, u64)) -> Vec<String> {
        let mut lines = Vec::new();
        let Some(e) = self.events.get(key) else {
            lines.push(format!("{}#{} was never published", key.0, key.1));
            return lines;
        };
        let mut line = format!(
            "{}#{} ({}) published at {}",
            key.0,
            key.1,
            e.event_type,
            secs(e.t)
        );
        match e.acked {
            Some(t) => {
                let _ = write!(line, ", acknowledged at {}", secs(t));
            }
            None => line.push_str(", never acknowledged"),
        }
        if let Some((t, why)) = &e.settled {
            let _ = write!(line, ", {why} at {}", secs(*t));
        }
        lines.push(line);
        let mut got = Vec::new();
        for (id, i) in &self.instances {
            for (t, p, s) in &i.deliveries {
                if *p == key.0 && *s == key.1 {
                    got.push(format!("{}@{}", i.name(*id), secs(*t)));
                }
            }
        }
        if got.is_empty() {
            lines.push("delivered to nobody".to_string());
        } else {
            lines.push(format!("delivered to: {}", got.join(", ")));
        }
        lines
    }
}

/// Checks `records` (in time order) against every guarantee.
pub fn check(records: &[Record], config: &CheckConfig) -> Verdict {
    let index = Index::build(records, config);
    let mut verdict = Verdict::default();
    figures(&index, records, &mut verdict.figures);
    per_instance(&index, &mut verdict);
    delivery(&index, &mut verdict);
    causes(&index, records, &mut verdict);
    if let Some(budget) = &config.memory {
        hub_memory(records, budget, &mut verdict);
    }
    for record in records {
        if let Record::Stalled { t, what } = record {
            verdict.violations.push(Violation {
                invariant: 6,
                title: format!("no progress: {what}"),
                t: *t,
                events: Vec::new(),
                detail: index.faults_near(*t, 30_000_000, 1_000_000),
            });
        }
    }
    verdict
        .violations
        .sort_by_key(|v| (v.invariant, v.t, v.title.clone()));
    verdict
}

fn figures(index: &Index<'_>, records: &[Record], figures: &mut Figures) {
    figures.published = index.events.len() as u64;
    figures.acked = index.events.values().filter(|e| e.acked.is_some()).count() as u64;
    figures.faults = index.faults.len() as u64;
    figures.instances = index.instances.len() as u64;
    for record in records {
        match record {
            Record::Delivery { .. } => figures.deliveries += 1,
            Record::Resume {
                answer: Answer::Recovered { replayed },
                ..
            } => {
                figures.recovered += 1;
                figures.replayed += replayed;
            }
            Record::Resume { .. } => figures.not_recovered += 1,
            _ => {}
        }
    }
}

/// Invariants 2, 3, 4 and the filter: per subscriber instance.
fn per_instance(index: &Index<'_>, verdict: &mut Verdict) {
    let violations = &mut verdict.violations;
    for (id, instance) in &index.instances {
        // When it was told `epoch` after a wipe: what it had before may
        // come again after.
        let epochs: Vec<Micros> = instance
            .resumes
            .iter()
            .filter(|(t, a)| {
                matches!(a, Answer::NotRecovered { reason, .. } if reason == "epoch")
                    && index.config.nats
                    && index.wiped_before(*t)
            })
            .map(|(t, _)| *t)
            .collect();
        let mut seen: HashMap<(Arc<str>, u64), Micros> = HashMap::new();
        let mut highest: HashMap<Arc<str>, (u64, Micros)> = HashMap::new();
        // (invariant, what) → (first t, events, count)
        let mut found: BTreeMap<(u8, String), Sample> = BTreeMap::new();
        let mut note = |inv: u8, what: String, t: Micros, key: (Arc<str>, u64), line: String| {
            let entry = found
                .entry((inv, what))
                .or_insert_with(|| (t, Vec::new(), 0, Vec::new()));
            entry.2 += 1;
            if entry.1.len() < 5 {
                entry.1.push(key);
                entry.3.push(line);
            }
        };
        for (t, publisher, seq) in &instance.deliveries {
            let key = (Arc::clone(publisher), *seq);
            if instance.own.as_ref() == Some(publisher) {
                note(
                    3,
                    "received its own events".into(),
                    *t,
                    key.clone(),
                    format!("{publisher}#{seq} came back at {}", secs(*t)),
                );
            }
            match index.events.get(&key) {
                None => note(
                    1,
                    "received events nobody published".into(),
                    *t,
                    key.clone(),
                    format!("{publisher}#{seq} at {}", secs(*t)),
                ),
                Some(e) if !instance.wants(&e.event_type) => note(
                    1,
                    format!("received events its filter {:?} excludes", instance.filter),
                    *t,
                    key.clone(),
                    format!("{publisher}#{seq} ({}) at {}", e.event_type, secs(*t)),
                ),
                Some(_) => {}
            }
            if let Some(first) = seen.get(&key).copied() {
                if epochs.iter().any(|e| first < *e && *e <= *t) {
                    verdict.figures.epoch_duplicates += 1;
                    continue;
                }
                note(
                    4,
                    "received events twice".into(),
                    *t,
                    key,
                    format!(
                        "{publisher}#{seq} again at {} (first at {})",
                        secs(*t),
                        secs(first)
                    ),
                );
                continue;
            }
            seen.insert(key.clone(), *t);
            let top = highest.entry(Arc::clone(publisher)).or_insert((0, 0));
            if *seq < top.0 {
                note(
                    2,
                    format!("received {publisher}'s events out of order"),
                    *t,
                    key,
                    format!(
                        "{publisher}#{seq} at {} after {publisher}#{} at {}",
                        secs(*t),
                        top.0,
                        secs(top.1)
                    ),
                );
            } else {
                *top = (*seq, *t);
            }
        }
        for ((invariant, what), (t, events, count, lines)) in found {
            let mut detail = lines;
            detail.extend(resume_lines(instance));
            detail.extend(
                index
                    .faults_near(t, 15_000_000, 2_000_000)
                    .into_iter()
                    .map(|f| format!("fault {f}")),
            );
            violations.push(Violation {
                invariant,
                title: format!("{} {what}: {count} event(s)", instance.name(*id)),
                t,
                events,
                detail,
            });
        }
    }
}

fn resume_lines(instance: &Instance) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(since) = &instance.since {
        lines.push(format!(
            "started at {} with --since {since}",
            secs(instance.start)
        ));
    }
    for (t, answer) in &instance.resumes {
        lines.push(format!("resume at {}: {answer}", secs(*t)));
    }
    if let Some((t, how, exit, position)) = &instance.end {
        let mut line = format!(
            "stopped at {} by {how} after {} deliveries",
            secs(*t),
            instance.deliveries.len()
        );
        if let Some(exit) = exit {
            let _ = write!(line, ", {exit}");
        }
        if let Some(position) = position {
            let _ = write!(line, ", printed position {position}");
        }
        lines.push(line);
    }
    lines
}

/// How long before a subscriber's last delivery an event may have been
/// acknowledged and still be in the range a "not recovered" answer then
/// covers (the hub acknowledges after it appended, and delivers in the
/// order it appended: an event acknowledged well before the last delivery
/// was before the subscriber's position).
const COVER_MARGIN: Micros = 1_000_000;

/// The events a "not recovered" answer covers, by acknowledgement time.
#[derive(Debug, Clone, Copy)]
enum Cover {
    /// Acknowledged from this time on (after the subscriber's position).
    AckedFrom(Micros),
    /// In a NATS stream since wiped: see [`Wiped`].
    Wiped(Micros, Micros),
}

/// What the history shows of one `nats-wipe` (begun, ended): which events
/// the lost stream held. An event acknowledged before the wiped server
/// came back was in it. So was one published before the wipe whose
/// acknowledgement was recorded later (a flush returns for its whole
/// batch, so the record can come seconds after the ack) if some
/// subscriber had it before the wipe (it was stored) and its publisher
/// did not send it again into the new stream (nobody received a number
/// of that publisher as low after the wipe: a transport resends what is
/// unacknowledged, in order).
struct Wiped<'a> {
    before: HashSet<(&'a str, u64)>,
    resumed_at: HashMap<&'a str, u64>,
}

impl<'a> Wiped<'a> {
    fn new(index: &'a Index<'_>, begin: Micros, end: Micros) -> Wiped<'a> {
        let mut before = HashSet::new();
        let mut resumed_at: HashMap<&str, u64> = HashMap::new();
        for instance in index.instances.values() {
            for (t, p, seq) in &instance.deliveries {
                if *t < begin {
                    before.insert((&**p, *seq));
                } else if *t >= end {
                    let first = resumed_at.entry(&**p).or_insert(*seq);
                    *first = (*first).min(*seq);
                }
            }
        }
        Wiped { before, resumed_at }
    }

    fn held(&self, key: &(Arc<str>, u64), e: &Published, begin: Micros, end: Micros) -> bool {
        if e.acked.is_some_and(|t| t < end) {
            return true;
        }
        e.t < begin
            && self.before.contains(&(&*key.0, key.1))
            && self.resumed_at.get(&*key.0).is_none_or(|r| key.1 < *r)
    }
}

impl Cover {
    fn covers(
        self,
        key: &(Arc<str>, u64),
        e: &Published,
        wiped: &HashMap<(Micros, Micros), Wiped<'_>>,
    ) -> bool {
        match self {
            Cover::AckedFrom(from) => e.acked.is_some_and(|t| t >= from),
            Cover::Wiped(begin, end) => wiped
                .get(&(begin, end))
                .is_some_and(|w| w.held(key, e, begin, end)),
        }
    }
}

/// Invariant 1: every logical subscriber (its instances together) got
/// every acknowledged event it was owed.
fn delivery(index: &Index<'_>, verdict: &mut Verdict) {
    let mut logical: BTreeMap<Arc<str>, Vec<u32>> = BTreeMap::new();
    for (id, instance) in &index.instances {
        logical
            .entry(Arc::clone(&instance.subscriber))
            .or_default()
            .push(*id);
    }
    let mut acked: Vec<(&(Arc<str>, u64), &Published)> = index
        .events
        .iter()
        .filter(|(_, e)| e.acked.is_some())
        .collect();
    acked.sort_by_key(|(k, e)| (e.t, Arc::clone(&k.0), k.1));
    for (name, ids) in logical {
        let instances: Vec<(u32, &Instance)> = ids
            .iter()
            .filter_map(|id| index.instances.get(id).map(|i| (*id, i)))
            .collect();
        let Some(claim) = instances.iter().filter_map(|(_, i)| i.ready).min() else {
            continue;
        };
        let first = instances[0].1;
        let mut got: HashSet<(&str, u64)> = HashSet::new();
        let mut times: Vec<Micros> = Vec::new();
        for (_, i) in &instances {
            for (t, p, s) in &i.deliveries {
                got.insert((p, *s));
                times.push(*t);
            }
        }
        times.sort_unstable();
        // Not-recovered answers to any of its instances, in time order,
        // each judged once: had the hub a cause?
        let mut answers: Vec<(Micros, u32, &str, Option<u64>)> = instances
            .iter()
            .flat_map(|(id, i)| {
                i.resumes.iter().filter_map(move |(t, a)| match a {
                    Answer::NotRecovered { reason, gap } => Some((*t, *id, reason.as_str(), *gap)),
                    Answer::Recovered { .. } => None,
                })
            })
            .collect();
        answers.sort_unstable();
        let mut judged: Vec<Result<String, String>> = Vec::new();
        // Each answer covers the events published before it and
        // acknowledged (appended by a hub) after the subscriber's last
        // delivery before it, less a margin: the range from its position.
        // After a wipe the range is instead what was acknowledged before
        // the wiped server came back (in the lost stream).
        let mut covers: Vec<Cover> = Vec::new();
        let mut wiped: HashMap<(Micros, Micros), Wiped<'_>> = HashMap::new();
        let mut epoch_since = claim;
        for (t, id, reason, gap) in &answers {
            let instance = index.instances.get(id);
            // The last delivery before the client lost its way: before
            // this instance started if it had none since (a restart with
            // --since), else shortly before the answer (recorded a little
            // after the fact).
            let had = instance.is_some_and(|i| i.deliveries.iter().any(|d| d.0 < *t));
            let bound = if had {
                t.saturating_sub(250_000)
            } else {
                // Its first connect: the position it started from is as old
                // as the instance that printed it (after a kill -9, an
                // older one than its last delivery), or the chain's start.
                let since = instance.and_then(|i| i.since.as_deref());
                instances
                    .iter()
                    .filter_map(|(_, i)| i.end.as_ref())
                    .filter(|end| end.3.is_some() && end.3.as_deref() == since && end.0 <= *t)
                    .map(|end| end.0)
                    .max()
                    .unwrap_or(claim)
            };
            let before = times.partition_point(|d| *d < bound);
            let last = if before == 0 {
                claim
            } else {
                times[before - 1]
            };
            let wipe = (*reason == "epoch" && index.config.nats)
                .then(|| index.wipe(epoch_since, *t))
                .flatten();
            covers.push(match wipe {
                Some(f) => {
                    let end = f.end.unwrap_or(f.begin);
                    wiped
                        .entry((f.begin, end))
                        .or_insert_with(|| Wiped::new(index, f.begin, end));
                    Cover::Wiped(f.begin, end)
                }
                None => Cover::AckedFrom(last.saturating_sub(COVER_MARGIN)),
            });
            judged.push(index.justified(reason, *gap, last, epoch_since, *t));
            if *reason == "epoch" {
                epoch_since = *t;
            }
        }
        let mut lost: Vec<(Arc<str>, u64)> = Vec::new();
        let mut lost_count = 0u64;
        // (answer time, instance, reason) → (verdict text, events, count)
        let mut unjustified: BTreeMap<(Micros, u32, String), Tally> = BTreeMap::new();
        for (key, e) in &acked {
            if e.t < claim || first.own.as_ref() == Some(&key.0) || !first.wants(&e.event_type) {
                continue;
            }
            verdict.figures.owed += 1;
            if got.contains(&(&*key.0, key.1)) {
                continue;
            }
            if index
                .dropped
                .contains(&(Arc::clone(&name), Arc::clone(&key.0), key.1))
            {
                *verdict
                    .figures
                    .excused
                    .entry("dead-lettered by the subscriber".to_string())
                    .or_default() += 1;
                continue;
            }
            // The first "not recovered" whose range covers it excuses it,
            // if the hub had a cause.
            let covering = answers
                .iter()
                .zip(&covers)
                .position(|(a, cover)| a.0 > e.t && cover.covers(key, e, &wiped));
            match covering {
                Some(k) => {
                    let (t, instance, reason, _) = answers[k];
                    match &judged[k] {
                        Ok(_) => {
                            *verdict
                                .figures
                                .excused
                                .entry(reason.to_string())
                                .or_default() += 1;
                        }
                        Err(why) => {
                            let entry = unjustified
                                .entry((t, instance, reason.to_string()))
                                .or_insert_with(|| (why.clone(), Vec::new(), 0));
                            entry.2 += 1;
                            if entry.1.len() < 5 {
                                entry.1.push((Arc::clone(&key.0), key.1));
                            }
                        }
                    }
                }
                None => {
                    lost_count += 1;
                    if lost.len() < 5 {
                        lost.push((Arc::clone(&key.0), key.1));
                    }
                }
            }
        }
        let filter = if first.filter.is_empty() {
            "every type".to_string()
        } else {
            first.filter.join(", ")
        };
        for ((t, instance, reason), (why, events, count)) in unjustified {
            let mut detail = vec![format!("no cause for it: {why}")];
            for key in &events {
                detail.extend(index.story(key));
            }
            if let Some(i) = index.instances.get(&instance) {
                detail.extend(resume_lines(i));
            }
            detail.extend(
                index
                    .faults_near(t, 20_000_000, 1_000_000)
                    .into_iter()
                    .map(|f| format!("fault {f}")),
            );
            verdict.violations.push(Violation {
                invariant: 1,
                title: format!(
                    "{name} ({filter}) was told `{reason}` at {} with no cause: {count} \
                     acknowledged event(s) it was owed never arrived",
                    secs(t)
                ),
                t,
                events,
                detail,
            });
        }
        if lost_count > 0 {
            let t = lost
                .first()
                .and_then(|k| index.events.get(k))
                .map_or(0, |e| e.t);
            let mut detail = Vec::new();
            for key in &lost {
                detail.extend(index.story(key));
                if let Some(e) = index.events.get(key) {
                    let before = times.partition_point(|d| *d < e.t);
                    if before > 0 {
                        detail.push(format!(
                            "  {name}'s last delivery before it: {}",
                            secs(times[before - 1])
                        ));
                    }
                }
            }
            // The instances alive around the first lost event.
            for (id, i) in &instances {
                let ended = i.end.as_ref().map_or(Micros::MAX, |e| e.0);
                if i.start > t.saturating_add(5_000_000) || ended.saturating_add(1_000_000) < t {
                    continue;
                }
                let lines = resume_lines(i);
                if !lines.is_empty() {
                    detail.push(format!("{}:", i.name(*id)));
                    detail.extend(lines.into_iter().map(|l| format!("  {l}")));
                }
            }
            detail.extend(
                index
                    .faults_near(t, 15_000_000, 5_000_000)
                    .into_iter()
                    .map(|f| format!("fault {f}")),
            );
            verdict.violations.push(Violation {
                invariant: 1,
                title: format!(
                    "{name} ({filter}) never received {lost_count} acknowledged event(s) it was \
                     owed, and was never told they were not recovered"
                ),
                t,
                events: lost,
                detail,
            });
        }
    }
}

/// Invariant 6, memory: each hub's peak `VmRSS` against what its budgets
/// allow with its baseline and its peak number of sockets.
fn hub_memory(records: &[Record], budget: &Budget, verdict: &mut Verdict) {
    // hub → (baseline, peak rss and when, peak sockets, samples)
    type Seen = (Option<u64>, (u64, Micros), u64, u64);
    let mut hubs: BTreeMap<&str, Seen> = BTreeMap::new();
    for record in records {
        if let Record::HubMemory {
            t,
            hub,
            rss,
            sockets,
            baseline,
        } = record
        {
            let entry = hubs.entry(hub).or_insert((None, (0, 0), 0, 0));
            if *baseline {
                entry.0.get_or_insert(*rss);
            }
            if *rss > entry.1.0 {
                entry.1 = (*rss, *t);
            }
            entry.2 = entry.2.max(*sockets);
            entry.3 += 1;
        }
    }
    for (hub, (baseline, (peak, at), sockets, samples)) in hubs {
        let Some(baseline) = baseline else {
            verdict.violations.push(Violation {
                invariant: 6,
                title: format!("{hub}: no baseline memory was measured before its clients came"),
                t: 0,
                events: Vec::new(),
                detail: Vec::new(),
            });
            continue;
        };
        let peak = MemoryPeak {
            hub: hub.to_string(),
            baseline,
            peak,
            sockets,
            bound: budget.bound(baseline, sockets),
        };
        if peak.peak > peak.bound {
            verdict.violations.push(Violation {
                invariant: 6,
                title: format!(
                    "{hub} held {} resident at {}, over the {} its budgets allow",
                    memory::mib(peak.peak),
                    secs(at),
                    memory::mib(peak.bound)
                ),
                t: at,
                events: Vec::new(),
                detail: vec![format!(
                    "baseline {} + history_bytes {} + {} de-duplication keys × {} B + {} \
                     sockets × {} ({samples} samples)",
                    memory::mib(baseline),
                    memory::mib(budget.history_bytes),
                    budget.dedup_events,
                    memory::DEDUP_KEY,
                    sockets,
                    memory::mib(memory::PER_CONNECTION)
                )],
            });
        }
        verdict.figures.memory.push(peak);
    }
}

/// Invariant 5: refusals, dead letters and bad exits need a cause.
fn causes(index: &Index<'_>, records: &[Record], verdict: &mut Verdict) {
    // Uncaused ones, grouped by client and what happened.
    let mut groups: BTreeMap<(String, String), Tally<Micros>> = BTreeMap::new();
    for record in records {
        let (t, client, what, event) = match record {
            Record::Refused {
                t,
                publisher,
                seq,
                why,
            } => (
                *t,
                publisher.to_string(),
                format!("refused ({why})"),
                Some((Arc::clone(publisher), *seq)),
            ),
            Record::DeadLetter {
                t,
                client,
                event,
                reason,
            } => (
                *t,
                client.to_string(),
                format!("dead-lettered ({reason})"),
                event.clone(),
            ),
            Record::Exit {
                t,
                process,
                pid,
                status,
                as_expected: false,
                expected,
                excusable,
            } => {
                // A process's own client name is its name up to a dot
                // (`cli-pub0.3` → `cli-pub0`).
                let client = process.split('.').next().unwrap_or(process).to_string();
                if !excusable || index.cause(&client, *t).is_none() {
                    verdict.violations.push(Violation {
                        invariant: 5,
                        title: format!(
                            "{process} (pid {pid}) exited with {status}; expected {expected}"
                        ),
                        t: *t,
                        events: Vec::new(),
                        detail: index
                            .faults_near(*t, 30_000_000, 1_000_000)
                            .into_iter()
                            .map(|f| format!("fault {f}"))
                            .collect(),
                    });
                }
                continue;
            }
            _ => continue,
        };
        if index.cause(&client, t).is_some() {
            verdict.figures.refused_or_dead += 1;
            continue;
        }
        let entry = groups
            .entry((client, what))
            .or_insert_with(|| (t, Vec::new(), 0));
        entry.2 += 1;
        if let Some(event) = event
            && entry.1.len() < 5
        {
            entry.1.push(event);
        }
    }
    for ((client, what), (t, events, count)) in groups {
        let mut detail = Vec::new();
        for key in &events {
            detail.extend(index.story(key));
        }
        let near = index.faults_near(t, 60_000_000, 1_000_000);
        if near.is_empty() {
            detail.push(format!(
                "no fault hit {client} in the {:.0}s before",
                index.config.cause_window as f64 / 1e6
            ));
        }
        detail.extend(near.into_iter().map(|f| format!("fault {f}")));
        verdict.violations.push(Violation {
            invariant: 5,
            title: format!("{client}: {count} event(s) {what} without a cause in the schedule"),
            t,
            events,
            detail,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(name: &str) -> Arc<str> {
        Arc::from(name)
    }

    fn publish(t: Micros, publisher: &str, seq: u64, ty: &str) -> Vec<Record> {
        vec![
            Record::Publish {
                t,
                publisher: p(publisher),
                seq,
                event_type: p(ty),
            },
            Record::Ack {
                t: t + 10,
                publisher: p(publisher),
                seqs: vec![seq],
            },
        ]
    }

    fn subscriber(t: Micros, instance: u32, name: &str, own: Option<&str>) -> Vec<Record> {
        vec![
            Record::InstanceStart {
                t,
                instance,
                subscriber: p(name),
                own_publisher: own.map(p),
                filter: vec![],
                since: None,
                pid: None,
            },
            Record::Ready { t, instance },
        ]
    }

    fn deliver(t: Micros, instance: u32, publisher: &str, seq: u64) -> Record {
        Record::Delivery {
            t,
            instance,
            publisher: p(publisher),
            seq,
        }
    }

    fn sorted(mut records: Vec<Record>) -> Vec<Record> {
        records.sort_by_key(Record::t);
        records
    }

    #[test]
    fn a_clean_history_passes() {
        let mut r = subscriber(0, 0, "s", None);
        for seq in 1..=3 {
            r.extend(publish(seq * 100, "a", seq, "t"));
            r.push(deliver(seq * 100 + 50, 0, "a", seq));
        }
        let v = check(&sorted(r), &CheckConfig::default());
        assert!(v.passed(), "{:?}", v.violations);
        assert_eq!(v.figures.owed, 3);
        assert_eq!(v.figures.deliveries, 3);
    }

    #[test]
    fn an_out_of_order_delivery_is_reported() {
        let mut r = subscriber(0, 0, "s", None);
        for seq in 1..=3 {
            r.extend(publish(seq * 100, "a", seq, "t"));
        }
        r.push(deliver(400, 0, "a", 1));
        r.push(deliver(410, 0, "a", 3));
        r.push(deliver(420, 0, "a", 2));
        let v = check(&sorted(r), &CheckConfig::default());
        assert_eq!(v.violations.len(), 1, "{:?}", v.violations);
        let bad = &v.violations[0];
        assert_eq!(bad.invariant, 2);
        assert_eq!(bad.events, vec![(p("a"), 2)]);
        assert!(bad.detail[0].contains("a#2 at 0.000s after a#3"), "{bad:?}");
    }

    #[test]
    fn loss_echo_and_duplicates_are_reported() {
        let mut r = subscriber(0, 0, "s", Some("me"));
        r.extend(publish(100, "a", 1, "t"));
        r.extend(publish(200, "a", 2, "t"));
        r.extend(publish(300, "me", 1, "t"));
        r.push(deliver(400, 0, "a", 1));
        r.push(deliver(410, 0, "a", 1));
        r.push(deliver(420, 0, "me", 1));
        let v = check(&sorted(r), &CheckConfig::default());
        let invariants: Vec<u8> = v.violations.iter().map(|v| v.invariant).collect();
        assert_eq!(invariants, vec![1, 3, 4], "{:?}", v.violations);
        assert_eq!(v.violations[0].events, vec![(p("a"), 2)]);
    }

    #[test]
    fn not_recovered_excuses_only_with_a_cause() {
        // Told too_many after a gap of 3 events while the history holds 10.
        let config = CheckConfig {
            history_size: 10,
            ..CheckConfig::default()
        };
        let mut r = subscriber(0, 0, "s", None);
        for seq in 1..=4 {
            r.extend(publish(seq * 100, "a", seq, "t"));
        }
        r.push(deliver(150, 0, "a", 1));
        r.push(Record::Resume {
            t: 500,
            instance: 0,
            answer: Answer::NotRecovered {
                reason: "too_many".into(),
                gap: None,
            },
        });
        let v = check(&sorted(r.clone()), &config);
        assert_eq!(v.violations.len(), 1, "{:?}", v.violations);
        assert!(v.violations[0].title.contains("told `too_many`"));
        assert_eq!(v.violations[0].events.len(), 3);
        // With a history of 3, the same answer is justified and counted.
        let small = CheckConfig {
            history_size: 3,
            ..config
        };
        let v = check(&sorted(r), &small);
        assert!(v.passed(), "{:?}", v.violations);
        assert_eq!(v.figures.excused.get("too_many"), Some(&3));
    }

    #[test]
    fn a_not_recovered_answer_covers_only_its_range() {
        // a#1 was acknowledged long before the subscriber's last delivery
        // (a#2) and never arrived: a later justified answer does not excuse
        // it; a#3, acknowledged after, is excused.
        let config = CheckConfig {
            history_size: 1,
            ..CheckConfig::default()
        };
        let mut r = subscriber(0, 0, "s", None);
        r.extend(publish(100, "a", 1, "t"));
        r.extend(publish(5_000_000, "a", 2, "t"));
        r.push(deliver(5_000_100, 0, "a", 2));
        r.extend(publish(6_000_000, "a", 3, "t"));
        r.push(Record::Resume {
            t: 7_000_000,
            instance: 0,
            answer: Answer::NotRecovered {
                reason: "expired".into(),
                gap: Some(5),
            },
        });
        let v = check(&sorted(r), &config);
        assert_eq!(v.violations.len(), 1, "{:?}", v.violations);
        assert_eq!(v.violations[0].events, vec![(p("a"), 1)]);
        assert!(
            v.violations[0].title.contains("never told"),
            "{:?}",
            v.violations
        );
        assert_eq!(v.figures.excused.get("expired"), Some(&1));
    }

    #[test]
    fn refusals_need_a_fault() {
        let mut r = publish(100, "a", 1, "t");
        r.push(Record::Refused {
            t: 200,
            publisher: p("a"),
            seq: 2,
            why: "circuit open".into(),
        });
        let v = check(&sorted(r.clone()), &CheckConfig::default());
        assert_eq!(v.violations.len(), 1);
        assert_eq!(v.violations[0].invariant, 5);
        r.push(Record::FaultBegin {
            t: 150,
            id: 0,
            text: "cut link of a".into(),
            client: Some("a".into()),
            global: false,
        });
        let v = check(&sorted(r), &CheckConfig::default());
        assert!(v.passed(), "{:?}", v.violations);
    }

    fn nats() -> CheckConfig {
        CheckConfig {
            nats: true,
            ..CheckConfig::default()
        }
    }

    fn fault(begin: Micros, end: Micros, id: usize, text: &str) -> Vec<Record> {
        vec![
            Record::FaultBegin {
                t: begin,
                id,
                text: text.into(),
                client: None,
                global: true,
            },
            Record::FaultEnd { t: end, id },
        ]
    }

    fn epoch(t: Micros, instance: u32) -> Record {
        Record::Resume {
            t,
            instance,
            answer: Answer::NotRecovered {
                reason: "epoch".into(),
                gap: None,
            },
        }
    }

    /// a#1 delivered; a#2 and a#3 acknowledged before a wipe at 1 s (the
    /// server back at 2 s) and lost with the stream; a#4 acknowledged
    /// after it.
    fn wiped() -> Vec<Record> {
        let mut r = subscriber(0, 0, "s", None);
        r.extend(publish(100_000, "a", 1, "t"));
        r.push(deliver(150_000, 0, "a", 1));
        r.extend(publish(800_000, "a", 2, "t"));
        r.extend(publish(900_000, "a", 3, "t"));
        r.extend(fault(
            1_000_000,
            2_000_000,
            0,
            "nats-wipe nats-server for 1.00s",
        ));
        r.extend(publish(5_000_000, "a", 4, "t"));
        r
    }

    #[test]
    fn a_wipe_excuses_what_was_acked_before_it_only_after_epoch() {
        // Told `epoch` after the wipe, then a#4 arrives: passes, 2 excused.
        let mut r = wiped();
        r.push(epoch(4_000_000, 0));
        r.push(deliver(5_100_000, 0, "a", 4));
        let v = check(&sorted(r), &nats());
        assert!(v.passed(), "{:?}", v.violations);
        assert_eq!(v.figures.excused.get("epoch"), Some(&2));

        // Never told: a#2 and a#3 are lost silently.
        let mut r = wiped();
        r.push(deliver(5_100_000, 0, "a", 4));
        let v = check(&sorted(r), &nats());
        assert_eq!(v.violations.len(), 1, "{:?}", v.violations);
        assert_eq!(v.violations[0].invariant, 1);
        assert_eq!(v.violations[0].events, vec![(p("a"), 2), (p("a"), 3)]);
    }

    #[test]
    fn a_wipe_does_not_excuse_what_was_acked_after_it() {
        // Told `epoch` at 6 s, after a#4 was acknowledged into the new
        // stream: a#4 is still owed.
        let mut r = wiped();
        r.push(epoch(6_000_000, 0));
        let v = check(&sorted(r), &nats());
        assert_eq!(v.violations.len(), 1, "{:?}", v.violations);
        assert_eq!(v.violations[0].invariant, 1);
        assert_eq!(v.violations[0].events, vec![(p("a"), 4)]);
        assert_eq!(v.figures.excused.get("epoch"), Some(&2));
    }

    #[test]
    fn epoch_on_nats_without_a_wipe_excuses_nothing() {
        let mut r = wiped();
        r.retain(|r| !matches!(r, Record::FaultBegin { .. } | Record::FaultEnd { .. }));
        r.extend(fault(
            1_000_000,
            2_000_000,
            0,
            "nats-kill nats-server for 1.00s",
        ));
        r.push(epoch(4_000_000, 0));
        r.push(deliver(5_100_000, 0, "a", 4));
        let v = check(&sorted(r), &nats());
        assert_eq!(v.violations.len(), 1, "{:?}", v.violations);
        assert!(
            v.violations[0].title.contains("told `epoch`"),
            "{:?}",
            v.violations
        );
        assert!(
            v.violations[0].detail[0].contains("not wiped"),
            "{:?}",
            v.violations
        );
    }

    #[test]
    fn after_epoch_only_what_it_had_before_may_come_again() {
        // a#1 had before the wipe comes again after `epoch`: allowed and
        // counted. a#4, first received after `epoch`, twice: reported.
        let mut r = wiped();
        r.push(epoch(4_000_000, 0));
        r.push(deliver(4_500_000, 0, "a", 1));
        r.push(deliver(5_100_000, 0, "a", 4));
        let v = check(&sorted(r.clone()), &nats());
        assert!(v.passed(), "{:?}", v.violations);
        assert_eq!(v.figures.epoch_duplicates, 1);
        r.push(deliver(5_200_000, 0, "a", 4));
        let v = check(&sorted(r), &nats());
        assert_eq!(v.violations.len(), 1, "{:?}", v.violations);
        assert_eq!(v.violations[0].invariant, 4);
        assert_eq!(v.violations[0].events, vec![(p("a"), 4)]);
    }

    #[test]
    fn a_duplicate_after_an_epoch_with_no_wipe_is_reported() {
        let mut r = subscriber(0, 0, "s", None);
        r.extend(publish(100_000, "a", 1, "t"));
        r.push(deliver(150_000, 0, "a", 1));
        r.push(epoch(1_000_000, 0));
        r.push(deliver(1_100_000, 0, "a", 1));
        let v = check(&sorted(r), &nats());
        let invariants: Vec<u8> = v.violations.iter().map(|v| v.invariant).collect();
        assert_eq!(invariants, vec![4], "{:?}", v.violations);
        assert_eq!(v.figures.epoch_duplicates, 0);
    }

    fn sample(t: Micros, rss: u64, sockets: u64, baseline: bool) -> Record {
        Record::HubMemory {
            t,
            hub: "hub0".into(),
            rss,
            sockets,
            baseline,
        }
    }

    #[test]
    fn hub_memory_is_held_to_its_budgets() {
        let budget = Budget {
            history_bytes: 8 << 20,
            dedup_events: 1_000,
        };
        let config = CheckConfig {
            memory: Some(budget),
            ..CheckConfig::default()
        };
        let bound = budget.bound(4 << 20, 12);
        let within = vec![
            sample(0, 4 << 20, 1, true),
            sample(1_000, 10 << 20, 12, false),
            sample(2_000, bound, 3, false),
        ];
        let v = check(&within, &config);
        assert!(v.passed(), "{:?}", v.violations);
        assert_eq!(v.figures.memory[0].bound, bound);
        assert_eq!(v.figures.memory[0].sockets, 12);
        let mut over = within.clone();
        over.push(sample(3_000, bound + 1, 12, false));
        let v = check(&over, &config);
        assert_eq!(v.violations.len(), 1, "{:?}", v.violations);
        assert_eq!(v.violations[0].invariant, 6);
        assert!(
            v.violations[0].title.contains("hub0 held"),
            "{:?}",
            v.violations
        );
        // No baseline: said, not silently skipped.
        let v = check(&within[1..], &config);
        assert_eq!(v.violations.len(), 1, "{:?}", v.violations);
    }

    #[test]
    fn a_wipe_excuses_an_event_stored_before_it_whose_ack_was_recorded_after() {
        // a#2 was delivered to another subscriber before the wipe (stored in
        // the lost stream), its flush returned after the wipe ended, and
        // the publisher's events after the wipe start at a#3 (a#2 was not
        // sent again): lost with the stream, excused by `epoch`.
        let mut r = subscriber(0, 0, "s", None);
        r.extend(subscriber(0, 1, "other", None));
        r.push(Record::Publish {
            t: 800_000,
            publisher: p("a"),
            seq: 2,
            event_type: p("t"),
        });
        r.push(deliver(810_000, 1, "a", 2));
        r.extend(fault(
            1_000_000,
            2_000_000,
            0,
            "nats-wipe nats-server for 1.00s",
        ));
        r.push(Record::Publish {
            t: 900_000,
            publisher: p("a"),
            seq: 3,
            event_type: p("t"),
        });
        r.push(Record::Ack {
            t: 2_500_000,
            publisher: p("a"),
            seqs: vec![2, 3],
        });
        r.push(epoch(2_200_000, 0));
        r.push(epoch(2_200_000, 1));
        r.push(deliver(2_600_000, 0, "a", 3));
        r.push(deliver(2_600_000, 1, "a", 3));
        let v = check(&sorted(r.clone()), &nats());
        assert!(v.passed(), "{:?}", v.violations);
        assert_eq!(v.figures.excused.get("epoch"), Some(&1));
        // Had a#2 been sent again into the new stream (someone got it
        // after the wipe), its ack is of the new stream: owed.
        r.push(deliver(2_550_000, 1, "a", 2));
        let v = check(&sorted(r), &nats());
        assert_eq!(v.violations.len(), 1, "{:?}", v.violations);
        assert_eq!(v.violations[0].invariant, 1);
        assert_eq!(v.violations[0].events, vec![(p("a"), 2)]);
    }
}
