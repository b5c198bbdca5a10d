//! The `Origin` check at the WebSocket upgrade: a page from a foreign site
//! must not be able to use a browser as a client of the hub.
//!
//! Browsers send `Origin` with every WebSocket upgrade and do not let a
//! page change it; native clients (the transport, the CLI, curl) send
//! none. So a request without `Origin` is admitted, one whose `Origin` is
//! on the allowed list is admitted, and one whose `Origin` is the hub
//! itself is admitted: the same host and port as its `Host`, and that
//! `Host` one of the hub's own names — an IP address or `localhost` with
//! the hub's port (a name in DNS is the hub's only if it is on the
//! allowed list: a rebound name is someone else's page that resolves to
//! the hub). Any other is refused with 403.

use std::net::IpAddr;

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
    /// The port the hub listens on: its own names are the IP addresses
    /// and `localhost` with this port.
    port: u16,
}

impl Origins {
    pub(crate) fn new(list: &[String], port: u16) -> Origins {
        Origins {
            port,
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
        // are the ones the browser dialled), under one of its own names.
        let host = request.headers().get(HOST).and_then(|h| h.to_str().ok());
        let authority = origin.split_once("://").map(|(_, rest)| rest);
        match (authority, host) {
            (Some(authority), Some(host))
                if authority.eq_ignore_ascii_case(host) && self.is_own(host) =>
            {
                Ok(())
            }
            _ => Err(OriginRefusal::Foreign),
        }
    }

    /// Whether `host` (a `Host` header) names this hub whatever DNS says:
    /// an IP address, or `localhost`, with the hub's port.
    fn is_own(&self, host: &str) -> bool {
        let (name, port) = match host.rsplit_once(':') {
            // `[v6]` without a port, or a bare v6 address (not a valid
            // `Host`): no port.
            _ if host.ends_with(']') => (host, None),
            Some((name, port)) if !name.contains(':') || name.starts_with('[') => {
                (name, port.parse::<u16>().ok())
            }
            _ => (host, None),
        };
        // Without a port, the scheme's: the hub would have to listen on it.
        let port_ok = port.map_or(self.port == 80 || self.port == 443, |p| p == self.port);
        let bare = name
            .strip_prefix('[')
            .and_then(|n| n.strip_suffix(']'))
            .unwrap_or(name);
        port_ok && (name.eq_ignore_ascii_case("localhost") || bare.parse::<IpAddr>().is_ok())
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
        let o = Origins::new(&[], 8080);
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
        let o = Origins::new(&["https://App.example".to_string()], 8080);
        let r = request(&["https://app.example"], "hub:8080");
        assert_eq!(o.check(&r), Ok(()));
        let r = request(&["https://app.example.evil"], "hub:8080");
        assert_eq!(o.check(&r), Err(OriginRefusal::Foreign));
        let any = Origins::new(&["*".to_string()], 8080);
        let r = request(&["https://anything.example"], "hub:8080");
        assert_eq!(any.check(&r), Ok(()));
    }

    #[test]
    fn a_rebound_name_is_not_the_hubs_own_origin() {
        let o = Origins::new(&[], 8080);
        // A page on a name its owner made resolve to the hub: the Origin
        // and the Host agree, but the name is not the hub's.
        let rebound = request(&["http://rebound.example:8080"], "rebound.example:8080");
        assert_eq!(o.check(&rebound), Err(OriginRefusal::Foreign));
        for own in [
            "localhost:8080",
            "LocalHost:8080",
            "[::1]:8080",
            "10.1.2.3:8080",
        ] {
            let r = request(&[&format!("http://{own}")], own);
            assert_eq!(o.check(&r), Ok(()), "{own}");
        }
        // The hub's names on another port are another origin.
        let r = request(&["http://localhost:9090"], "localhost:9090");
        assert_eq!(o.check(&r), Err(OriginRefusal::Foreign));
        // A name in DNS is the hub's when listed.
        let listed = Origins::new(&["http://hub.example:8080".to_string()], 8080);
        let r = request(&["http://hub.example:8080"], "hub.example:8080");
        assert_eq!(listed.check(&r), Ok(()));
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
