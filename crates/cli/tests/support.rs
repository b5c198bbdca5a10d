//! Helpers shared by the CLI tests.

use std::process::Output;
use std::time::Duration;

use tokio::time::{Instant, sleep};

/// The upper bound for waiting on anything. Generous: it only decides how
/// long a broken test takes to fail.
pub(crate) const LIMIT: Duration = Duration::from_secs(20);

/// The `watchtower` binary, killed if it runs longer than [`LIMIT`].
pub(crate) fn watchtower(args: &[&str]) -> assert_cmd::Command {
    let mut command = assert_cmd::Command::new(env!("CARGO_BIN_EXE_watchtower"));
    command.args(args).timeout(LIMIT);
    command
}

/// Runs `command` to completion off the async runtime, so the hub in the
/// test keeps serving meanwhile.
pub(crate) async fn output(mut command: assert_cmd::Command) -> Output {
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

/// Polls `condition` until it holds, failing the test after [`LIMIT`].
pub(crate) async fn until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + LIMIT;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        sleep(Duration::from_millis(10)).await;
    }
}

/// The process's stderr, which must be exactly one line.
pub(crate) fn one_line_of_stderr(output: &Output) -> String {
    let text = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(
        text.lines().count(),
        1,
        "expected one line on stderr, got:\n{text}"
    );
    text.trim_end().to_string()
}

/// The exit code; a signal death fails the test.
pub(crate) fn code(output: &Output) -> i32 {
    output.status.code().expect("exited normally")
}
