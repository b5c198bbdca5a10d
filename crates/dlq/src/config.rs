use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::ConfigError;

/// How many entries a [`DeadLetterQueue`](crate::DeadLetterQueue) holds and
/// how its consumers retry them.
///
/// Every field has a default, so a partial config deserializes
/// (`#[serde(default)]`). `retry_delay` uses serde's standard `Duration`
/// form, `{ "secs": 0, "nanos": 100000000 }`. Check a config with
/// [`validate`](Self::validate); the queue's constructors call it for you.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DlqConfig {
    /// The most entries the queue holds: pending, parked and in the hands of
    /// a consumer together. When it is full, a push evicts the oldest entry.
    /// Must be at least 1.
    ///
    /// Default: 10 000, enough to ride out an outage of a few seconds at
    /// thousands of events per second while bounding memory.
    pub capacity: usize,
    /// How many times a consumer calls its handler for one entry before it
    /// gives up and parks the entry. Must be at least 1.
    ///
    /// Default: 3. One retry is often unlucky; three spread over
    /// `retry_delay`s ride out a blip without looping forever on an entry
    /// that can never succeed.
    pub max_attempts: u32,
    /// How long a consumer waits after a failed handler call before calling
    /// it again for the same entry. Zero retries at once.
    ///
    /// Default: 100 ms, long enough for a transient fault to clear, short
    /// enough not to hold up the entries behind it.
    pub retry_delay: Duration,
}

impl Default for DlqConfig {
    fn default() -> Self {
        Self {
            capacity: 10_000,
            max_attempts: 3,
            retry_delay: Duration::from_millis(100),
        }
    }
}

impl DlqConfig {
    /// Checks that the config can drive a dead-letter queue.
    ///
    /// # Errors
    ///
    /// [`ConfigError::ZeroCapacity`] or [`ConfigError::ZeroMaxAttempts`]
    /// when that field is 0. Any `retry_delay` is valid.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.capacity == 0 {
            return Err(ConfigError::ZeroCapacity);
        }
        if self.max_attempts == 0 {
            return Err(ConfigError::ZeroMaxAttempts);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_matches_the_spec_and_is_valid() {
        let config = DlqConfig::default();
        assert_eq!(config.capacity, 10_000);
        assert_eq!(config.max_attempts, 3);
        assert_eq!(config.retry_delay, Duration::from_millis(100));
        assert_eq!(config.validate(), Ok(()));
    }

    #[test]
    fn zero_values_are_rejected() {
        let capacity = DlqConfig {
            capacity: 0,
            ..DlqConfig::default()
        };
        assert_eq!(capacity.validate(), Err(ConfigError::ZeroCapacity));
        let attempts = DlqConfig {
            max_attempts: 0,
            ..DlqConfig::default()
        };
        assert_eq!(attempts.validate(), Err(ConfigError::ZeroMaxAttempts));
        let no_delay = DlqConfig {
            retry_delay: Duration::ZERO,
            ..DlqConfig::default()
        };
        assert_eq!(no_delay.validate(), Ok(()));
    }

    #[test]
    fn partial_config_deserializes_with_defaults() {
        let config: DlqConfig = serde_json::from_str(r#"{ "capacity": 5 }"#).unwrap();
        assert_eq!(
            config,
            DlqConfig {
                capacity: 5,
                ..DlqConfig::default()
            }
        );
        let empty: DlqConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(empty, DlqConfig::default());
    }
}
