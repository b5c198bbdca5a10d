//! The hub's HTTP side, on the WebSocket port: what a plain GET is
//! answered with.
//!
//! - `head`: reading the request head (bounded in size; the caller bounds
//!   the time) and replaying it to tungstenite when it is an upgrade;
//! - `mod.rs` (here): routing, and the answers' framing (every answer is
//!   complete, with `Content-Length` and `Connection: close`);
//! - `metrics`: the Prometheus text, from [`HubStats::figures`];
//! - `api`: the JSON of `/api/stats` and `/api/clients`;
//! - `page`: the dashboard, one HTML page embedded in the binary, with its
//!   Content-Security-Policy.
//!
//! Why `httparse` and not hyper: the hub needs one request per connection,
//! GET only, no bodies, no keep-alive, and the upgrade must reach
//! tungstenite's own handshake. Reading the head with the parser
//! tungstenite already uses is about a hundred lines; hyper would add a
//! second HTTP stack (and its upgrade machinery) to the dependency tree for
//! the same.

mod api;
mod head;
mod metrics;
mod page;

use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request};
use tokio_tungstenite::tungstenite::http::{Method, StatusCode, header};

use crate::shared::Shared;

pub(crate) use head::{Head, HeadError, Replay, read_head};

/// The pages the hub answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    /// `/` or `/dashboard`: the dashboard page.
    Dashboard,
    /// `/metrics`: Prometheus text.
    Metrics,
    /// `/healthz`: 200 or 503, one line. Open without the token.
    Health,
    /// `/api/stats`: the stats as JSON.
    Stats,
    /// `/api/clients`: the connected clients as JSON.
    Clients,
}

impl Route {
    /// Whether a hub with a token checks one on this `request`: on every
    /// route but `/healthz` and the page. The page is static (what it
    /// shows comes from routes that do need the token), so a browser can
    /// load it with the token in the URL's fragment (`/#token=`), which
    /// is never sent; a token sent in its query is checked like any.
    pub(crate) fn needs_token(self, request: &Request) -> bool {
        match self {
            Route::Health => false,
            Route::Dashboard => request
                .uri()
                .query()
                .is_some_and(|q| q.split('&').any(|p| p.starts_with("token="))),
            Route::Metrics | Route::Stats | Route::Clients => true,
        }
    }
}

/// The route `request` asks for, or the answer that refuses it: 404 for an
/// unknown path, 405 for a method other than GET or HEAD. A HEAD request
/// is answered as GET without the body (see [`Answer::for_head`]).
pub(crate) fn route(request: &Request) -> Result<Route, Answer> {
    let route = match request.uri().path() {
        "/" | "/dashboard" => Route::Dashboard,
        "/metrics" => Route::Metrics,
        "/healthz" => Route::Health,
        "/api/stats" => Route::Stats,
        "/api/clients" => Route::Clients,
        _ => {
            return Err(Answer::text(
                StatusCode::NOT_FOUND,
                "not found: try /, /metrics, /healthz, /api/stats or /api/clients, \
                 or a WebSocket upgrade on any path\n",
            ));
        }
    };
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut answer = Answer::text(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed: only GET and HEAD\n",
        );
        answer.headers.push(("allow", "GET, HEAD".into()));
        return Err(answer);
    }
    Ok(route)
}

/// Answers an admitted request for `route`.
pub(crate) fn answer(shared: &Shared, route: Route) -> Answer {
    match route {
        Route::Health => match shared.health() {
            Ok(()) => Answer::text(StatusCode::OK, "ok\n"),
            Err(why) => Answer::text(StatusCode::SERVICE_UNAVAILABLE, why),
        },
        Route::Metrics => Answer {
            status: StatusCode::OK,
            content_type: metrics::CONTENT_TYPE,
            headers: Vec::new(),
            body: metrics::render(&shared.stats(), shared.uptime()).into_bytes(),
            head_only: false,
        },
        Route::Stats => Answer::json(api::stats(&shared.stats(), shared.uptime())),
        Route::Clients => match shared.pace_clients_api() {
            Ok(()) => Answer::json(api::clients(&shared.clients)),
            Err(wait) => {
                let mut answer = Answer::text(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too many requests: /api/clients is answered a few times a second, \
                     hub-wide; retry later\n",
                );
                let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                answer
                    .headers
                    .push(("retry-after", secs.max(1).to_string()));
                answer
            }
        },
        Route::Dashboard => page::answer(),
    }
}

/// A complete HTTP answer.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    content_type: &'static str,
    /// Headers beyond the ones every answer has.
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    /// Answers a HEAD request: the head only, `Content-Length` still the
    /// body's.
    head_only: bool,
}

impl Answer {
    fn text(status: StatusCode, body: &str) -> Answer {
        Answer {
            status,
            content_type: "text/plain; charset=utf-8",
            headers: Vec::new(),
            body: body.as_bytes().to_vec(),
            head_only: false,
        }
    }

