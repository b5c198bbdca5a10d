//! Bearer-token auth at the WebSocket upgrade.

use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};

use tokio_tungstenite::tungstenite::handshake::server::Request;
use tokio_tungstenite::tungstenite::http::header::{AUTHORIZATION, SEC_WEBSOCKET_PROTOCOL};

use crate::error::HubError;

/// The longest token accepted, in bytes.
pub(crate) const MAX_TOKEN_LEN: usize = 4096;

/// The WebSocket subprotocol the hub speaks, and answers with when a
/// client offers it (a browser that offers protocols fails the handshake
/// unless the server picks one).
pub(crate) const PROTOCOL: &str = "watchtower";

/// A subprotocol carrying a bearer token, base64url without padding:
/// `watchtower.token.<base64url>`. Browsers cannot set headers on a
/// WebSocket, but they can offer subprotocols; the hub never answers with
/// this one, only with [`PROTOCOL`].
pub(crate) const TOKEN_PROTOCOL_PREFIX: &str = "watchtower.token.";

/// A secret token. `Debug` never shows it.
#[derive(Clone)]
pub(crate) struct Token(Box<[u8]>);

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl Token {
    pub(crate) fn new(token: String) -> Token {
        Token(token.into_bytes().into_boxed_slice())
    }

    /// Checks that the token can travel in a header and a query string,
    /// and is at least `min_len` bytes. The error never quotes it.
    pub(crate) fn validate(&self, min_len: usize) -> Result<(), HubError> {
        let fail = |m: &str| Err(HubError::Config(m.to_string()));
        if self.0.is_empty() {
            return fail("the bearer token is empty");
        }
        if self.0.len() < min_len {
            return Err(HubError::Config(format!(
                "a bearer token is {} bytes, shorter than min_token_len ({min_len}): \
                 use a long random token, such as the output of `openssl rand -hex 16`",
                self.0.len()
            )));
        }
        if self.0.len() > MAX_TOKEN_LEN {
            return fail("the bearer token is longer than 4096 bytes");
        }
        if !self.0.iter().all(|b| b.is_ascii_graphic()) {
            return fail(
                "the bearer token must be printable ASCII without spaces (such as base64 or hex)",
            );
        }
        Ok(())
    }
}

/// Why an upgrade was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// No `Authorization: Bearer` header, no token subprotocol and no
    /// `token` query parameter.
    Missing,
    /// A token was presented, but not a valid one.
    Wrong,
    /// More than one candidate token (several `Authorization` headers,
    /// token subprotocols or `token` parameters, or several kinds):
    /// answered with 400, so one request cannot try many guesses.
    Several,
    /// The token came as `?token=`, which this hub does not accept.
    QueryDisabled,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refusal::Missing => "no bearer token presented",
            Refusal::Wrong => "wrong bearer token",
            Refusal::Several => "more than one candidate token",
            Refusal::QueryDisabled => "token in the query string, which is turned off",
        })
    }
}

/// The tokens a hub accepts; none means no auth. The set can be replaced
/// while the hub runs ([`Auth::replace`]), but not emptied or started:
/// whether the hub asks for a token at all is fixed when it starts.
#[derive(Debug, Default)]
pub(crate) struct Auth {
    tokens: RwLock<Arc<[Token]>>,
    enabled: bool,
    min_len: usize,
    /// `?token=` is accepted as well as the header.
    allow_query: bool,
}

impl Auth {
    /// Validates every token against `min_len` (and the rules of
    /// [`Token::validate`]).
    pub(crate) fn new(
        tokens: Vec<Token>,
        min_len: usize,
        allow_query: bool,
    ) -> Result<Auth, HubError> {
        for token in &tokens {
            token.validate(min_len)?;
        }
        Ok(Auth {
            enabled: !tokens.is_empty(),
            tokens: RwLock::new(tokens.into()),
            min_len,
            allow_query,
        })
    }

    pub(crate) fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// Replaces the accepted tokens; clients already connected stay. The
    /// new tokens are checked like those given at start, and a hub started
    /// without tokens cannot be given some (nor one with tokens be left
    /// with none): on error the old tokens stay.
    pub(crate) fn replace(&self, tokens: Vec<Token>) -> Result<(), HubError> {
        if tokens.is_empty() == self.enabled {
            return Err(HubError::Config(if self.enabled {
                "cannot replace the bearer tokens with none: a hub started with tokens keeps asking for one".to_string()
            } else {
                "cannot give bearer tokens to a hub started without any: start it with a token"
                    .to_string()
            }));
        }
        for token in &tokens {
            token.validate(self.min_len)?;
        }
        *self.tokens.write().unwrap_or_else(PoisonError::into_inner) = tokens.into();
        Ok(())
    }

