//! Making one connection: TCP, TLS for `wss://`, then the WebSocket upgrade.

use std::io;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::FutureExt;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue, Request};
use tokio_tungstenite::tungstenite::{self, protocol::WebSocketConfig as WireConfig};
use watchtower_core::{RESUME_HEADER, TlsErrorKind, WatchtowerError};

use crate::client_id::{CLIENT_ID_HEADER, ClientId};
use crate::credentials::{CredentialProvider, Credentials};
use crate::filter_limits::HubLimits;
use crate::resume::Resume;
use crate::settings::Settings;
use crate::stats::Counters;
use crate::subscription::panic_message;
use crate::tls::{handshake_error, tls_failure};
use crate::url::WsUrl;

/// The socket under the WebSocket: plain TCP or TLS over TCP, counting
/// the bytes it takes, so the writer can tell a slow link (bytes moving)
/// from a stalled one (none moving).
#[derive(Debug)]
pub(crate) struct Socket {
    io: Io,
    /// Bytes the socket has taken from the WebSocket, since it was made.
    /// Shared with the session's writer: the socket itself goes behind
    /// the split's lock.
    written: Arc<AtomicU64>,
}

#[derive(Debug)]
enum Io {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Socket {
    fn new(io: Io) -> Socket {
        Socket {
            io,
            written: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The count of bytes this socket has taken, to watch a write's
    /// progress by.
    pub(crate) fn written(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.written)
    }

    fn count(&self, written: &Poll<io::Result<usize>>) {
        if let Poll::Ready(Ok(n)) = written {
            self.written.fetch_add(*n as u64, Relaxed);
        }
    }
}

impl AsyncRead for Socket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = match &mut this.io {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        };
        this.count(&written);
        written
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = match &mut this.io {
            Io::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        };
        this.count(&written);
        written
    }

