//! The one entry point for a backplane: what connects hubs into a group
//! ([`Backplane`]), and the fan-out a hub gets for it. Without one, the
//! hub relays in process ([`LocalFanout`]); a backplane implements
//! [`Fanout`] (see `relay::fanout`) and is started here, nowhere else.

use std::sync::Arc;

use crate::config::HubConfig;
use crate::error::HubError;
use crate::relay::dedup::DedupWindow;
use crate::relay::fanout::{Fanout, LocalFanout};
use crate::relay::history::History;
use crate::stats::Counters;

/// What connects hubs into a group, if anything.
#[derive(Debug, Clone)]
pub(crate) enum Backplane {
    /// NATS JetStream: one shared stream.
    #[cfg(feature = "nats")]
    Nats(crate::nats::NatsConfig),
}

/// The fan-out for `backplane`: in process without one. A backplane may
/// adjust `config` to the group's (NATS: the stream's history).
#[cfg_attr(not(feature = "nats"), allow(unused_variables, clippy::unused_async))]
pub(crate) async fn fanout(
    backplane: Option<Backplane>,
    #[cfg_attr(not(feature = "nats"), allow(unused_mut))] config: &mut HubConfig,
    counters: &Arc<Counters>,
    dedup: &Arc<DedupWindow>,
) -> Result<Box<dyn Fanout>, HubError> {
    Ok(match backplane {
        None => Box::new(LocalFanout::new(History::new(config))),
        #[cfg(feature = "nats")]
        Some(Backplane::Nats(nats)) => Box::new(
            crate::nats::NatsFanout::start(&nats, config, Arc::clone(counters), Arc::clone(dedup))
                .await?,
        ),
    })
}
