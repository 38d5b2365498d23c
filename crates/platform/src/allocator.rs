//! The global allocator: mimalloc, with one of its defaults changed before the first allocation.
//!
//! Every service allocates for each record it handles (the record, its span, its output); measured
//! with `make bench`, mimalloc made those allocations a fraction of what glibc's cost.
//!
//! mimalloc 3 commits each 1 GiB arena eagerly on Linux, and the pages it frees there stay
//! resident. Draining a 20,000-order backlog, payment peaked at 54 MiB and notification at 78 MiB,
//! of which mimalloc's own statistics put 64 MiB committed in its arena against a 14 MiB peak in
//! use. With the arena committed lazily, the same drain peaks at 39 and 46 MiB, and alerting and
//! the dashboard draining 200,000 readings at 46 and 59 MiB instead of 62 and 105, at the same CPU
//! per record.
//!
//! Not changed: the purge delay (1 s). mimalloc 2's 10 ms took the drain's peak only a few MiB
//! lower. (It was first blamed for a stall in the sensor bench's first seconds, which turned out
//! to be librdkafka's fixed 500 ms start-up waits: `docs/benchmarks.md`, "The sensor path".)
//!
//! mimalloc reads its options once, at process start (its constructor), from the environment; a
//! constructor that runs before it changes only the default, so `MIMALLOC_ARENA_EAGER_COMMIT`
//! still overrides it.
#![allow(unsafe_code)]

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The index of `mi_option_arena_eager_commit` in mimalloc 3's `mi_option_e` (`libmimalloc-sys`
/// names only some options); the version is pinned by `Cargo.lock`, and
/// `tests::the_default_is_in_force` reads it back.
const ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
const LAZY_COMMIT: std::ffi::c_long = 0;

extern "C" fn set_defaults() {
    // SAFETY: `mi_option_set_default` only stores a value in mimalloc's option table, for an
    // option that exists in this version; it allocates nothing and is safe to call before
    // mimalloc's own initialisation.
    unsafe { libmimalloc_sys::mi_option_set_default(ARENA_EAGER_COMMIT, LAZY_COMMIT) }
}

/// Runs before mimalloc's own constructor, which has no priority (and 101 when built with clang),
/// and so before its options are read and its first arena is reserved.
#[cfg(target_os = "linux")]
#[used]
#[unsafe(link_section = ".init_array.00100")]
static SET_DEFAULTS: extern "C" fn() = set_defaults;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_in_force() {
        if std::env::var_os("MIMALLOC_ARENA_EAGER_COMMIT").is_some() {
            return;
        }
        // SAFETY: reading an option has no preconditions.
        let commit = unsafe { libmimalloc_sys::mi_option_get(ARENA_EAGER_COMMIT) };
        assert_eq!(commit, LAZY_COMMIT);
    }
}
