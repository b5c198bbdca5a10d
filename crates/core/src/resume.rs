//! Resume: a subscriber's place in a hub's history, and the hub's answer
//! when the subscriber presents it.
//!
//! The wire names live here once, so the hub and the transport cannot
//! drift apart. The protocol, in short (the README has it in full):
//!
//! - the client sends `Watchtower-Resume: <position>` (or `new` when it has
//!   none yet) on the upgrade request, or `?resume=<position>` in the URL
//!   when it cannot set headers (a browser);
//! - a hub keeping history answers on the upgrade response with
//!   `Watchtower-Position: <position>` (where its history stands now) and
//!   `Watchtower-Recovered: true; replayed=N` or
//!   `Watchtower-Recovered: false; reason=<reason>`, and, to a client that
//!   asked, with the same as a first control frame
//!   [`ControlFrame::Resumed`](crate::ControlFrame::Resumed);
//! - after the events it writes, the hub tells a client that asked how far
//!   it has got with [`ControlFrame::Position`](crate::ControlFrame::Position).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Request header carrying the client's [`Position`] (or `new`).
pub const RESUME_HEADER: &str = "watchtower-resume";
/// URL query parameter carrying the same, for clients that cannot set
/// request headers.
pub const RESUME_QUERY: &str = "resume";
/// Value of [`RESUME_HEADER`] for a client that has no position yet but
/// wants one (and the position frames).
pub const RESUME_NEW: &str = "new";
/// Response header: the hub's position when the client joined.
pub const POSITION_HEADER: &str = "watchtower-position";
/// Response header: whether the client's position was recovered.
pub const RECOVERED_HEADER: &str = "watchtower-recovered";

/// A place in one hub's history: the history's `epoch` (random, new each
/// time the hub starts) and the sequence number of the last event passed,
/// plus, when events past `seq` were received before the next position
/// mark, the key of the last of them (see [`frame_key`]).
///
/// Its text form, `<epoch>:<seq>` or `<epoch>:<seq>:<key>` (epoch and key
/// in hex), is what to store and give back: treat it as opaque.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Position {
    epoch: u64,
    seq: u64,
    last: Option<u64>,
}

impl Position {
    /// The position `seq` of history `epoch`.
    pub fn new(epoch: u64, seq: u64) -> Position {
        Position {
            epoch,
            seq,
            last: None,
        }
    }

    /// This position, past the event frame with key `last` (received after
    /// `seq`).
    pub fn after(self, last: Option<u64>) -> Position {
        Position { last, ..self }
    }

    /// The history this position belongs to.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The sequence number of the last event passed (0: none yet).
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The key of the last event received past [`seq`](Self::seq), if any.
    pub fn last(&self) -> Option<u64> {
        self.last
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}:{}", self.epoch, self.seq)?;
        if let Some(last) = self.last {
            write!(f, ":{last:016x}")?;
        }
        Ok(())
    }
}

/// A text that is not a [`Position`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a watchtower position: expected <epoch hex>:<seq>[:<key hex>], as printed before")]
pub struct PositionParseError;

impl FromStr for Position {
    type Err = PositionParseError;

    fn from_str(text: &str) -> Result<Position, PositionParseError> {
        let hex = |s: &str| {
            if s.is_empty() || s.len() > 16 {
                return Err(PositionParseError);
            }
            u64::from_str_radix(s, 16).map_err(|_| PositionParseError)
        };
        let mut parts = text.trim().split(':');
        let epoch = hex(parts.next().ok_or(PositionParseError)?)?;
        let seq = parts.next().ok_or(PositionParseError)?;
        if seq.is_empty() || !seq.bytes().all(|b| b.is_ascii_digit()) {
            return Err(PositionParseError);
        }
        let seq = seq.parse().map_err(|_| PositionParseError)?;
        let last = parts.next().map(hex).transpose()?;
        if parts.next().is_some() {
            return Err(PositionParseError);
        }
        Ok(Position { epoch, seq, last })
    }
}

