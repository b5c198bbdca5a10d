//! The upgrade's gates, together: who may connect at all, decided from the
//! request before anything is allocated for the client.
//!
//! - [`auth`]: the bearer token (header, query or subprotocol) and its
//!   constant-time check.
//! - [`origin`]: the same-origin rule and `allowed_origins`.
//! - [`throttle`]: failed token checks per peer address, and the 429 past
//!   them.
//!
//! The floor: they import nothing of the crate but its errors; `xtask`'s
//! hygiene tests check it.

pub(crate) mod auth;
pub(crate) mod origin;
pub(crate) mod throttle;
