//! The `Origin` check at the WebSocket upgrade: a page from a foreign site
//! must not be able to use a browser as a client of the hub.
//!
//! Browsers send `Origin` with every WebSocket upgrade and do not let a
//! page change it; native clients (the transport, the CLI, curl) send
//! none. So a request without `Origin` is admitted, one whose `Origin` is
//! the hub itself (same host and port as its `Host`) or on the allowed
//! list is admitted, and any other is refused with 403.

use tokio_tungstenite::tungstenite::handshake::server::Request;
use tokio_tungstenite::tungstenite::http::header::{HOST, ORIGIN};

/// Why an `Origin` was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OriginRefusal {
    /// Not the hub's own origin, and not on the allowed list.
    Foreign,
    /// More than one `Origin` header, or one that is not text.
    Malformed,
}

/// The origins a hub admits, from
/// [`HubConfig::allowed_origins`](crate::HubConfig::allowed_origins).
#[derive(Debug, Clone, Default)]
pub(crate) struct Origins {
    any: bool,
    /// Lowercased, as browsers serialise origins.
    allowed: Vec<Box<str>>,
}

impl Origins {
    pub(crate) fn new(list: &[String]) -> Origins {
        Origins {
            any: list.iter().any(|o| o == "*"),
            allowed: list
                .iter()
                .filter(|o| *o != "*")
                .map(|o| o.to_ascii_lowercase().into_boxed_str())
                .collect(),
        }
    }

    /// Admits a request without `Origin`, with the hub's own origin, or
    /// with an allowed one.
    pub(crate) fn check(&self, request: &Request) -> Result<(), OriginRefusal> {
        let mut values = request.headers().get_all(ORIGIN).iter();
        let Some(origin) = values.next() else {
            return Ok(());
        };
        if values.next().is_some() {
            return Err(OriginRefusal::Malformed);
        }
        let origin = origin.to_str().map_err(|_| OriginRefusal::Malformed)?;
        if self.any || self.allowed.iter().any(|a| a.eq_ignore_ascii_case(origin)) {
            return Ok(());
        }
        // Same origin: the page was served by this hub (its host and port
        // are the ones the browser dialled).
        let host = request.headers().get(HOST).and_then(|h| h.to_str().ok());
        let authority = origin.split_once("://").map(|(_, rest)| rest);
        match (authority, host) {
            (Some(authority), Some(host)) if authority.eq_ignore_ascii_case(host) => Ok(()),
            _ => Err(OriginRefusal::Foreign),
        }
    }
}

/// Checks one entry of `allowed_origins`: `*`, `null`, or
/// `scheme://host[:port]` with no path, as browsers send it.
pub(crate) fn validate(origin: &str) -> Result<(), String> {
    if origin == "*" || origin == "null" {
        return Ok(());
    }
    let Some((scheme, authority)) = origin.split_once("://") else {
        return Err(format!(
            "allowed_origins entry {origin:?} must look like https://example.com[:port], or be *"
        ));
    };
    let scheme_ok = !scheme.is_empty()
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
    let authority_ok = !authority.is_empty()
        && authority
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"/?#@".contains(&b));
    if scheme_ok && authority_ok {
        Ok(())
    } else {
        Err(format!(
            "allowed_origins entry {origin:?} must be scheme://host[:port] with no path or \
             trailing slash (as a browser sends it), or *"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(origins: &[&str], host: &str) -> Request {
        let mut builder = Request::builder().uri("/events").header(HOST, host);
        for origin in origins {
            builder = builder.header(ORIGIN, *origin);
        }
        builder.body(()).unwrap()
    }

    #[test]
    fn no_origin_and_the_hubs_own_origin_are_admitted_by_default() {
        let o = Origins::new(&[]);
        assert_eq!(o.check(&request(&[], "127.0.0.1:8080")), Ok(()));
        let own = request(&["http://127.0.0.1:8080"], "127.0.0.1:8080");
        assert_eq!(o.check(&own), Ok(()));
        let foreign = request(&["https://evil.example"], "127.0.0.1:8080");
        assert_eq!(o.check(&foreign), Err(OriginRefusal::Foreign));
        let other_port = request(&["http://127.0.0.1:9090"], "127.0.0.1:8080");
        assert_eq!(o.check(&other_port), Err(OriginRefusal::Foreign));
        let null = request(&["null"], "127.0.0.1:8080");
        assert_eq!(o.check(&null), Err(OriginRefusal::Foreign));
        let two = request(&["http://127.0.0.1:8080", "http://127.0.0.1:8080"], "x");
        assert_eq!(o.check(&two), Err(OriginRefusal::Malformed));
    }

    #[test]
    fn listed_origins_and_star() {
        let o = Origins::new(&["https://App.example".to_string()]);
        let r = request(&["https://app.example"], "hub:8080");
        assert_eq!(o.check(&r), Ok(()));
        let r = request(&["https://app.example.evil"], "hub:8080");
        assert_eq!(o.check(&r), Err(OriginRefusal::Foreign));
        let any = Origins::new(&["*".to_string()]);
        let r = request(&["https://anything.example"], "hub:8080");
        assert_eq!(any.check(&r), Ok(()));
    }

    #[test]
    fn entries_are_validated() {
        for good in ["*", "null", "https://app.example", "http://127.0.0.1:8080"] {
            validate(good).unwrap();
        }
        for bad in [
            "",
            "app.example",
            "https://app.example/",
            "https://",
            "https://a b",
        ] {
            let e = validate(bad).unwrap_err();
            assert!(e.contains("allowed_origins"), "{e}");
        }
    }
}