    /// Admits `request` if auth is off, or if it carries exactly one
    /// candidate token (an `Authorization: Bearer` header, a
    /// `watchtower.token.<base64url>` subprotocol offered in
    /// `Sec-WebSocket-Protocol`, or, if allowed, a `token` query
    /// parameter) and that is an accepted token.
    pub(crate) fn check(&self, request: &Request) -> Result<(), Refusal> {
        if !self.is_enabled() {
            return Ok(());
        }
        let mut candidates = 0;
        let mut candidate = None;
        let mut from_query = false;
        for value in request.headers().get_all(AUTHORIZATION) {
            candidates += 1;
            candidate = bearer(value.as_bytes()).map(<[u8]>::to_vec);
        }
        for encoded in
            offered_protocols(request).filter_map(|p| p.strip_prefix(TOKEN_PROTOCOL_PREFIX))
        {
            candidates += 1;
            if candidates > 1 {
                break;
            }
            // A malformed encoding is a wrong token, not a missing one.
            candidate = Some(base64url_decode(encoded).unwrap_or_default());
        }
        let params = request.uri().query().into_iter().flat_map(|q| q.split('&'));
        for value in params.filter_map(|pair| pair.strip_prefix("token=")) {
            candidates += 1;
            if candidates > 1 {
                break;
            }
            from_query = true;
            candidate = Some(percent_decode(value).unwrap_or_default());
        }
        if candidates > 1 {
            return Err(Refusal::Several);
        }
        if from_query && !self.allow_query {
            return Err(Refusal::QueryDisabled);
        }
        let Some(candidate) = candidate else {
            return Err(Refusal::Missing);
        };
        // Every token is compared, so the time taken does not say which
        // one (if any) matched.
        let tokens = Arc::clone(&self.tokens.read().unwrap_or_else(PoisonError::into_inner));
        let matched = tokens
            .iter()
            .fold(false, |any, token| same(&token.0, &candidate) | any);
        if matched { Ok(()) } else { Err(Refusal::Wrong) }
    }
}

/// The subprotocols `request` offers, from every `Sec-WebSocket-Protocol`
/// line (each a comma-separated list).
pub(crate) fn offered_protocols(request: &Request) -> impl Iterator<Item = &str> {
    request
        .headers()
        .get_all(SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|list| list.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty())
}

/// Decodes base64url without padding (RFC 4648, section 5), as a
/// subprotocol can carry it. `None` for any other character or a length
/// no encoding has.
fn base64url_decode(text: &str) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(u32::from(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        }))
    };
    let bytes = text.as_bytes();
    if bytes.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= value(c)? << (18 - 6 * i);
        }
        let [_, a, b, c] = n.to_be_bytes();
        out.extend_from_slice(&[a, b, c][..chunk.len() - 1]);
    }
    Some(out)
}

