//! The malloc settings of a long-lived agent process: one arena, and freed memory handed
//! back to the system once the process is idle, so an idle agent stays small.

/// glibc gives threads their own malloc arenas (up to 8 per core) and keeps what they freed:
/// after streaming output through the runtime's workers, an idle agent would hold tens of
/// MiB. One arena is plenty for an agent's little contention (one runtime thread and a few
/// others), and [`release_free_memory`] then has one heap to return to the system.
pub fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code)]
    // SAFETY: mallopt only adjusts a malloc tunable; glibc takes its own lock for it, and
    // M_ARENA_MAX with a positive value is a documented, valid setting.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// Returns memory that malloc holds but nobody uses to the system. Walks the heap, so it
/// belongs off the runtime thread (the blocking pool); cheap on an idle agent's small heap.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code)]
    // SAFETY: malloc_trim takes the arena locks itself and only releases free pages; it
    // touches no memory that is in use.
    unsafe {
        libc::malloc_trim(0);
    }
}
