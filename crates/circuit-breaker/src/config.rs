use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::ConfigError;

/// When a [`CircuitBreaker`](crate::CircuitBreaker) opens, and how it recovers.
///
/// Every field has a default, so a partial config deserializes
/// (`#[serde(default)]`). `timeout` uses serde's standard `Duration` form,
/// `{ "secs": 60, "nanos": 0 }`.
///
/// Check a config with [`validate`](Self::validate); the breaker's
/// constructors call it for you.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CircuitBreakerConfig {
    /// Consecutive failures, while Closed, that open the circuit.
    ///
    /// Default: 5. A single failure is often noise; five in a row with no
    /// success in between means the other side is down. Must be at least 1.
    pub failure_threshold: u32,
    /// How long the circuit stays Open before one half-open trial is allowed.
    ///
    /// Default: 60 s, long enough for a restarting server to come back
    /// without being hammered meanwhile. Zero is allowed and means a trial
    /// is allowed at once.
    pub timeout: Duration,
    /// Consecutive successful half-open trials that close the circuit.
    ///
    /// Default: 2. One lucky success is weak evidence of recovery; two in a
    /// row is cheap and much stronger. Must be at least 1.
    pub success_threshold: u32,
}

impl Default for CircuitBreakerConfig {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            timeout: Duration::from_secs(60),
            success_threshold: 2,
        }
    }
}

impl CircuitBreakerConfig {
    /// Checks that the config can drive a breaker.
    ///
    /// # Errors
    ///
    /// [`ConfigError::ZeroFailureThreshold`] or
    /// [`ConfigError::ZeroSuccessThreshold`] when a threshold is 0. Any
    /// `timeout` is valid.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.failure_threshold == 0 {
            return Err(ConfigError::ZeroFailureThreshold);
        }
        if self.success_threshold == 0 {
            return Err(ConfigError::ZeroSuccessThreshold);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_documented() {
        let config = CircuitBreakerConfig::default();
        assert_eq!(config.failure_threshold, 5);
        assert_eq!(config.timeout, Duration::from_secs(60));
        assert_eq!(config.success_threshold, 2);
        assert_eq!(config.validate(), Ok(()));
    }

    #[test]
    fn zero_thresholds_are_rejected() {
        let config = CircuitBreakerConfig {
            failure_threshold: 0,
            ..Default::default()
        };
        assert_eq!(config.validate(), Err(ConfigError::ZeroFailureThreshold));

        let config = CircuitBreakerConfig {
            success_threshold: 0,
            ..Default::default()
        };
        assert_eq!(config.validate(), Err(ConfigError::ZeroSuccessThreshold));
    }

    #[test]
    fn zero_timeout_is_valid() {
        let config = CircuitBreakerConfig {
            timeout: Duration::ZERO,
            ..Default::default()
        };
        assert_eq!(config.validate(), Ok(()));
    }

    #[test]
    fn partial_config_deserializes_with_defaults() {
        let config: CircuitBreakerConfig =
            serde_json::from_str(r#"{ "failure_threshold": 3 }"#).unwrap();
        assert_eq!(
            config,
            CircuitBreakerConfig {
                failure_threshold: 3,
                ..Default::default()
            }
        );

        let json = serde_json::to_string(&CircuitBreakerConfig::default()).unwrap();
        let back: CircuitBreakerConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, CircuitBreakerConfig::default());
    }
}
