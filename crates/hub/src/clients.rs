//! The clients connected now, for `/api/clients`: who, since when, and a
//! handle on each one's queue.
//!
//! Separate from the fan-out on purpose: the fan-out's member list is the
//! hot path (and a backplane may replace it), while this list is touched
//! once per connect and disconnect, and read only by the HTTP side.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use crate::relay::fanout::ClientId;
use crate::relay::outbox::{Outbox, OutboxView};

/// At most this many rows in one `/api/clients` answer (the rest are
/// counted, not listed), so one request costs bounded time and memory
/// however many clients are connected.
pub(crate) const MAX_CLIENT_ROWS: usize = 1000;

/// At most this many event types of each client's filter are listed.
pub(crate) const MAX_FILTER_SAMPLE: usize = 8;

#[derive(Debug)]
struct Client {
    peer: SocketAddr,
    since: SystemTime,
    outbox: Arc<Outbox>,
}

/// One connected client as `/api/clients` shows it.
#[derive(Debug, Clone)]
pub(crate) struct ClientRow {
    pub(crate) id: ClientId,
    pub(crate) peer: SocketAddr,
    pub(crate) since: SystemTime,
    pub(crate) outbox: OutboxView,
}

/// The clients connected now, by id (so in the order they connected).
#[derive(Debug, Default)]
pub(crate) struct ClientList {
    clients: Mutex<BTreeMap<ClientId, Client>>,
}

impl ClientList {
    pub(crate) fn join(&self, peer: SocketAddr, outbox: Arc<Outbox>) {
        let client = Client {
            peer,
            since: SystemTime::now(),
            outbox,
        };
        let id = client.outbox.id();
        self.lock().insert(id, client);
    }

    pub(crate) fn leave(&self, id: ClientId) {
        self.lock().remove(&id);
    }

    /// The first [`MAX_CLIENT_ROWS`] clients, and how many there are in
    /// all. The list's lock is held only to copy out handles; each queue
    /// is looked at after.
    pub(crate) fn rows(&self) -> (Vec<ClientRow>, usize) {
        let (handles, total): (Vec<_>, usize) = {
            let clients = self.lock();
            let handles = clients
                .iter()
                .take(MAX_CLIENT_ROWS)
                .map(|(id, c)| (*id, c.peer, c.since, Arc::clone(&c.outbox)))
                .collect();
            (handles, clients.len())
        };
        let rows = handles
            .into_iter()
            .map(|(id, peer, since, outbox)| ClientRow {
                id,
                peer,
                since,
                outbox: outbox.view(MAX_FILTER_SAMPLE),
            })
            .collect();
        (rows, total)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<ClientId, Client>> {
        // Nothing panics under this lock; the map stays sound regardless.
        self.clients.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
