//! Validating WebSocket URLs, and printing them without secrets.

use std::fmt;

use tokio_tungstenite::tungstenite::http::Uri;
use watchtower_core::WatchtowerError;

/// A checked `ws://` or `wss://` URL.
#[derive(Clone)]
pub(crate) struct WsUrl {
    uri: Uri,
    secure: bool,
    host: String,
    port: u16,
}

const EXAMPLE: &str =
    "a valid URL looks like ws://localhost:8080/events or wss://api.example.com/events";

impl WsUrl {
    /// Parses and checks `text`; every failure is a `Config` error that says
    /// what a valid URL looks like.
    pub(crate) fn parse(text: &str) -> Result<WsUrl, WatchtowerError> {
        let shown = redact(text);
        if text.trim().is_empty() {
            return Err(WatchtowerError::Config(format!(
                "the URL is empty; {EXAMPLE}"
            )));
        }
        let uri: Uri = text
            .parse()
            .map_err(|_| WatchtowerError::Config(format!("`{shown}` is not a URL; {EXAMPLE}")))?;
        let secure = match uri.scheme_str() {
            Some("ws") => false,
            Some("wss") => true,
            Some(other) => {
                return Err(WatchtowerError::Config(format!(
                    "`{shown}` has the scheme `{other}`, but a WebSocket URL starts with ws:// or wss://; {EXAMPLE}"
                )));
            }
            None => {
                return Err(WatchtowerError::Config(format!(
                    "`{shown}` has no scheme; {EXAMPLE}"
                )));
            }
        };
        let host = match uri.host() {
            Some(h) if !h.is_empty() => h.trim_start_matches('[').trim_end_matches(']').to_string(),
            _ => {
                return Err(WatchtowerError::Config(format!(
                    "`{shown}` has no host; {EXAMPLE}"
                )));
            }
        };
        if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
            return Err(WatchtowerError::Config(format!(
                "`{shown}` carries credentials in the URL (user:password@); pass them as a header \
                 with the builder's `header` or `bearer_token` instead"
            )));
        }
        let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
        Ok(WsUrl {
            uri,
            secure,
            host,
            port,
        })
    }

    pub(crate) fn uri(&self) -> &Uri {
        &self.uri
    }

    pub(crate) fn is_secure(&self) -> bool {
        self.secure
    }

    pub(crate) fn host(&self) -> &str {
        &self.host
    }

    pub(crate) fn port(&self) -> u16 {
        self.port
    }
}

impl fmt::Display for WsUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact(&self.uri.to_string()))
    }
}

impl fmt::Debug for WsUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The URL with userinfo removed and every query value replaced by
/// `<redacted>`: tokens often travel in the query string, and logs, errors
/// and `Debug` output must never show them. Works on any text, URL or not.
pub fn redact(url: &str) -> String {
    let (without_fragment, _) = url.split_once('#').unwrap_or((url, ""));
    let (base, query) = match without_fragment.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (without_fragment, None),
    };
    let mut out = String::with_capacity(url.len());
    // Drop `user:pass@` from the authority.
    match base.split_once("://") {
        Some((scheme, rest)) => {
            out.push_str(scheme);
            out.push_str("://");
            let (authority, path) = match rest.find('/') {
                Some(i) => rest.split_at(i),
                None => (rest, ""),
            };
            match authority.rsplit_once('@') {
                Some((_, host)) => {
                    out.push_str("<redacted>@");
                    out.push_str(host);
                }
                None => out.push_str(authority),
            }
            out.push_str(path);
        }
        None => match base.rsplit_once('@') {
            Some((_, host)) => {
                out.push_str("<redacted>@");
                out.push_str(host);
            }
            None => out.push_str(base),
        },
    }
    if let Some(query) = query {
        out.push('?');
        for (i, pair) in query.split('&').enumerate() {
            if i > 0 {
                out.push('&');
            }
            match pair.split_once('=') {
                Some((key, _)) => {
                    out.push_str(key);
                    out.push_str("=<redacted>");
                }
                None => out.push_str(pair),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_error(text: &str) -> String {
        match WsUrl::parse(text) {
            Err(WatchtowerError::Config(m)) => m,
            other => panic!("expected a Config error for {text:?}, got {other:?}"),
        }
    }

    #[test]
    fn accepts_ws_and_wss() {
        let u = WsUrl::parse("ws://localhost:8080/events").unwrap();
        assert!(!u.is_secure());
        assert_eq!((u.host(), u.port()), ("localhost", 8080));
        let u = WsUrl::parse("wss://api.example.com/events").unwrap();
        assert!(u.is_secure());
        assert_eq!(u.port(), 443);
        let u = WsUrl::parse("ws://[::1]:9/").unwrap();
        assert_eq!(u.host(), "::1");
    }

    #[test]
    fn rejects_the_specs_bad_urls_with_guidance() {
        for bad in [
            "http://localhost:8080/events",
            "localhost:8080",
            "",
            "   ",
            "ws://",
            "ftp://x/y",
        ] {
            let m = config_error(bad);
            assert!(m.contains("ws://localhost:8080/events"), "{bad:?}: {m}");
        }
        assert!(config_error("http://localhost:8080/events").contains("scheme `http`"));
    }

    #[test]
    fn rejects_userinfo_without_echoing_it() {
        let m = config_error("ws://user:hunter2@host/x");
        assert!(!m.contains("hunter2"), "{m}");
    }

    #[test]
    fn redaction_hides_query_values_and_userinfo() {
        assert_eq!(
            redact("wss://u:p@api.example.com:8443/events?token=abc123&x=1&flag#frag"),
            "wss://<redacted>@api.example.com:8443/events?token=<redacted>&x=<redacted>&flag"
        );
        assert_eq!(redact("ws://h/p"), "ws://h/p");
        let u = WsUrl::parse("ws://h:1/p?token=s3cret").unwrap();
        assert!(!u.to_string().contains("s3cret"));
        assert!(!format!("{u:?}").contains("s3cret"));
    }
}
