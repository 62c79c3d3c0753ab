//! The process's allocator, told to keep large buffers out of its arenas.
//!
//! glibc's malloc serves a large allocation with its own mmap only until the first such
//! buffer is freed; then it raises its threshold to that size (up to 32 MiB) and serves the
//! next ones from the calling thread's arena, where freed memory stays resident. The backup
//! allocates 16 MiB packs and chunk buffers of up to 8 MiB on whichever of its threads needs
//! one, so with eight file threads each arena ended up holding packs' worth of free memory:
//! a backup of 30,797 small files peaked at 278–283 MB instead of 77 MB. A fixed threshold
//! (which also turns the adjustment off) gives every buffer of 4 MiB or more back to the
//! kernel when freed.

/// Buffers this large or larger get their own mapping. Packs and large chunks are well
/// above it; the small allocations of trees and indexes stay in the arenas.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 4 << 20;

/// Fixes glibc's mmap threshold, unless the user set one with `GLIBC_TUNABLES`. Returns
/// whether it was set.
pub fn keep_large_buffers_out_of_arenas() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let chosen_by_user = std::env::var("GLIBC_TUNABLES")
            .is_ok_and(|t| t.contains("glibc.malloc.mmap_threshold"));
        if chosen_by_user {
            return false;
        }
        // SAFETY: mallopt only sets a parameter of the allocator; it is called before any
        // other thread exists.
        unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn glibc_takes_the_threshold() {
        // SAFETY: as in the function; the test binary's other threads only allocate.
        assert_eq!(
            unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, super::MMAP_THRESHOLD) },
            1,
            "glibc refused the mmap threshold"
        );
    }
}
