//! Failures: one clear line on stderr and the right exit code.

use crate::support::*;

#[tokio::test]
async fn a_url_that_is_not_websocket_is_a_usage_error() {
    for url in ["http://127.0.0.1:8080/events", "localhost:8080"] {
        for command in ["publish", "subscribe"] {
            let out = output(watchtower(&[command, "--url", url, "--type", "t"])).await;
            assert_eq!(code(&out), 2, "{command} {url}");
            let line = one_line_of_stderr(&out);
            assert!(line.starts_with("error: invalid configuration"), "{line}");
            assert!(line.contains("ws://"), "{line}");
        }
    }
}

#[tokio::test]
async fn publishing_where_nothing_listens_is_a_runtime_error() {
    let port = watchtower_test_support::unused_addr().port();
    let url = format!("ws://127.0.0.1:{port}/events");
    let out = output(watchtower(&["publish", "--url", &url, "--type", "t"])).await;
    assert_eq!(code(&out), 1);
    let line = one_line_of_stderr(&out);
    assert!(line.starts_with("error: connection failed"), "{line}");
    assert!(line.contains(&url), "{line}");
}

#[tokio::test]
async fn bad_json_names_the_argument_or_the_line() {
    // Checked before connecting: no hub is needed.
    let out = output(watchtower(&[
        "publish",
        "--type",
        "t",
        "--payload",
        "{user_id: 456}",
    ]))
    .await;
    assert_eq!(code(&out), 2);
    let line = one_line_of_stderr(&out);
    assert!(
        line.starts_with("error: --payload is not valid JSON"),
        "{line}"
    );

    let hub = watchtower_hub::Hub::bind("127.0.0.1:0").await.unwrap();
    let mut publish = watchtower(&["publish", "--url", &hub.url(), "--stdin", "--type", "t"]);
    publish.write_stdin("{\"ok\":1}\nnot json\n{\"ok\":2}\n");
    let out = output(publish).await;
    assert_eq!(code(&out), 2);
    let line = one_line_of_stderr(&out);
    assert!(
        line.starts_with("error: stdin line 2 is not valid JSON"),
        "{line}"
    );
}

#[tokio::test]
async fn missing_arguments_are_usage_errors() {
    let out = output(watchtower(&["publish", "--payload", "1"])).await;
    assert_eq!(code(&out), 2);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--type"));

    let out = output(watchtower(&["subscribe", "--count", "0"])).await;
    assert_eq!(code(&out), 2);
}
