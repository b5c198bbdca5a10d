//! Resume positions are stream sequences, valid on every hub.
