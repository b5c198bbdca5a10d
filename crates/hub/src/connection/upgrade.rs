//! The TLS handshake (for `wss://`), the request head (a WebSocket upgrade
//! or a plain HTTP request for [`crate::http`]), and the upgrade: the
//! Origin check, the token check with per-peer throttling, the HTTP
//! refusals, and joining the fan-out.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use tokio_tungstenite::{WebSocketStream, accept_hdr_async_with_config};

use watchtower_core::{
    ControlFrame, FILTER_LIMITS_HEADER, FilterLimits, POSITION_HEADER, RECOVERED_HEADER,
    RESUME_HEADER, RESUME_NEW, RESUME_QUERY, recovered_header,
};

use crate::gates::auth::{PROTOCOL, Refusal, offered_protocols};
use crate::gates::origin::OriginRefusal;
use crate::http::{self, Head, Replay, read_head};
use crate::relay::fanout::{ClientId, Cursor, Joined};
use crate::relay::outbox::Outbox;
use crate::relay::sample::{SAMPLE_HEADER, SAMPLE_QUERY, Sampler};
use crate::shared::{Admission, Shared};
use crate::stats::{add, bump};

use super::{linger, serve};

/// Serves one accepted TCP connection until it ends: the TLS handshake
/// first for `wss://`, then [`serve`]. One `handshake_timeout` covers the
/// TLS handshake and the upgrade together.
pub(crate) async fn accept(
    tcp: TcpStream,
    peer: SocketAddr,
    id: ClientId,
    shared: Arc<Shared>,
    admission: Admission,
) {
    let deadline = Instant::now() + shared.config.handshake_timeout;
    // Each path's future is boxed and this one holds nothing else across
    // an `.await`: a task is as large as its future's largest state, and
    // inline, every plain connection's task would keep room for the TLS
    // path's (a `TlsStream`, rustls's handshake, the linger buffer) for as
    // long as it stays connected — 2.5 KiB per idle client.
    match shared.tls.as_ref().map(|tls| tls.acceptor()) {
        None => Box::pin(serve(tcp, peer, id, shared, deadline, admission)).await,
        Some(acceptor) => {
            Box::pin(accept_tls(
                acceptor, tcp, peer, id, shared, deadline, admission,
            ))
            .await
        }
    }
}

/// The TLS handshake, then [`serve`] over it; a failed handshake is
/// counted and logged, and the connection lingers so the client reads
/// rustls's alert.
async fn accept_tls(
    acceptor: tokio_rustls::TlsAcceptor,
    tcp: TcpStream,
    peer: SocketAddr,
    id: ClientId,
    shared: Arc<Shared>,
    deadline: Instant,
    admission: Admission,
) {
    match timeout_at(deadline, acceptor.accept(tcp).into_fallible()).await {
        Ok(Ok(tls)) => Box::pin(serve(tls, peer, id, shared, deadline, admission)).await,
        Ok(Err((error, tcp))) => {
            tls_failed(&shared);
            // rustls errors say what was wrong with the peer's handshake
            // (untrusted or missing certificate, no common version); they
            // hold no secrets.
            if let Some(suppressed) = shared.log_refusal() {
                tracing::info!(%peer, %error, suppressed, "client refused: TLS handshake failed");
            }
            // rustls has written its alert; let it reach the client
            // instead of a reset, so the client can say why it failed.
            linger(tcp).await;
        }
        Err(_) => {
            tls_failed(&shared);
            if let Some(suppressed) = shared.log_refusal() {
                tracing::info!(%peer, after = ?shared.config.handshake_timeout, suppressed, "client refused: TLS handshake timed out");
            }
        }
    }
}

fn tls_failed(shared: &Shared) {
    bump(&shared.counters.handshake_failures);
    bump(&shared.counters.tls_failures);
}

