//! The hub's one error type.

use std::io;
use std::net::SocketAddr;

/// What can stop a hub from starting.
///
/// Once a hub runs, nothing a client does is an error of the hub's: bad
/// input, slow or dead clients are counted in [`HubStats`](crate::HubStats)
/// and logged.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HubError {
    /// A [`HubConfig`](crate::HubConfig) value is out of range. Raised before
    /// any I/O.
    #[error("invalid hub configuration: {0}")]
    Config(String),

    /// The listen address could not be resolved.
    #[error(
        "could not resolve the listen address; give an IP address and port such as 127.0.0.1:8080"
    )]
    Resolve(#[source] io::Error),

    /// The address resolved to nothing.
    #[error(
        "the listen address resolved to no address; give an IP address and port such as 127.0.0.1:8080"
    )]
    NoAddress,

    /// The TLS certificate, key or client CA could not be read or used.
    #[error("TLS setup failed: {message}")]
    Tls {
        /// What could not be read or used, and what to check.
        message: String,
        /// The underlying error, if any.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
    },

    /// Listening failed, typically because the port is taken or needs
    /// privileges.
    #[error("could not listen on {addr}")]
    Bind {
        /// The address that was tried last.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: io::Error,
    },

    /// The backplane (NATS JetStream, feature `nats`) could not be reached
    /// or set up at start.
    #[error("backplane: {message}")]
    Backplane {
        /// What failed, and what to check.
        message: String,
        /// The underlying error, if any.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
    },
}

/// `Result` with [`HubError`] as the default error.
pub type Result<T, E = HubError> = std::result::Result<T, E>;
