use serde::{Deserialize, Serialize};

use crate::ConfigError;

/// What a full [`BackpressureQueue`](crate::BackpressureQueue) does with a
/// new item.
///
/// Serializes as `"drop_oldest"`, `"drop_newest"` or `"block"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackpressureStrategy {
    /// Evict the oldest queued item to make room, and hand it back in
    /// [`Pushed::Evicted`](crate::Pushed::Evicted) so the caller can
    /// dead-letter it.
    ///
    /// The default: for live events the newest data is usually the most
    /// valuable, and a producer is never slowed down by a slow consumer.
    #[default]
    DropOldest,
    /// Reject the new item with [`PushError::Full`](crate::PushError::Full),
    /// which hands it back; what is already queued is kept.
    DropNewest,
    /// Make [`push`](crate::BackpressureQueue::push) wait until there is room:
    /// nothing is dropped, and a slow consumer slows its producers down.
    /// [`try_push`](crate::BackpressureQueue::try_push), which never waits,
    /// behaves like [`DropNewest`](Self::DropNewest).
    Block,
}

/// How big a [`BackpressureQueue`](crate::BackpressureQueue) may grow and what
/// happens when it is full.
///
/// Every field has a default, so a partial config deserializes
/// (`#[serde(default)]`). Check a config with [`validate`](Self::validate);
/// [`BackpressureQueue::new`](crate::BackpressureQueue::new) calls it for you.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BackpressureConfig {
    /// The most items the queue holds at once. Must be at least 1.
    ///
    /// Default: 1000, enough to absorb a burst or a short stall of the
    /// consumer while bounding memory.
    pub max_queue_size: usize,
    /// What a push does when the queue is full.
    ///
    /// Default: [`BackpressureStrategy::DropOldest`].
    pub strategy: BackpressureStrategy,
    /// The fill ratio (`len / max_queue_size`) at which a warning is logged.
    /// Must be finite and in `(0.0, 1.0]`; `1.0` warns only when full.
    ///
    /// Default: 0.8, which leaves time to react before items are dropped or
    /// producers block.
    pub warning_threshold: f64,
}

impl Default for BackpressureConfig {
    fn default() -> Self {
        Self {
            max_queue_size: 1000,
            strategy: BackpressureStrategy::default(),
            warning_threshold: 0.8,
        }
    }
}

impl BackpressureConfig {
    /// Checks that the config can drive a queue.
    ///
    /// # Errors
    ///
    /// [`ConfigError::ZeroQueueSize`] when `max_queue_size` is 0, and
    /// [`ConfigError::InvalidWarningThreshold`] when `warning_threshold` is
    /// not a finite number in `(0.0, 1.0]`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_queue_size == 0 {
            return Err(ConfigError::ZeroQueueSize);
        }
        let threshold = self.warning_threshold;
        if !(threshold.is_finite() && threshold > 0.0 && threshold <= 1.0) {
            return Err(ConfigError::InvalidWarningThreshold(threshold));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_matches_the_spec_and_is_valid() {
        let config = BackpressureConfig::default();
        assert_eq!(config.max_queue_size, 1000);
        assert_eq!(config.strategy, BackpressureStrategy::DropOldest);
        assert_eq!(config.warning_threshold, 0.8);
        assert_eq!(config.validate(), Ok(()));
    }

    #[test]
    fn zero_queue_size_is_rejected() {
        let config = BackpressureConfig {
            max_queue_size: 0,
            ..BackpressureConfig::default()
        };
        assert_eq!(config.validate(), Err(ConfigError::ZeroQueueSize));
    }

    #[test]
    fn warning_threshold_must_be_finite_and_in_range() {
        for bad in [
            0.0,
            -0.5,
            1.0001,
            2.0,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ] {
            let config = BackpressureConfig {
                warning_threshold: bad,
                ..BackpressureConfig::default()
            };
            assert!(
                matches!(
                    config.validate(),
                    Err(ConfigError::InvalidWarningThreshold(_))
                ),
                "{bad} was accepted"
            );
        }
        for good in [f64::MIN_POSITIVE, 0.5, 1.0] {
            let config = BackpressureConfig {
                warning_threshold: good,
                ..BackpressureConfig::default()
            };
            assert_eq!(config.validate(), Ok(()), "{good} was rejected");
        }
    }

    #[test]
    fn partial_config_deserializes_with_defaults() {
        let config: BackpressureConfig =
            serde_json::from_str(r#"{ "strategy": "block" }"#).unwrap();
        assert_eq!(
            config,
            BackpressureConfig {
                strategy: BackpressureStrategy::Block,
                ..BackpressureConfig::default()
            }
        );
        let empty: BackpressureConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(empty, BackpressureConfig::default());
    }

    #[test]
    fn strategy_serializes_in_snake_case() {
        let json = serde_json::to_string(&BackpressureStrategy::DropOldest).unwrap();
        assert_eq!(json, r#""drop_oldest""#);
        let back: BackpressureStrategy = serde_json::from_str(r#""drop_newest""#).unwrap();
        assert_eq!(back, BackpressureStrategy::DropNewest);
    }
}