/// Reads the request head (due by `deadline`) and serves it: an upgrade
/// goes on to [`upgrade_websocket`] with the bytes read replayed; any
/// other request gets its HTTP answer (see [`crate::http`]) and the
/// connection is closed. `Some` only for an upgraded client.
pub(super) async fn upgrade<'a, S>(
    mut socket: S,
    peer: SocketAddr,
    shared: &'a Shared,
    outbox: &Arc<Outbox>,
    deadline: Instant,
    admission: &mut Admission,
) -> Option<(WebSocketStream<Replay<S>>, Membership<'a>)>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // The head's stage is boxed and scoped: every connection task is as
    // large as its largest stage, idle clients' included, so nothing of it
    // may stay in the task's state once the upgrade starts.
    let prefix = {
        let head = match Box::pin(timeout_at(deadline, read_head(&mut socket))).await {
            Ok(Ok(head)) => head,
            Ok(Err(error)) => {
                bump(&shared.counters.handshake_failures);
                tracing::debug!(%peer, ?error, "request head refused");
                if let Some(answer) = http::Answer::bad_head(&error) {
                    Box::pin(reply(socket, answer, deadline, admission)).await;
                }
                return None;
            }
            Err(_) => {
                bump(&shared.counters.handshake_failures);
                tracing::debug!(%peer, after = ?shared.config.handshake_timeout, "request head timed out");
                return None;
            }
        };
        if !head.websocket {
            let answer = answer_http(&head, peer, shared);
            drop(head);
            Box::pin(reply(socket, answer, deadline, admission)).await;
            return None;
        }
        // A client resuming here from another hub of a group may be ahead
        // of this one's view of the shared stream: wait (admitted clients
        // only, for at most half the time left) until this hub's history
        // can answer it, rather than take its position for another
        // history's.
        if let Ok(Some(Cursor::From(from))) = presented_cursor(&head.request)
            && admit(shared, peer, &head.request).is_ok()
        {
            let now = Instant::now();
            let bound = now + deadline.saturating_duration_since(now) / 2;
            if timeout_at(bound, shared.fanout.catch_up(from))
                .await
                .is_err()
            {
                // It cannot tell what the client missed (cut off from its
                // group's stream): refused, as a hub that is down would
                // be, so the client resumes on another or later, rather
                // than be told `epoch` for its own epoch and sent again
                // what it has.
                bump(&shared.counters.handshake_failures);
                tracing::info!(%peer, "resume refused with 503: this hub has not read as far as the client's position and cannot now");
                let answer = http::Answer::behind_the_group();
                drop(head);
                Box::pin(reply(socket, answer, deadline, admission)).await;
                return None;
            }
        }
        // Only the bytes go on: tungstenite parses the head again.
        head.bytes
    };
    let socket = Replay::new(prefix, socket);
    upgrade_websocket(socket, peer, shared, outbox, deadline, admission).await
}

/// The answer to a plain HTTP request: the route's, or a refusal (404,
/// 405, or the token and Origin refusals an upgrade would get).
fn answer_http(head: &Head, peer: SocketAddr, shared: &Shared) -> http::Answer {
    bump(&shared.counters.http_requests);
    let request = &head.request;
    let answer = match http::route(request) {
        Err(answer) => answer,
        Ok(route) => {
            let admitted = if route.needs_token(request) {
                admit(shared, peer, request)
            } else {
                Ok(())
            };
            match admitted {
                Ok(()) => http::answer(shared, route),
                Err((why, refusal)) => {
                    count_refusal(shared, peer, why);
                    http::Answer::refusal(refusal)
                }
            }
        }
    };
    // The path may carry a token (`?token=`): only the status is logged.
    tracing::debug!(%peer, status = answer.status.as_u16(), "http request answered");
    if request.method() == Method::HEAD {
        answer.for_head()
    } else {
        answer
    }
}

/// Writes `answer` by `deadline`, then closes the connection. Once the
/// answer is out the connection no longer counts as a pending handshake,
/// while it lingers.
async fn reply<S>(mut socket: S, answer: http::Answer, deadline: Instant, admission: &mut Admission)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let bytes = answer.into_bytes();
    let written = timeout_at(deadline, async {
        socket.write_all(&bytes).await?;
        socket.flush().await
    })
    .await;
    admission.handshake_done();
    if matches!(written, Ok(Ok(()))) {
        linger(socket).await;
    }
}

