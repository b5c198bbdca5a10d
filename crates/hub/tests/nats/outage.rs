//! NATS going away and coming back.
