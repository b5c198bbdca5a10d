//! The upgrade's gates, together: who may connect at all, decided from the
//! request before anything is allocated for the client.
//!
//! - [`auth`]: the bearer token (header, query or subprotocol) and its
//!   constant-time check.
//! - [`origin`]: the same-origin rule and `allowed_origins`.
//! - [`throttle`]: failed token checks per peer address, and the 429 past
//!   them.
//! - [`budget`]: connections per second per peer address, checked right
//!   after `accept`; [`tarpit`]: the delayed 429 past it, bounded.
//! - [`peers`]: the capped, swept per-address table the throttle and the
//!   budget keep their state in; [`pace`]: the token bucket the budget
//!   (and the control-frame and `/api/clients` budgets) count with.
//!
//! The floor: they import nothing of the crate but its errors; `xtask`'s
//! hygiene tests check it.

pub(crate) mod auth;
pub(crate) mod budget;
pub(crate) mod origin;
pub(crate) mod pace;
pub(crate) mod peers;
pub(crate) mod tarpit;
pub(crate) mod throttle;