    fn is_write_vectored(&self) -> bool {
        match &self.io {
            Io::Plain(s) => s.is_write_vectored(),
            Io::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

pub(crate) type Ws = WebSocketStream<Socket>;

/// Makes one connection attempt within the connect timeout, presenting
/// the transport's identity and the position in `resume`, and taking in
/// the hub's answer: the resume outcome and its filter limits. TLS is
/// decided by `url`'s scheme alone: in a list of
/// `ws://` and `wss://` URLs, each gets what it says.
pub(crate) async fn connect_once(
    settings: &Settings,
    url: &WsUrl,
    resume: &Resume,
    counters: &Counters,
    client_id: &ClientId,
    hub_limits: &HubLimits,
) -> Result<Ws, WatchtowerError> {
    let deadline = Instant::now() + settings.connect_timeout;
    let timed_out = |stage: &'static str| WatchtowerError::Timeout {
        operation: stage,
        after: settings.connect_timeout,
    };

    // Ask for fresh credentials first: a slow provider counts against the
    // connect timeout like any other part of connecting.
    let credentials = match &settings.credential_provider {
        Some(provider) => Some(call_provider(provider, deadline, timed_out).await?),
        None => None,
    };
    let mut request = build_request(settings, url, credentials.as_ref())?;
    request
        .headers_mut()
        .insert(CLIENT_ID_HEADER, client_id.header());
    if let Some(position) = resume.header() {
        request.headers_mut().insert(RESUME_HEADER, position);
    }

    let tcp = timeout_at(deadline, TcpStream::connect((url.host(), url.port())))
        .await
        .map_err(|_| timed_out("TCP connect"))?
        .map_err(|e| WatchtowerError::connection_with(format!("could not reach {url}"), e))?;
    // Writes are already batched by the writer; Nagle would only add latency.
    tcp.set_nodelay(true)
        .map_err(|e| WatchtowerError::connection_with("could not set TCP_NODELAY", e))?;

    let tls = if url.is_secure() {
        // The builder makes a TLS config whenever one URL is `wss://`.
        let tls = settings
            .tls
            .as_ref()
            .ok_or_else(|| WatchtowerError::Config(format!("no TLS configuration for {url}")))?;
        Some(tls)
    } else {
        None
    };
    let socket = match tls {
        None => Socket::new(Io::Plain(tcp)),
        Some(tls) => {
            let name =
                rustls_pki_types::ServerName::try_from(url.host().to_string()).map_err(|_| {
                    WatchtowerError::Config(format!(
                        "`{}` is not a valid TLS server name",
                        url.host()
                    ))
                })?;
            let connector = tokio_rustls::TlsConnector::from(Arc::clone(tls));
            let stream = timeout_at(deadline, connector.connect(name, tcp))
                .await
                .map_err(|_| {
                    WatchtowerError::tls(
                        TlsErrorKind::HandshakeTimeout,
                        format!(
                            "the TLS handshake with {} did not finish within {:?}",
                            url.host(),
                            settings.connect_timeout
                        ),
                        None,
                    )
                })?
                .map_err(|e| handshake_error(e, url.host()))?;
            Socket::new(Io::Tls(Box::new(stream)))
        }
    };

    let wire = wire_config(settings);
    let (ws, response) = timeout_at(
        deadline,
        tokio_tungstenite::client_async_with_config(request, socket, Some(wire)),
    )
    .await
    .map_err(|_| timed_out("WebSocket handshake"))?
    .map_err(|e| upgrade_error(e, url))?;
    let url = url.to_string();
    resume.answered(response.headers(), counters, &url);
    hub_limits.learn(response.headers(), &url);
    Ok(ws)
}

/// Calls the user's credential provider. A panic, while it builds its
/// future or while that runs, fails the attempt with a `Credentials` error
/// like any error it returns, instead of killing the connection task.
async fn call_provider(
    provider: &CredentialProvider,
    deadline: Instant,
    timed_out: impl Fn(&'static str) -> WatchtowerError,
) -> Result<Credentials, WatchtowerError> {
    let panicked = |panic: Box<dyn std::any::Any + Send>| {
        WatchtowerError::Credentials(
            format!(
                "the credential provider panicked: {}",
                panic_message(panic.as_ref())
            )
            .into(),
        )
    };
    let future = std::panic::catch_unwind(AssertUnwindSafe(|| provider())).map_err(panicked)?;
    timeout_at(deadline, AssertUnwindSafe(future).catch_unwind())
        .await
        .map_err(|_| timed_out("credential provider"))?
        .map_err(panicked)?
        .map_err(WatchtowerError::Credentials)
}

pub(crate) fn wire_config(settings: &Settings) -> WireConfig {
    WireConfig::default()
        .read_buffer_size(settings.read_buffer_size)
        // The writer flushes each batch itself; buffering up to the batch is enough.
        .write_buffer_size(settings.read_buffer_size.max(16 * 1024))
        .max_message_size(Some(settings.max_message_size))
        .max_frame_size(Some(settings.max_frame_size))
}

fn build_request(
    settings: &Settings,
    url: &WsUrl,
    credentials: Option<&Credentials>,
) -> Result<Request<()>, WatchtowerError> {
    let mut request =
        url.uri().clone().into_client_request().map_err(|e| {
            WatchtowerError::Config(format!("cannot build a request for {url}: {e}"))
        })?;
    let headers = request.headers_mut();
    let all = settings
        .headers
        .headers
        .iter()
        .chain(credentials.into_iter().flat_map(|c| c.headers.iter()));
    for (name, value) in all {
        let (name, value) = header_pair(name, value)?;
        headers.insert(name, value);
    }
    Ok(request)
}

/// Validates one header. Errors name the header, never its value.
pub(crate) fn header_pair(
    name: &str,
    value: &str,
) -> Result<(HeaderName, HeaderValue), WatchtowerError> {
    let header_name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
        WatchtowerError::Config(format!("`{name}` is not a valid HTTP header name"))
    })?;
    let mut header_value = HeaderValue::from_str(value).map_err(|_| {
        WatchtowerError::Config(format!(
            "the value of header `{name}` is not valid (control characters or non-ASCII)"
        ))
    })?;
    header_value.set_sensitive(true);
    Ok((header_name, header_value))
}

/// The longest `Retry-After` honoured, in seconds: past it the server's
/// wish is cut to this (the reconnect schedule still applies).
const MAX_RETRY_AFTER_SECS: u64 = 60;

fn upgrade_error(error: tungstenite::Error, url: &WsUrl) -> WatchtowerError {
    match error {
        tungstenite::Error::Http(response) => {
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                // A hostile or broken server cannot park us for days.
                .map(|secs| Duration::from_secs(secs.min(MAX_RETRY_AFTER_SECS)));
            if status == 401 || status == 403 {
                WatchtowerError::Auth { status }
            } else if status == 429 || (status == 503 && retry_after.is_some()) {
                WatchtowerError::RateLimited {
                    status,
                    retry_after,
                }
            } else {
                WatchtowerError::connection(format!(
                    "{url} answered the WebSocket upgrade with HTTP {status}; check the URL's path \
                     and that the server speaks WebSocket there"
                ))
            }
        }
        // A TLS error can surface here, after the TLS handshake: with TLS
        // 1.3 a server refuses our client certificate only once our side
        // of the handshake is done, so its alert is read by the upgrade.
        tungstenite::Error::Io(e) => match tls_failure(e, url.host()) {
            Ok(typed) => typed,
            Err(e) => WatchtowerError::connection_with(
                format!("connection to {url} failed during the handshake"),
                e,
            ),
        },
        other => WatchtowerError::connection_with(
            format!("WebSocket handshake with {url} failed"),
            other,
        ),
    }
}
