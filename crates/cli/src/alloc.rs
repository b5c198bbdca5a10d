//! The binary's global allocator.
//!
//! The library crates never set one: that choice belongs to the program
//! that links them. This binary (hub, CLI, bench) uses jemalloc by default
//! because publishing allocates each frame on the publisher's thread and
//! frees it on the writer's: glibc's malloc serialises those cross-thread
//! frees with the publisher's allocations on one arena lock, and its
//! per-thread cache keeps only seven free blocks per size class.
//!
//! Chosen by measurement (README, Performance, "Allocator"): the same code
//! on jemalloc published from eight tasks at 1.43–1.44× a raw feed+flush
//! loop against 1.04–1.15× on glibc, with idle memory per connection still
//! under 11 KiB; mimalloc (the crate, tried the same way) published at
//! 0.71× and 1.00× and cost 12.3 KiB per idle client connection, so it was
//! not kept.
//!
//! `--no-default-features` builds with the system allocator; `cargo xtask
//! bench --allocator system` measures the library on it.

#[cfg(feature = "jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// The allocator this build runs on, as the benchmark report names it.
pub(crate) const NAME: &str = if cfg!(feature = "jemalloc") {
    "jemalloc"
} else {
    "system"
};
