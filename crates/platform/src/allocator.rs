//! The global allocator: mimalloc, with two of its defaults changed before the first allocation.
//!
//! Every service allocates for each record it handles (the record, its span, its output); measured
//! with `make bench`, mimalloc made those allocations a fraction of what glibc's cost.
//!
//! mimalloc 3 commits each 1 GiB arena eagerly on Linux and purges freed memory only after a
//! second; the pages it frees stay resident. Draining a 20,000-order backlog, payment peaked at
//! 54 MiB and notification at 78 MiB, of which mimalloc's own statistics put 64 MiB committed in
//! its arena against a 14 MiB peak in use. With lazy arena commit and mimalloc 2's 10 ms purge
//! delay the same drain peaks at 37–41 and 38–42 MiB, at the same CPU per record.
//!
//! mimalloc reads its options once, at process start (its constructor), from the environment; a
//! constructor that runs before it changes only the defaults, so `MIMALLOC_ARENA_EAGER_COMMIT` and
//! `MIMALLOC_PURGE_DELAY` still override these.
#![allow(unsafe_code)]

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Indices in mimalloc 3's `mi_option_e` (`libmimalloc-sys` names only some of them); the version
/// is pinned by `Cargo.lock`, and `tests::the_defaults_are_in_force` reads them back.
const ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

const LAZY_COMMIT: std::ffi::c_long = 0;
const PURGE_DELAY_MS: std::ffi::c_long = 10;

extern "C" fn set_defaults() {
    // SAFETY: `mi_option_set_default` only stores a value in mimalloc's option table, for options
    // that exist in this version; it allocates nothing and is safe to call before mimalloc's
    // own initialisation.
    unsafe {
        libmimalloc_sys::mi_option_set_default(ARENA_EAGER_COMMIT, LAZY_COMMIT);
        libmimalloc_sys::mi_option_set_default(PURGE_DELAY, PURGE_DELAY_MS);
    }
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
    fn the_defaults_are_in_force() {
        if std::env::var_os("MIMALLOC_ARENA_EAGER_COMMIT").is_some()
            || std::env::var_os("MIMALLOC_PURGE_DELAY").is_some()
        {
            return;
        }
        // SAFETY: reading an option has no preconditions.
        let (commit, delay) = unsafe {
            (
                libmimalloc_sys::mi_option_get(ARENA_EAGER_COMMIT),
                libmimalloc_sys::mi_option_get(PURGE_DELAY),
            )
        };
        assert_eq!((commit, delay), (LAZY_COMMIT, PURGE_DELAY_MS));
    }
}