    /// The refusal of a resume this hub cannot answer yet: its history has
    /// not read as far as the client's position (or into its epoch), and
    /// its backplane cannot tell how far that is in time (see
    /// `Fanout::catch_up`).
    pub(crate) fn behind_the_group() -> Answer {
        let mut answer = Answer::text(
            StatusCode::SERVICE_UNAVAILABLE,
            "this hub has not yet read as far as your position and cannot now (cut off from its group's stream); resume on another hub or retry\n",
        );
        answer.headers.push(("retry-after", "1".to_string()));
        answer
    }

    fn json(body: String) -> Answer {
        Answer {
            status: StatusCode::OK,
            content_type: "application/json",
            headers: Vec::new(),
            body: body.into_bytes(),
            head_only: false,
        }
    }

    /// The answer a refused upgrade would get (403, 401, 400, 429), for a
    /// refused HTTP request.
    pub(crate) fn refusal(refusal: ErrorResponse) -> Answer {
        let (parts, body) = refusal.into_parts();
        // Only the headers the refusals set beyond the framing ones.
        let headers = parts
            .headers
            .iter()
            .filter_map(|(name, value)| {
                let name = if name == header::WWW_AUTHENTICATE {
                    "www-authenticate"
                } else if name == header::RETRY_AFTER {
                    "retry-after"
                } else {
                    return None;
                };
                Some((name, value.to_str().ok()?.to_string()))
            })
            .collect();
        Answer {
            status: parts.status,
            content_type: "text/plain; charset=utf-8",
            headers,
            body: body.unwrap_or_default().into_bytes(),
            head_only: false,
        }
    }

    /// This answer, for a HEAD request: the same status and headers,
    /// `Content-Length` included, and no body (RFC 9110, 9.3.2). Whatever
    /// the status: no answer to HEAD has a body.
    pub(crate) fn for_head(mut self) -> Answer {
        self.head_only = true;
        self
    }

    /// An answer for a request head that could not be read: 431 or 400.
    pub(crate) fn bad_head(error: &HeadError) -> Option<Answer> {
        match error {
            HeadError::TooLarge => Some(Answer::text(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "request head too large\n",
            )),
            HeadError::Malformed => Some(Answer::text(
                StatusCode::BAD_REQUEST,
                "bad request: not an HTTP/1.1 request head\n",
            )),
            HeadError::Closed | HeadError::Io => None,
        }
    }

    /// The bytes on the wire: status line, headers, body. Every answer
    /// closes the connection and is never cached (the figures change
    /// every second; the page is small).
    pub(crate) fn into_bytes(self) -> Vec<u8> {
        let reason = self.status.canonical_reason().unwrap_or("");
        let mut out = format!(
            "HTTP/1.1 {} {reason}\r\ncontent-type: {}\r\ncontent-length: {}\r\n\
             connection: close\r\ncache-control: no-store\r\nx-content-type-options: nosniff\r\n",
            self.status.as_u16(),
            self.content_type,
            self.body.len(),
        );
        for (name, value) in &self.headers {
            out.push_str(name);
            out.push_str(": ");
            out.push_str(value);
            out.push_str("\r\n");
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        if !self.head_only {
            bytes.extend_from_slice(&self.body);
        }
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str, path: &str) -> Request {
        Request::builder()
            .method(method)
            .uri(path)
            .body(())
            .unwrap()
    }

    #[test]
    fn routes() {
        assert_eq!(route(&request("GET", "/metrics")).unwrap(), Route::Metrics);
        assert_eq!(
            route(&request("GET", "/?token=x")).unwrap(),
            Route::Dashboard
        );
        let nf = route(&request("GET", "/nope")).unwrap_err();
        assert_eq!(nf.status, StatusCode::NOT_FOUND);
        let post = route(&request("POST", "/metrics")).unwrap_err();
        assert_eq!(post.status, StatusCode::METHOD_NOT_ALLOWED);
        let text = String::from_utf8(post.into_bytes()).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
            "{text}"
        );
        assert!(text.contains("\r\nallow: GET, HEAD\r\n"), "{text}");
        assert!(text.contains("\r\nconnection: close\r\n"), "{text}");
        assert_eq!(route(&request("HEAD", "/metrics")).unwrap(), Route::Metrics);
        let get = Answer::text(StatusCode::OK, "ok\n");
        let head = String::from_utf8(Answer::text(StatusCode::OK, "ok\n").for_head().into_bytes())
            .unwrap();
        let get = String::from_utf8(get.into_bytes()).unwrap();
        assert_eq!(get, format!("{head}ok\n"));
        assert!(head.ends_with("\r\n\r\n") && head.contains("content-length: 3\r\n"));
        let plain = request("GET", "/");
        assert!(!Route::Health.needs_token(&plain) && Route::Metrics.needs_token(&plain));
        assert!(!Route::Dashboard.needs_token(&plain));
        assert!(Route::Dashboard.needs_token(&request("GET", "/?x=1&token=t")));
    }
}
