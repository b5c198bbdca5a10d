//! The binary's global allocator.
//!
//! The library crates never set one: that choice belongs to the program
//! that links them. This binary (hub, CLI, bench) uses jemalloc by default
//! because publishing allocates each frame on the publisher's thread and
//! frees it on the writer's: glibc's malloc serialises those cross-thread
//! frees with the publisher's allocations on one arena lock (half of the
//! process's `futex` calls), and its per-thread cache keeps only seven free
//! blocks per size. With jemalloc the same binary measured one publisher
//! 1.00–1.05× and eight 1.28–1.29× of a raw feed+flush loop, against
//! 0.70–0.74× and 0.74–0.79× on glibc (README, Performance: "Allocator").
//!
//! `--no-default-features` builds with the system allocator, and
//! `--no-default-features --features mimalloc` with mimalloc; `cargo xtask
//! bench --allocator system|jemalloc|mimalloc` measures each.

#[cfg(feature = "jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[cfg(all(feature = "mimalloc", not(feature = "jemalloc")))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The allocator this build runs on, as the benchmark report names it.
pub(crate) const NAME: &str = if cfg!(feature = "jemalloc") {
    "jemalloc"
} else if cfg!(feature = "mimalloc") {
    "mimalloc"
} else {
    "system"
};