/// Why a position was not recovered. Nothing was replayed: the client
/// carries on from the hub's current position and may have missed events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum NotRecoveredReason {
    /// The position is from another history: the hub restarted (or it is
    /// another hub).
    Epoch,
    /// The history no longer holds every event after the position (too
    /// old, or pushed out by newer events).
    Expired,
    /// More events after the position than the hub would replay.
    ///
    /// No longer sent by `watchtower-hub`: a client whose position the
    /// history still holds gets every event after it, however many, and a
    /// slow one lags inside the history until it forgets an event not yet
    /// sent (then `Expired`). Kept so that a client still understands an
    /// older hub, or another server, that sends `too_many`.
    TooMany,
}

impl NotRecoveredReason {
    /// The wire name: `epoch`, `expired` or `too_many`.
    pub fn as_str(&self) -> &'static str {
        match self {
            NotRecoveredReason::Epoch => "epoch",
            NotRecoveredReason::Expired => "expired",
            NotRecoveredReason::TooMany => "too_many",
        }
    }

    /// Parses a wire name.
    pub fn from_wire(text: &str) -> Option<NotRecoveredReason> {
        match text {
            "epoch" => Some(NotRecoveredReason::Epoch),
            "expired" => Some(NotRecoveredReason::Expired),
            "too_many" => Some(NotRecoveredReason::TooMany),
            _ => None,
        }
    }
}

impl fmt::Display for NotRecoveredReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The hub's answer to a presented position, as the
/// [`RECOVERED_HEADER`] value says it: `Ok(replayed)` or the reason.
pub fn recovered_header(outcome: Result<u64, NotRecoveredReason>) -> String {
    match outcome {
        Ok(replayed) => format!("true; replayed={replayed}"),
        Err(reason) => format!("false; reason={reason}"),
    }
}

/// Parses a [`RECOVERED_HEADER`] value; `None` if it is not one.
pub fn parse_recovered_header(value: &str) -> Option<Result<u64, NotRecoveredReason>> {
    let (flag, rest) = value.split_once(';')?;
    let rest = rest.trim();
    match flag.trim() {
        "true" => rest
            .strip_prefix("replayed=")
            .and_then(|n| n.parse().ok())
            .map(Ok),
        "false" => rest
            .strip_prefix("reason=")
            .and_then(NotRecoveredReason::from_wire)
            .map(Err),
        _ => None,
    }
}

/// The key of an event frame in a [`Position`]: 64-bit FNV-1a over its
/// bytes. Stable across versions and machines, as a stored position needs.
pub fn frame_key(frame: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in frame {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn position_text_round_trips() {
        let p = Position::new(0xabc, 42);
        assert_eq!(p.to_string(), "0000000000000abc:42");
        assert_eq!("0000000000000abc:42".parse(), Ok(p));
        let q = p.after(Some(7));
        assert_eq!(q.to_string(), "0000000000000abc:42:0000000000000007");
        assert_eq!(q.to_string().parse(), Ok(q));
        for bad in [
            "",
            "x",
            "abc",
            "abc:",
            ":1",
            "abc:-1",
            "abc:1:",
            "abc:1:2:3",
            "zz:1",
            "abc:+1",
            "11111111111111111:1",
        ] {
            assert_eq!(bad.parse::<Position>(), Err(PositionParseError), "{bad:?}");
        }
    }

    #[test]
    fn recovered_header_round_trips() {
        for outcome in [
            Ok(0),
            Ok(17),
            Err(NotRecoveredReason::Epoch),
            Err(NotRecoveredReason::Expired),
            Err(NotRecoveredReason::TooMany),
        ] {
            assert_eq!(
                parse_recovered_header(&recovered_header(outcome)),
                Some(outcome)
            );
        }
        assert_eq!(parse_recovered_header("maybe"), None);
        assert_eq!(parse_recovered_header("false; reason=lost"), None);
    }

    #[test]
    fn frame_key_is_fnv1a() {
        assert_eq!(frame_key(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(frame_key(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