/// Upgrades `socket` (due by `deadline`) if the request passes the Origin
/// and token checks; the client has then joined the fan-out with `outbox`.
/// `None` if the upgrade was refused, failed or timed out: counted and
/// logged here. The place under `max_pending_handshakes` is given back
/// either way.
async fn upgrade_websocket<'a, S>(
    socket: S,
    peer: SocketAddr,
    shared: &'a Shared,
    outbox: &Arc<Outbox>,
    deadline: Instant,
    admission: &mut Admission,
) -> Option<(WebSocketStream<S>, Membership<'a>)>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let config = &shared.config;
    // Join the fan-out once the request is accepted, before the response
    // goes out: when a client's handshake completes it is already
    // receiving, so an event published right after by anyone reaches it.
    // Frames relayed meanwhile wait in its queue for the writer. A refused
    // client never joins.
    let mut member = None;
    let mut refused = None;
    // `Result` with tungstenite's large `ErrorResponse` is the callback's signature.
    #[allow(clippy::result_large_err)]
    let accept = |request: &Request, response: Response| {
        let mut response =
            check_upgrade(shared, peer, request, response).map_err(|(why, answer)| {
                refused = Some(why);
                answer
            })?;
        let Ok(cursor) = presented_cursor(request) else {
            refused = Some(Refused::BadResume);
            let body = "bad request: send one Watchtower-Resume (or ?resume=): `new` or a \
                        position as the hub gave it\n";
            return Err(refusal(StatusCode::BAD_REQUEST, body));
        };
        let Ok(identity) = presented_identity(request) else {
            refused = Some(Refused::BadClientId);
            let body = "bad request: send at most one Watchtower-Client-Id (or ?client_id=): 1 to \
                        128 letters, digits, '-', '_' or '.'\n";
            return Err(refusal(StatusCode::BAD_REQUEST, body));
        };
        if let Some(origin) = identity {
            outbox.set_origin(origin);
        }
        let sampler = match presented_sample(request) {
            Ok(sampler) => sampler,
            Err(()) => {
                refused = Some(Refused::BadSample);
                let body = "bad request: send one Watchtower-Sample (or ?sample=): events a \
                            second, 1 to 1000\n";
                return Err(refusal(StatusCode::BAD_REQUEST, body));
            }
        };
        if let Some(sampler) = sampler {
            if cursor.is_some() {
                // Position frames promise that nothing before them was
                // skipped: a sample cannot keep that promise.
                refused = Some(Refused::BadSample);
                let body = "bad request: a sampled subscription skips events, so it cannot \
                            also resume; send Watchtower-Sample or Watchtower-Resume\n";
                return Err(refusal(StatusCode::BAD_REQUEST, body));
            }
            outbox.sample(sampler);
        }
        let joined = Membership::join(shared, Arc::clone(outbox), peer, cursor);
        if let Some(answer) = &joined.answer {
            answer.headers(response.headers_mut());
        }
        // The client learns what filter this hub takes, so it refuses a
        // subscription the hub would close it for instead of sending it.
        let limits = FilterLimits::new(
            config.max_filter_types,
            config.max_event_type_len,
            config.max_filter_bytes,
        );
        if let Ok(value) = HeaderValue::from_str(&limits.header_value()) {
            response.headers_mut().insert(FILTER_LIMITS_HEADER, value);
        }
        // Only the protocol's name goes back, never a token subprotocol.
        if offered_protocols(request).any(|p| p == PROTOCOL) {
            response.headers_mut().insert(
                header::SEC_WEBSOCKET_PROTOCOL,
                HeaderValue::from_static(PROTOCOL),
            );
        }
        member = Some(joined);
        Ok(response)
    };
    let upgrade = accept_hdr_async_with_config(socket, accept, Some(config.wire_config()));
    let upgraded = timeout_at(deadline, upgrade).await;
    admission.handshake_done();
    match upgraded {
        // `member` is set whenever the upgrade succeeded. Counted only now
        // that the 101 is out: a failed one counts as a handshake failure
        // only, not as a connection too.
        Ok(Ok(ws)) => member.map(|member| {
            bump(&shared.counters.connections_total);
            (ws, member)
        }),
        Ok(Err(error)) => {
            match refused {
                Some(why) => count_refusal(shared, peer, why),
                None => {
                    bump(&shared.counters.handshake_failures);
                    tracing::debug!(%error, "websocket upgrade failed");
                }
            }
            None
        }
        Err(_) => {
            bump(&shared.counters.handshake_failures);
            tracing::debug!(after = ?config.handshake_timeout, "websocket upgrade timed out");
            None
        }
    }
}

