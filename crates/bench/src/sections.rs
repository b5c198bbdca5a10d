//! The sections of the benchmark, in the order they run. Each is one module
//! with one `section` function; adding a section is one line here.

use std::future::Future;
use std::pin::Pin;

use crate::section::SectionReport;
use crate::{BenchError, BenchOptions};

/// A section's future.
pub(crate) type Running<'a> = Pin<Box<dyn Future<Output = Result<SectionReport, BenchError>> + 'a>>;

/// One section: its name (as `--only` takes it), a line about it, and how
/// to run it.
pub(crate) struct Section {
    pub(crate) name: &'static str,
    pub(crate) about: &'static str,
    pub(crate) run: for<'a> fn(&'a BenchOptions) -> Running<'a>,
}

pub(crate) const SECTIONS: &[Section] = &[
    Section {
        name: "throughput",
        about: "publish throughput to a counting server",
        run: |o| Box::pin(crate::throughput::section(o)),
    },
    Section {
        name: "sizes",
        about: "publish throughput against event size",
        run: |o| Box::pin(crate::sizes::section(o)),
    },
    Section {
        name: "latency",
        about: "latency, one event at a time",
        run: |o| Box::pin(crate::latency::section(o)),
    },
    Section {
        name: "load",
        about: "latency under load",
        run: |o| Box::pin(crate::load::section(o)),
    },
    Section {
        name: "fanout",
        about: "fan-out to many subscribers",
        run: |o| Box::pin(crate::fanout::section(o)),
    },
    Section {
        name: "fanout-scale",
        about: "fan-out against the number of subscribers",
        run: |o| Box::pin(crate::fanout::scale_section(o)),
    },
    Section {
        name: "memory",
        about: "idle memory per connection",
        run: |o| Box::pin(crate::memory::section(o)),
    },
    Section {
        name: "idle-hub",
        about: "a hub holding many idle connections",
        run: |o| Box::pin(crate::idle_hub::section(o)),
    },
    Section {
        name: "hub-cpu",
        about: "hub CPU per relayed event and per delivered frame",
        run: |o| Box::pin(crate::hub_cpu::section(o)),
    },
    Section {
        name: "flood",
        about: "bounded memory under flood",
        run: |o| Box::pin(crate::flood::section(o)),
    },
    Section {
        name: "resume",
        about: "replay on reconnect and catch-up after an absence against live, and hub memory with a full history",
        run: |o| Box::pin(crate::resume::section(o)),
    },
    Section {
        name: "dashboard",
        about: "fan-out and latency with the hub's dashboard open, against without",
        run: |o| Box::pin(crate::dashboard::section(o)),
    },
    Section {
        name: "scaleout",
        about: "one hub against two hubs sharing a NATS JetStream stream",
        run: |o| Box::pin(scaleout(o)),
    },
    Section {
        name: "hostile",
        about: "a legitimate pair under attack (filters, never-readers, forged resume keys), and hub CPU per control frame",
        run: |o| Box::pin(crate::hostile::section(o)),
    },
];

/// The scale-out section needs feature `nats` (and a nats-server); without
/// the feature it says so instead of measuring.
async fn scaleout(options: &BenchOptions) -> Result<SectionReport, BenchError> {
    #[cfg(feature = "nats")]
    {
        crate::scaleout::section(options).await
    }
    #[cfg(not(feature = "nats"))]
    {
        let _ = options;
        SectionReport::new(
            "scaleout",
            &serde_json::Value::Null,
            "Scale-out: SKIPPED, built without feature nats (cargo xtask bench enables it when a nats-server is found)\n"
                .to_string(),
        )
    }
}

/// The names `--only` accepts, in running order.
pub fn names() -> Vec<&'static str> {
    SECTIONS.iter().map(|s| s.name).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn section_names_are_unique_and_lower_case() {
        let names = super::names();
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "{names:?}");
        assert!(
            names
                .iter()
                .all(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_lowercase() || c == '-'))
        );
    }
}