/// The token of an `Authorization: Bearer TOKEN` value (the scheme is case
/// insensitive, as RFC 7235 says).
fn bearer(value: &[u8]) -> Option<&[u8]> {
    let scheme = value.get(..7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    let token = value.get(7..)?.trim_ascii();
    (!token.is_empty()).then_some(token)
}

/// Decodes `%XX` escapes (a `+` stays a `+`: tokens are not form data).
/// `None` for a malformed escape.
fn percent_decode(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    Some(out)
}

/// Compares in time that depends on the lengths only, not on where the
/// first difference is, so response timing does not leak a token prefix.
fn same(expected: &[u8], presented: &[u8]) -> bool {
    let mut diff = u8::from(expected.len() != presented.len());
    for (i, &e) in expected.iter().enumerate() {
        diff |= e ^ presented.get(i).copied().unwrap_or(!e);
    }
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(tokens: &[&str]) -> Auth {
        Auth::new(
            tokens.iter().map(|t| Token::new(t.to_string())).collect(),
            1,
            true,
        )
        .unwrap()
    }

    fn request(uri: &str, authorization: Option<&str>) -> Request {
        let mut builder = Request::builder().uri(uri);
        if let Some(value) = authorization {
            builder = builder.header(AUTHORIZATION, value);
        }
        builder.body(()).unwrap()
    }

    #[test]
    fn no_tokens_admit_everyone() {
        assert_eq!(auth(&[]).check(&request("/events", None)), Ok(()));
    }

    #[test]
    fn a_bearer_header_or_a_token_parameter_admits() {
        let a = auth(&["s3cret", "n3xt"]);
        assert_eq!(a.check(&request("/e", Some("Bearer s3cret"))), Ok(()));
        assert_eq!(a.check(&request("/e", Some("bearer n3xt"))), Ok(()));
        assert_eq!(a.check(&request("/e?x=1&token=s3cret", None)), Ok(()));
        assert_eq!(a.check(&request("/e?token=s%33cret", None)), Ok(()));
    }

    #[test]
    fn refusals_say_missing_or_wrong() {
        let a = auth(&["s3cret"]);
        assert_eq!(a.check(&request("/e", None)), Err(Refusal::Missing));
        assert_eq!(
            a.check(&request("/e", Some("Basic czNjcmV0"))),
            Err(Refusal::Missing)
        );
        for wrong in ["Bearer s3cre", "Bearer s3cret2", "Bearer S3CRET", "Bearer "] {
            let refusal = a.check(&request("/e", Some(wrong)));
            assert!(refusal.is_err(), "{wrong}");
        }
        assert_eq!(
            a.check(&request("/e?token=nope", None)),
            Err(Refusal::Wrong)
        );
        assert_eq!(a.check(&request("/e?token=%zz", None)), Err(Refusal::Wrong));
    }

    #[test]
    fn one_candidate_per_request() {
        let a = auth(&["s3cret"]);
        let several = [
            request("/e?token=nope", Some("Bearer s3cret")),
            request("/e?token=nope&token=s3cret", None),
            Request::builder()
                .uri("/e")
                .header(AUTHORIZATION, "Bearer nope")
                .header(AUTHORIZATION, "Bearer s3cret")
                .body(())
                .unwrap(),
        ];
        for r in &several {
            assert_eq!(a.check(r), Err(Refusal::Several));
        }
        let header_only = Auth::new(vec![Token::new("s3cret".to_string())], 1, false).unwrap();
        assert_eq!(
            header_only.check(&request("/e?token=s3cret", None)),
            Err(Refusal::QueryDisabled)
        );
        assert_eq!(
            header_only.check(&request("/e", Some("Bearer s3cret"))),
            Ok(())
        );
    }

    fn offering(protocols: &str) -> Request {
        Request::builder()
            .uri("/e")
            .header(SEC_WEBSOCKET_PROTOCOL, protocols)
            .body(())
            .unwrap()
    }

    #[test]
    fn a_token_subprotocol_admits_even_with_query_tokens_off() {
        // "s3cret" in base64url: czNjcmV0.
        let header_only = Auth::new(vec![Token::new("s3cret".to_string())], 1, false).unwrap();
        assert_eq!(
            header_only.check(&offering("watchtower, watchtower.token.czNjcmV0")),
            Ok(())
        );
        assert_eq!(
            header_only.check(&offering("watchtower,watchtower.token.bm9wZQ")),
            Err(Refusal::Wrong)
        );
        assert_eq!(
            header_only.check(&offering("watchtower.token.!!")),
            Err(Refusal::Wrong)
        );
        assert_eq!(
            header_only.check(&offering("watchtower")),
            Err(Refusal::Missing)
        );
        // Still one candidate per request, whatever carries it.
        for several in [
            offering("watchtower.token.bm9wZQ, watchtower.token.czNjcmV0"),
            Request::builder()
                .uri("/e")
                .header(AUTHORIZATION, "Bearer nope")
                .header(SEC_WEBSOCKET_PROTOCOL, "watchtower.token.czNjcmV0")
                .body(())
                .unwrap(),
            Request::builder()
                .uri("/e?token=s3cret")
                .header(SEC_WEBSOCKET_PROTOCOL, "watchtower.token.czNjcmV0")
                .body(())
                .unwrap(),
        ] {
            assert_eq!(header_only.check(&several), Err(Refusal::Several));
        }
    }

    #[test]
    fn base64url() {
        for (text, bytes) in [
            ("", &b""[..]),
            ("Zg", b"f"),
            ("Zm8", b"fo"),
            ("Zm9v", b"foo"),
            ("Zm9vYg", b"foob"),
            ("Zm9vYmFy", b"foobar"),
            ("-_8", &[0xfb, 0xff][..]),
        ] {
            assert_eq!(base64url_decode(text).as_deref(), Some(bytes), "{text}");
        }
        for bad in ["Z", "Zm9v=", "Zm+v", "Zm/v", "Zm9vY"] {
            assert_eq!(base64url_decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn short_tokens_are_refused_at_start_without_being_quoted() {
        let e = Auth::new(vec![Token::new("abcdef".to_string())], 16, true).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("min_token_len") && text.contains("16"),
            "{text}"
        );
        assert!(!text.contains("abcdef"), "{text}");
    }

    #[test]
    fn bad_tokens_are_config_errors_that_do_not_quote_them() {
        for bad in ["", "has space", "tab\there", "ünïcode"] {
            let e = Auth::new(vec![Token::new(bad.to_string())], 1, true).unwrap_err();
            assert!(matches!(e, HubError::Config(_)));
            if !bad.is_empty() {
                assert!(!e.to_string().contains(bad), "{e}");
            }
        }
        assert!(!format!("{:?}", auth(&["s3cret"])).contains("s3cret"));
    }

    #[test]
    fn comparison() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"ab"));
        assert!(!same(b"abc", b"abcd"));
        assert!(!same(b"", b"\xff"));
    }
}
