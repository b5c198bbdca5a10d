//! Handshake headers and the credential provider.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use watchtower_core::{BoxError, BoxFuture};

/// Headers to send with the WebSocket upgrade request, e.g. an
/// `Authorization` token. `Debug` shows header names only: values are secrets.
///
/// What a credential provider returns is sent after the builder's static
/// headers; a header of the same name replaces the static one (so a
/// provider's `Authorization` wins over `bearer_token`), and of two headers
/// with one name the later is sent.
///
/// ```
/// use watchtower_websocket_transport::Credentials;
///
/// let creds = Credentials::bearer("abc123").header("X-Tenant", "acme");
/// assert!(!format!("{creds:?}").contains("abc123"));
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    pub(crate) headers: Vec<(String, String)>,
}

impl Credentials {
    /// No headers.
    pub fn new() -> Self {
        Credentials::default()
    }

    /// `Authorization: Bearer <token>`.
    pub fn bearer(token: impl AsRef<str>) -> Self {
        Credentials::new().header("Authorization", format!("Bearer {}", token.as_ref()))
    }

    /// Adds one header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The header names, in order (values are not exposed).
    pub fn header_names(&self) -> impl Iterator<Item = &str> {
        self.headers.iter().map(|(name, _)| name.as_str())
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("headers", &self.header_names().collect::<Vec<_>>())
            .finish()
    }
}

/// Produces fresh [`Credentials`] before every connect and reconnect, so
/// short-lived tokens are refreshed.
pub(crate) type CredentialProvider =
    Arc<dyn Fn() -> BoxFuture<'static, Result<Credentials, BoxError>> + Send + Sync>;

pub(crate) fn provider<F, Fut, E>(f: F) -> CredentialProvider
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Credentials, E>> + Send + 'static,
    E: Into<BoxError>,
{
    Arc::new(move || {
        let fut = f();
        Box::pin(async move { fut.await.map_err(Into::into) })
    })
}