/// Counts and logs a refused upgrade or HTTP request.
fn count_refusal(shared: &Shared, peer: SocketAddr, why: Refused) {
    bump(&shared.counters.handshake_failures);
    match why {
        Refused::Origin(why) => {
            bump(&shared.counters.origin_rejected);
            if let Some(suppressed) = shared.log_refusal() {
                tracing::info!(%peer, reason = ?why, suppressed, "client refused with 403: Origin not allowed");
            }
        }
        Refused::Throttled => {
            bump(&shared.counters.auth_throttled);
            tracing::debug!(%peer, "client refused with 429: too many failed tokens");
        }
        Refused::Auth(why) => {
            bump(&shared.counters.auth_rejected);
            shared.throttle.failed(peer.ip());
            let status = auth_status(why).as_u16();
            if let Some(suppressed) = shared.log_refusal() {
                tracing::info!(%peer, reason = %why, status, suppressed, "client refused");
            }
        }
        Refused::BadResume => {
            if let Some(suppressed) = shared.log_refusal() {
                tracing::info!(%peer, suppressed, "client refused with 400: malformed resume position");
            }
        }
        Refused::BadSample => {
            if let Some(suppressed) = shared.log_refusal() {
                tracing::info!(%peer, suppressed, "client refused with 400: malformed sample request");
            }
        }
        Refused::BadClientId => {
            if let Some(suppressed) = shared.log_refusal() {
                tracing::info!(%peer, suppressed, "client refused with 400: malformed client id");
            }
        }
    }
}

/// Why an upgrade was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refused {
    /// A browser page from an origin that is not allowed: 403.
    Origin(OriginRefusal),
    /// No, a wrong, or several bearer tokens: 401 or 400.
    Auth(Refusal),
    /// Too many failed token checks from this peer lately: 429.
    Throttled,
    /// A malformed or repeated resume position: 400.
    BadResume,
    /// A malformed, repeated or out-of-range sample rate, or one beside a
    /// resume position: 400.
    BadSample,
    /// A malformed or repeated client identity: 400.
    BadClientId,
}

/// Request header carrying the identity a client keeps across its
/// connections (the transport sends a UUID), so the hub never sends it its
/// own events: not in a replay after a resume, not from a frame its
/// previous connection sent late.
pub(crate) const CLIENT_ID_HEADER: &str = "watchtower-client-id";
/// The same in the URL's query, for browsers: `?client_id=`.
pub(crate) const CLIENT_ID_QUERY: &str = "client_id";

/// Longest client identity accepted.
const MAX_CLIENT_ID_LEN: usize = 128;

/// The identity a client presented in [`CLIENT_ID_HEADER`] or
/// `?client_id=`, as the sender its bursts carry; `Err` if it is malformed
/// or there is more than one.
///
/// The sender is a stable hash of the identity (FNV-1a, as a position's
/// key), with the top bit set so it never equals a connection's id (those
/// count from 1): hubs of a group agree on it.
fn presented_identity(request: &Request) -> Result<Option<ClientId>, ()> {
    let mut found = None;
    for value in presented(request, CLIENT_ID_HEADER, CLIENT_ID_QUERY) {
        let value = value.ok_or(())?;
        let id = value.trim();
        let valid = (1..=MAX_CLIENT_ID_LEN).contains(&id.len())
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !valid {
            return Err(());
        }
        let mut key = b"watchtower-client-id:".to_vec();
        key.extend_from_slice(id.as_bytes());
        let origin = watchtower_core::frame_key(&key) | (1 << 63);
        if found.replace(origin).is_some() {
            return Err(());
        }
    }
    Ok(found)
}

