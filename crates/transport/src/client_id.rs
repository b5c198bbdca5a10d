//! The transport's identity: one UUID v7 per transport, presented on every
//! upgrade request, so a hub can tell its connections apart from other
//! clients' across reconnects (the hub skips a client's own events when it
//! replays history to it).

use tokio_tungstenite::tungstenite::http::HeaderValue;

/// The request header that carries a transport's identity on every
/// WebSocket upgrade: `Watchtower-Client-Id: <uuid>`, a UUID v7 (RFC 9562)
/// in its hyphenated lowercase form, made when the transport is built and
/// the same on every connection it makes. See
/// [`WebSocketTransport::client_id`](crate::WebSocketTransport::client_id).
pub const CLIENT_ID_HEADER: &str = "watchtower-client-id";

/// A transport's identity: its text, kept inline (no allocation for a
/// value every idle connection holds).
#[derive(Debug)]
pub(crate) struct ClientId {
    text: [u8; uuid::fmt::Hyphenated::LENGTH],
}

impl ClientId {
    pub(crate) fn new() -> ClientId {
        let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
        uuid::Uuid::now_v7().hyphenated().encode_lower(&mut text);
        ClientId { text }
    }

    /// The header value, made for each upgrade request.
    pub(crate) fn header(&self) -> HeaderValue {
        // A hyphenated UUID is always a valid header value.
        HeaderValue::from_bytes(&self.text).unwrap_or(HeaderValue::from_static(""))
    }

    pub(crate) fn as_str(&self) -> &str {
        std::str::from_utf8(&self.text).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_id_is_a_hyphenated_uuid_v7_and_new_each_time() {
        let a = ClientId::new();
        let b = ClientId::new();
        assert_ne!(a.as_str(), b.as_str());
        let parsed = uuid::Uuid::parse_str(a.as_str()).unwrap();
        assert_eq!(parsed.get_version_num(), 7);
        assert_eq!(a.as_str(), parsed.hyphenated().to_string());
    }
}
