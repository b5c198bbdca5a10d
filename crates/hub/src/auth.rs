//! Bearer-token auth at the WebSocket upgrade.

use std::fmt;

use tokio_tungstenite::tungstenite::handshake::server::Request;
use tokio_tungstenite::tungstenite::http::header::AUTHORIZATION;

use crate::error::HubError;

/// The longest token accepted, in bytes.
const MAX_TOKEN_LEN: usize = 4096;

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

    /// Checks that the token can travel in a header and a query string.
    /// The error never quotes it.
    pub(crate) fn validate(&self) -> Result<(), HubError> {
        let fail = |m: &str| Err(HubError::Config(m.to_string()));
        if self.0.is_empty() {
            return fail("the bearer token is empty");
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
    /// No `Authorization: Bearer` header and no `token` query parameter.
    Missing,
    /// A token was presented, but not a valid one.
    Wrong,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refusal::Missing => "no bearer token presented",
            Refusal::Wrong => "wrong bearer token",
        })
    }
}

/// The tokens a hub accepts; none means no auth.
#[derive(Debug, Clone, Default)]
pub(crate) struct Auth {
    tokens: Vec<Token>,
}

impl Auth {
    pub(crate) fn new(tokens: Vec<Token>) -> Result<Auth, HubError> {
        for token in &tokens {
            token.validate()?;
        }
        Ok(Auth { tokens })
    }

    pub(crate) fn is_enabled(&self) -> bool {
        !self.tokens.is_empty()
    }

    /// Admits `request` if auth is off, or if its `Authorization: Bearer`
    /// header or its `token` query parameter holds an accepted token.
    pub(crate) fn check(&self, request: &Request) -> Result<(), Refusal> {
        if !self.is_enabled() {
            return Ok(());
        }
        let mut presented = false;
        let from_headers = request
            .headers()
            .get_all(AUTHORIZATION)
            .iter()
            .filter_map(|value| bearer(value.as_bytes()).map(<[u8]>::to_vec));
        let from_query = request
            .uri()
            .query()
            .into_iter()
            .flat_map(|query| query.split('&'))
            .filter_map(|pair| pair.strip_prefix("token="))
            .map(|value| percent_decode(value).unwrap_or_default());
        for candidate in from_headers.chain(from_query) {
            presented = true;
            // Every token is compared, so the time taken does not say
            // which one (if any) matched.
            let matched = self
                .tokens
                .iter()
                .fold(false, |any, token| same(&token.0, &candidate) | any);
            if matched {
                return Ok(());
            }
        }
        Err(if presented {
            Refusal::Wrong
        } else {
            Refusal::Missing
        })
    }
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
        Auth::new(tokens.iter().map(|t| Token::new(t.to_string())).collect()).unwrap()
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
        assert_eq!(
            a.check(&request("/e?token=nope", Some("Bearer s3cret"))),
            Ok(())
        );
    }

    #[test]
    fn bad_tokens_are_config_errors_that_do_not_quote_them() {
        for bad in ["", "has space", "tab\there", "ünïcode"] {
            let e = Auth::new(vec![Token::new(bad.to_string())]).unwrap_err();
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
