use std::fmt;

/// A [`BackpressureConfig`](crate::BackpressureConfig) that cannot drive a
/// queue.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// `max_queue_size` is 0, so no item could ever be queued.
    #[error("max_queue_size is 0: set it to at least 1, the most items the queue may hold")]
    ZeroQueueSize,
    /// `warning_threshold` is not a finite number in `(0.0, 1.0]`.
    #[error(
        "warning_threshold is {0}: set it to a fill ratio in (0.0, 1.0], such as 0.8 to warn at 80% full"
    )]
    InvalidWarningThreshold(f64),
}

/// A push that did not enqueue its item; the item is handed back.
///
/// Get the item back with [`into_inner`](Self::into_inner), for example to
/// dead-letter it. `Debug` does not print the item, so `T` need not be
/// `Debug` and items never leak into logs.
#[derive(PartialEq, Eq)]
#[non_exhaustive]
pub enum PushError<T> {
    /// The queue is full and the strategy is
    /// [`DropNewest`](crate::BackpressureStrategy::DropNewest), or the
    /// strategy is [`Block`](crate::BackpressureStrategy::Block) and the push
    /// could not wait ([`try_push`](crate::BackpressureQueue::try_push)).
    Full(T),
    /// The queue was [closed](crate::BackpressureQueue::close) and accepts no
    /// more items.
    Closed(T),
}

impl<T> PushError<T> {
    /// The item that was not enqueued.
    pub fn into_inner(self) -> T {
        match self {
            Self::Full(item) | Self::Closed(item) => item,
        }
    }

    /// Whether the push failed because the queue was full.
    pub fn is_full(&self) -> bool {
        matches!(self, Self::Full(_))
    }

    /// Whether the push failed because the queue was closed.
    pub fn is_closed(&self) -> bool {
        matches!(self, Self::Closed(_))
    }
}

impl<T> fmt::Debug for PushError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Full(_) => f.write_str("Full(..)"),
            Self::Closed(_) => f.write_str("Closed(..)"),
        }
    }
}

impl<T> fmt::Display for PushError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Full(_) => {
                "queue is full: the item was not enqueued; retry later, drop it, or dead-letter it"
            }
            Self::Closed(_) => {
                "queue is closed: the item was not enqueued; no more items are accepted after close"
            }
        })
    }
}

impl<T> std::error::Error for PushError<T> {}

#[cfg(test)]
mod tests {
    use super::*;

    /// Not `Debug`: `PushError` must not need it.
    struct Opaque(u8);

    #[test]
    fn push_error_hands_the_item_back() {
        let full = PushError::Full(Opaque(1));
        assert!(full.is_full() && !full.is_closed());
        assert_eq!(full.into_inner().0, 1);
        let closed = PushError::Closed(Opaque(2));
        assert!(closed.is_closed() && !closed.is_full());
        assert_eq!(closed.into_inner().0, 2);
    }

    #[test]
    fn push_error_formats_without_the_item() {
        assert_eq!(format!("{:?}", PushError::Full(Opaque(1))), "Full(..)");
        assert_eq!(format!("{:?}", PushError::Closed(Opaque(1))), "Closed(..)");
        assert!(
            PushError::Full(Opaque(1))
                .to_string()
                .starts_with("queue is full")
        );
        assert!(
            PushError::Closed(Opaque(1))
                .to_string()
                .starts_with("queue is closed")
        );
    }

    #[test]
    fn config_error_says_what_to_do() {
        assert!(
            ConfigError::ZeroQueueSize
                .to_string()
                .contains("at least 1")
        );
        let message = ConfigError::InvalidWarningThreshold(1.5).to_string();
        assert!(
            message.contains("1.5") && message.contains("(0.0, 1.0]"),
            "{message}"
        );
    }

    #[test]
    fn errors_are_send_sync_static() {
        fn assert_error<E: std::error::Error + Send + Sync + 'static>() {}
        assert_error::<ConfigError>();
        assert_error::<PushError<String>>();
    }
}
