//! Malformed frames: counted by reason, never answered, never fatal.

use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;

use crate::support::*;

#[tokio::test]
async fn malformed_frames_are_counted_by_reason_and_the_sender_stays() {
    let hub = hub().await;
    let mut c = clients(&hub, 2).await;
    let (mut other, mut sender) = (c.pop().unwrap(), c.pop().unwrap());

    let texts = [
        "not json",                                                              // invalid_json
        r#"{"id":"e","event_type":"#, // invalid_json (cut short)
        "[1,2]",                      // not_an_object
        r#"{"event_type":"a.b"}"#,    // missing_field
        r#"{"type":"nope","event_types":[]}"#, // missing_field: not a control frame either
        r#"{"id":"","event_type":"a.b"}"#, // empty_field
        r#"{"id":7,"event_type":"a.b"}"#, // wrong_type
        r#"{"id":"e","event_type":"a.b","metadata":{"timestamp":"yesterday"}}"#, // wrong_type
    ];
    for text in texts {
        send(&mut sender, text).await;
    }
    sender
        .send(Message::binary(vec![0xff, 0xfe, 0x00]))
        .await
        .unwrap(); // invalid_utf8
    sender
        .send(Message::binary(b"garbage".to_vec()))
        .await
        .unwrap(); // invalid_json
    // A well-formed event but for invalid UTF-8 inside its payload.
    sender
        .send(Message::binary(
            b"{\"id\":\"e\",\"event_type\":\"a.b\",\"payload\":\"\xff\"}".to_vec(),
        ))
        .await
        .unwrap(); // invalid_utf8

    let stats = stats_until(&hub, "all counted", |s| s.malformed.total() == 11).await;
    let m = stats.malformed;
    assert_eq!(
        (
            m.invalid_json,
            m.not_an_object,
            m.missing_field,
            m.empty_field,
            m.wrong_type,
            m.invalid_utf8
        ),
        (3, 1, 2, 1, 2, 2),
    );
    assert_eq!((stats.events_in, stats.frames_in), (0, 11));
    assert_eq!(stats.clients, 2);

    // The sender can still publish, and nothing malformed was relayed: the
    // valid event is the first frame the other client sees.
    let valid = event("after.garbage", 1);
    send(&mut sender, &valid).await;
    assert_eq!(next_text(&mut other).await, valid);

    // Nothing was sent back either: this sentinel is the sender's first
    // frame.
    let sentinel = event("sentinel", 2);
    send(&mut other, &sentinel).await;
    assert_eq!(next_text(&mut sender).await, sentinel);
}
