//! `HubBuilder`: a hub with TLS and token auth on top of [`HubConfig`].

use std::fmt;

use tokio::net::ToSocketAddrs;

use crate::backplane::Backplane;
use crate::config::HubConfig;
use crate::error::HubError;
use crate::gates::auth::{Auth, Token};
use crate::hub::Hub;
use crate::tls::HubTls;

/// Builds a [`Hub`] that serves `wss://`, requires a bearer token, or
/// both. [`Hub::bind`] and [`Hub::bind_with`] are this builder with only a
/// config.
///
/// ```no_run
/// use watchtower_hub::{Hub, HubConfig, HubTls};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let token = std::fs::read_to_string("token.txt")?;
/// let hub = Hub::builder()
///     .config(HubConfig::default())
///     .tls(HubTls::from_pem_files("cert.pem", "key.pem")?)
///     .bearer_token(token.trim())
///     .bind("0.0.0.0:8443")
///     .await?;
/// # Ok(()) }
/// ```
///
/// `Debug` shows how many tokens are set, never the tokens.
#[must_use = "a builder does nothing until `bind` is awaited"]
#[derive(Default)]
pub struct HubBuilder {
    config: HubConfig,
    tls: Option<HubTls>,
    tokens: Vec<Token>,
    backplane: Option<Backplane>,
}

impl fmt::Debug for HubBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubBuilder")
            .field("config", &self.config)
            .field("tls", &self.tls)
            .field("bearer_tokens", &self.tokens.len())
            .field("backplane", &self.backplane)
            .finish()
    }
}

impl HubBuilder {
    /// Every tunable of the hub. Default: [`HubConfig::default`].
    pub fn config(mut self, config: HubConfig) -> Self {
        self.config = config;
        self
    }

    /// Serves `wss://` with this certificate and key, and, if the
    /// [`HubTls`] says so, only to clients with a certificate from its
    /// client CA. The TLS handshake counts against
    /// [`HubConfig::handshake_timeout`] together with the upgrade. Default:
    /// plain `ws://`.
    pub fn tls(mut self, tls: HubTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Requires every client to present `token`, as an
    /// `Authorization: Bearer TOKEN` header, a `watchtower.token.<base64url
    /// TOKEN>` subprotocol (for browsers, which cannot set headers on a
    /// WebSocket) or a `token` query parameter (`?token=TOKEN`,
    /// percent-encoded if need be). Any other upgrade is
    /// answered with HTTP 401 and never joins the fan-out. Call again to
    /// accept several tokens, e.g. the old and the new one while a rotation
    /// rolls out. Default: no token is required.
    ///
    /// A token must be printable ASCII without spaces, at least
    /// [`HubConfig::min_token_len`] and at most 4096 bytes;
    /// [`bind`](Self::bind) fails with [`HubError::Config`] otherwise. An
    /// upgrade carrying more than one candidate token is answered with
    /// HTTP 400; `?token=` can be turned off with
    /// [`HubConfig::allow_query_token`].
    /// Tokens never appear in logs, errors or `Debug` output. Over plain
    /// `ws://` a token travels in clear text: use it with [`tls`](Self::tls).
    pub fn bearer_token(mut self, token: impl Into<String>) -> Self {
        self.tokens.push(Token::new(token.into()));
        self
    }

    /// Joins a group of hubs sharing one NATS JetStream stream (feature
    /// `nats`): every hub publishes what its clients send to the stream
    /// and delivers what it reads from it, so clients of any hub see one
    /// order, an ack means JetStream stored the event, and a client can
    /// resume its position on any hub of the group. [`bind`](Self::bind)
    /// connects to NATS first and fails with [`HubError::Backplane`] when
    /// it cannot. Default: no backplane (one hub on its own).
    #[cfg(feature = "nats")]
    pub fn nats(mut self, nats: crate::NatsConfig) -> Self {
        self.backplane = Some(Backplane::Nats(nats));
        self
    }

    /// Validates everything, then listens on `addr`.
    ///
    /// Fails with [`HubError::Config`] before any I/O if a setting is out
    /// of range or a token is not valid, and with [`HubError::Bind`] if no
    /// resolved address can be listened on. Must run inside a tokio
    /// runtime.
    pub async fn bind(self, addr: impl ToSocketAddrs) -> Result<Hub, HubError> {
        self.config.validate()?;
        let auth = Auth::new(
            self.tokens,
            self.config.min_token_len,
            self.config.allow_query_token,
        )?;
        Hub::start(addr, self.config, self.tls, auth, self.backplane).await
    }
}