/// The sample a client asked for in [`SAMPLE_HEADER`] or `?sample=`
/// (see [`crate::relay::sample`]); `Err` if it is not a whole number within the
/// budget, or there is more than one.
fn presented_sample(request: &Request) -> Result<Option<Sampler>, ()> {
    let mut found = None;
    for value in presented(request, SAMPLE_HEADER, SAMPLE_QUERY) {
        let per_second = value.ok_or(())?.trim().parse().map_err(|_| ())?;
        let sampler = Sampler::new(per_second).ok_or(())?;
        if found.replace(sampler).is_some() {
            return Err(());
        }
    }
    Ok(found)
}

/// Every value of the header `name` and of the query parameter `key`,
/// headers first; `None` for a header value that is not text.
fn presented<'r>(
    request: &'r Request,
    name: &'static str,
    key: &'static str,
) -> impl Iterator<Item = Option<Cow<'r, str>>> {
    let headers = request
        .headers()
        .get_all(name)
        .iter()
        .map(|v| v.to_str().ok().map(Cow::Borrowed));
    let query = request
        .uri()
        .query()
        .into_iter()
        .flat_map(|q| q.split('&'))
        .filter_map(move |p| p.strip_prefix(key)?.strip_prefix('='))
        // A browser's `encodeURIComponent` escapes the colons.
        .map(|v| Some(Cow::Owned(v.replace("%3A", ":").replace("%3a", ":"))));
    headers.chain(query)
}

/// The position a client presented in [`RESUME_HEADER`] or
/// `?resume=`; `Err` if it is malformed or there is more than one.
fn presented_cursor(request: &Request) -> Result<Option<Cursor>, ()> {
    let mut found = None;
    for value in presented(request, RESUME_HEADER, RESUME_QUERY) {
        let value = value.ok_or(())?;
        let cursor = if value.trim() == RESUME_NEW {
            Cursor::New
        } else {
            Cursor::From(value.parse().map_err(|_| ())?)
        };
        if found.replace(cursor).is_some() {
            return Err(());
        }
    }
    Ok(found)
}

/// The history's answer to a joining client: response headers, and the
/// first frame for one that presented a position.
#[derive(Debug)]
pub(super) struct Answer {
    joined: Joined,
    /// The client presented a position (or `new`).
    asked: bool,
}

impl Answer {
    fn headers(&self, headers: &mut HeaderMap) {
        let position = self.joined.position.to_string();
        if let Ok(value) = HeaderValue::from_str(&position) {
            headers.insert(POSITION_HEADER, value);
        }
        if let Some(outcome) = self.joined.outcome
            && let Ok(value) = HeaderValue::from_str(&recovered_header(outcome))
        {
            headers.insert(RECOVERED_HEADER, value);
        }
    }

    /// The first frame for a client that asked: `{"type":"resumed",…}`.
    pub(super) fn greeting(&self) -> Option<Utf8Bytes> {
        if !self.asked {
            return None;
        }
        let (recovered, replayed, reason) = match self.joined.outcome {
            None => (false, 0, None),
            Some(Ok(replayed)) => (true, replayed, None),
            Some(Err(reason)) => (false, 0, Some(reason)),
        };
        let frame = ControlFrame::Resumed {
            position: self.joined.position.to_string(),
            recovered,
            replayed,
            reason,
        };
        Some(Utf8Bytes::from(frame.to_json()))
    }
}

/// Accepts an upgrade, whatever the path, if its `Origin` (if any) is
/// allowed and `auth` admits its bearer token; otherwise answers 403, 401
/// with a `WWW-Authenticate: Bearer` challenge, or 400. Neither the
/// answer nor the refusal quotes what was sent. The origin is checked
/// first: a foreign page learns nothing about tokens.
// `Result` with tungstenite's large `ErrorResponse` is the callback's signature.
#[allow(clippy::result_large_err)]
fn check_upgrade(
    shared: &Shared,
    peer: SocketAddr,
    request: &Request,
    response: Response,
) -> Result<Response, (Refused, ErrorResponse)> {
    admit(shared, peer, request).map(|()| response)
}

