use std::fmt;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// Why an item was dead-lettered.
///
/// `Display` gives a short lowercase phrase ("send failed"); serde uses
/// snake case (`"send_failed"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum DeadLetterReason {
    /// Evicted by a full queue or mailbox.
    Overflow,
    /// Sending it failed, or was given up on.
    SendFailed,
    /// A handler returned an error for it or panicked.
    HandlerFailed,
    /// Still pending when its owner shut down.
    Shutdown,
    /// Not acknowledged in time.
    AckTimeout,
    /// Dead-lettered explicitly by the application.
    Manual,
}

impl fmt::Display for DeadLetterReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Overflow => "overflow",
            Self::SendFailed => "send failed",
            Self::HandlerFailed => "handler failed",
            Self::Shutdown => "shutdown",
            Self::AckTimeout => "ack timeout",
            Self::Manual => "manual",
        })
    }
}

/// An item that failed, with why and when.
#[derive(Debug, Clone)]
pub struct DeadLetter<T> {
    /// The item itself.
    pub item: T,
    /// The text of the latest error.
    pub error: String,
    /// Why the item was dead-lettered in the first place.
    pub reason: DeadLetterReason,
    /// How many times delivering the item has failed: 1 for the failure that
    /// dead-lettered it, plus one per failed handler call of a consumer. An
    /// entry parked under the default config (3 handler calls) shows 4.
    pub attempts: u32,
    /// When the first failure happened.
    pub first_failed_at: SystemTime,
    /// When the latest failure happened.
    pub last_failed_at: SystemTime,
}

impl<T> DeadLetter<T> {
    /// A letter for an item that has just failed once: `attempts` is 1 and
    /// both timestamps are now.
    pub fn new(item: T, reason: DeadLetterReason, error: impl fmt::Display) -> Self {
        let now = SystemTime::now();
        Self {
            item,
            error: error.to_string(),
            reason,
            attempts: 1,
            first_failed_at: now,
            last_failed_at: now,
        }
    }

    /// Records one more failure: bumps `attempts` (saturating), and sets
    /// `error` and `last_failed_at`.
    pub(crate) fn failed_again(&mut self, error: String) {
        self.attempts = self.attempts.saturating_add(1);
        self.error = error;
        self.last_failed_at = SystemTime::now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_display_as_lowercase_phrases() {
        let shown: Vec<String> = [
            DeadLetterReason::Overflow,
            DeadLetterReason::SendFailed,
            DeadLetterReason::HandlerFailed,
            DeadLetterReason::Shutdown,
            DeadLetterReason::AckTimeout,
            DeadLetterReason::Manual,
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        assert_eq!(
            shown,
            [
                "overflow",
                "send failed",
                "handler failed",
                "shutdown",
                "ack timeout",
                "manual"
            ]
        );
    }

    #[test]
    fn reasons_serialize_in_snake_case() {
        let json = serde_json::to_string(&DeadLetterReason::AckTimeout).unwrap();
        assert_eq!(json, r#""ack_timeout""#);
        let back: DeadLetterReason = serde_json::from_str(r#""send_failed""#).unwrap();
        assert_eq!(back, DeadLetterReason::SendFailed);
    }

    #[test]
    fn a_new_letter_has_failed_once() {
        let mut letter = DeadLetter::new("frame", DeadLetterReason::SendFailed, "broken pipe");
        assert_eq!(letter.attempts, 1);
        assert_eq!(letter.error, "broken pipe");
        assert_eq!(letter.first_failed_at, letter.last_failed_at);
        letter.failed_again("timed out".to_owned());
        assert_eq!(letter.attempts, 2);
        assert_eq!(letter.error, "timed out");
        assert!(letter.last_failed_at >= letter.first_failed_at);
        letter.attempts = u32::MAX;
        letter.failed_again("again".to_owned());
        assert_eq!(letter.attempts, u32::MAX);
    }
}
