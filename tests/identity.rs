//! A transport's identity: one UUID v7, made when it is built and sent on
//! every upgrade as `Watchtower-Client-Id`, the same across reconnects.

use tokio_tungstenite::tungstenite::Message;
use watchtower_test_support::{RawServer, wait_until};
use watchtower_websocket::CLIENT_ID_HEADER;

use crate::support::{LIMIT, fast};

/// The client ids a raw server saw, one per accepted connection.
fn seen(server: &RawServer) -> Vec<Option<String>> {
    server
        .request_headers()
        .into_iter()
        .map(|headers| {
            headers
                .into_iter()
                .find(|(name, _)| name.eq_ignore_ascii_case("Watchtower-Client-Id"))
                .map(|(_, value)| value)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_id_is_the_same_on_every_connection_of_a_transport() {
    let server = RawServer::start().await;
    let transport = fast(&server.url(), 20).connect().await.unwrap();
    let id = transport.client_id().to_string();
    // A UUID v7, hyphenated: 8-4-4-4-12 hex digits, version 7.
    assert_eq!(id.len(), 36, "{id}");
    assert_eq!(
        id.split('-').map(str::len).collect::<Vec<_>>(),
        [8, 4, 4, 4, 12]
    );
    assert!(
        id.chars().all(|c| c == '-' || c.is_ascii_hexdigit()),
        "{id}"
    );
    assert_eq!(&id[14..15], "7", "{id}");
    assert_eq!(CLIENT_ID_HEADER, "watchtower-client-id");

    // The server closes: the transport reconnects, with the same id.
    server.send(Message::Close(None));
    wait_until("reconnected", LIMIT, || {
        server.accepted() == 2 && transport.state().is_connected()
    })
    .await;
    assert_eq!(seen(&server), [Some(id.clone()), Some(id.clone())]);

    // Another transport is another client.
    let other = fast(&server.url(), 20).connect().await.unwrap();
    assert_ne!(other.client_id(), id);
    wait_until("the other connected", LIMIT, || server.accepted() == 3).await;
    assert_eq!(seen(&server)[2].as_deref(), Some(other.client_id()));
    transport.shutdown().await.unwrap();
    other.shutdown().await.unwrap();
}
