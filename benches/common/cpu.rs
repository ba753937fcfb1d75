//! Shared benchmark helpers: process and thread CPU time, and the Python used for peers.

/// Process CPU time (user + system) in seconds.
pub fn seconds() -> f64 {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes into the struct we own.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// The Python that runs the peers: `DEEPSYNTH_PYTHON`, else `python3`.
pub fn python() -> String {
    std::env::var("DEEPSYNTH_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// CPU time of the calling thread in seconds (`CLOCK_THREAD_CPUTIME_ID`: nanosecond scheduler
/// accounting; `getrusage(RUSAGE_THREAD)` was seen to under-count a new thread's first
/// milliseconds).
pub fn thread_seconds() -> f64 {
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: clock_gettime writes into the struct we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}
