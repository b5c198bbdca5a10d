/// A [`DlqConfig`](crate::DlqConfig) that cannot drive a dead-letter queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// `capacity` is 0, so no entry could ever be stored.
    #[error("capacity is 0: set it to at least 1, the most entries the dead-letter queue may hold")]
    ZeroCapacity,
    /// `max_attempts` is 0, so a consumer would park entries without trying
    /// them.
    #[error(
        "max_attempts is 0: set it to at least 1, the handler calls a consumer makes for an entry before parking it"
    )]
    ZeroMaxAttempts,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_say_what_to_do() {
        assert!(ConfigError::ZeroCapacity.to_string().contains("at least 1"));
        assert!(
            ConfigError::ZeroMaxAttempts
                .to_string()
                .contains("at least 1")
        );
    }

    #[test]
    fn error_is_send_sync_static() {
        fn assert_error<E: std::error::Error + Send + Sync + 'static>() {}
        assert_error::<ConfigError>();
    }
}