/// The checks of [`check_upgrade`], for an upgrade or an HTTP request.
// The refusal is an HTTP answer; its size is tungstenite's.
#[allow(clippy::result_large_err)]
fn admit(
    shared: &Shared,
    peer: SocketAddr,
    request: &Request,
) -> Result<(), (Refused, ErrorResponse)> {
    if let Err(why) = shared.origins.check(request) {
        let body = "forbidden: this Origin may not connect; the hub's operator can allow it \
                    with --allow-origin (HubConfig::allowed_origins)\n";
        return Err((Refused::Origin(why), refusal(StatusCode::FORBIDDEN, body)));
    }
    if shared.auth.is_enabled()
        && let Some(left) = shared.throttle.blocked(peer.ip())
    {
        let body = "too many requests: too many failed tokens from this address; retry later\n";
        let mut answer = refusal(StatusCode::TOO_MANY_REQUESTS, body);
        let secs = left.as_secs().max(1);
        answer
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        return Err((Refused::Throttled, answer));
    }
    shared
        .auth
        .check(request)
        .map_err(|why| (Refused::Auth(why), unauthorized(why)))
}

/// The status a token refusal is answered with.
fn auth_status(why: Refusal) -> StatusCode {
    match why {
        Refusal::Several => StatusCode::BAD_REQUEST,
        Refusal::Missing | Refusal::Wrong | Refusal::QueryDisabled => StatusCode::UNAUTHORIZED,
    }
}

/// A 401 (or 400) answer to a refused upgrade.
fn unauthorized(why: Refusal) -> ErrorResponse {
    let body = match why {
        Refusal::Missing => {
            "unauthorized: send Authorization: Bearer <token> (or ?token=<token>, or offer the \
             subprotocols watchtower and watchtower.token.<base64url token>)\n"
        }
        Refusal::Wrong => "unauthorized: the bearer token is not valid\n",
        Refusal::Several => "bad request: send exactly one bearer token\n",
        Refusal::QueryDisabled => {
            "unauthorized: this hub does not accept ?token=; send Authorization: Bearer <token> \
             (the dashboard: open /#token=<token>)\n"
        }
    };
    let status = auth_status(why);
    let mut answer = refusal(status, body);
    if status == StatusCode::UNAUTHORIZED {
        answer
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    answer
}

/// An HTTP answer to a refused upgrade, with a one-line body, closing the
/// connection.
fn refusal(status: StatusCode, body: &'static str) -> ErrorResponse {
    let mut answer = ErrorResponse::new(Some(body.to_string()));
    *answer.status_mut() = status;
    let headers = answer.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    answer
}

/// Keeps the client in the fan-out and the `clients` gauge for as long as
/// it lives, even if the task is aborted.
pub(super) struct Membership<'a> {
    shared: &'a Shared,
    id: ClientId,
    /// With history on, where the client stands.
    pub(super) answer: Option<Answer>,
}

impl<'a> Membership<'a> {
    fn join(
        shared: &'a Shared,
        outbox: Arc<Outbox>,
        peer: SocketAddr,
        cursor: Option<Cursor>,
    ) -> Membership<'a> {
        let id = outbox.id();
        shared.clients.join(peer, Arc::clone(&outbox));
        let joined = shared.fanout.join(outbox, cursor);
        let counters = &shared.counters;
        bump(&counters.clients);
        match joined.and_then(|j| j.outcome) {
            Some(Ok(replayed)) => {
                bump(&counters.resumes_recovered);
                add(&counters.events_replayed, replayed);
                tracing::debug!(replayed, "resumed: recovered");
            }
            Some(Err(reason)) => {
                bump(&counters.resumes_not_recovered);
                tracing::info!(%reason, "resume not recovered; nothing replayed");
            }
            None => {}
        }
        let answer = joined.map(|joined| Answer {
            joined,
            asked: cursor.is_some(),
        });
        Membership { shared, id, answer }
    }
}

impl Drop for Membership<'_> {
    fn drop(&mut self) {
        self.shared.fanout.leave(self.id);
        self.shared.clients.leave(self.id);
        self.shared.counters.clients.fetch_sub(1, Relaxed);
    }
}
