//! Process-wide CPU thread settings.

/// Fixes the thread counts candle uses on the CPU, and returns the count for products.
///
/// candle 0.11 looks up its thread count on each matmul: `RAYON_NUM_THREADS`, or, when that is
/// unset, the physical core count, which it finds by reading and parsing `/proc/cpuinfo` every
/// time. On the tiny model that is thousands of reads per second (a quarter of the
/// quickstart's wall time went to them and their system calls). This sets
/// `RAYON_NUM_THREADS` once to the count candle would have found; an existing positive
/// `RAYON_NUM_THREADS` is kept.
///
/// It also sets `CANDLE_NUM_THREADS=1` (unless already set), which runs candle's element-wise
/// ops on the calling thread. Otherwise they go through candle's own worker pool, which takes
/// one lock per op, so callers on different threads wait for each other (the vision encoder
/// encodes a batch's pages concurrently: 4 pages of the tiny model took 0.21 s with the pool and
/// 0.12 s without), and its workers spin between ops on cores that rayon's need. Products and
/// DeepSynth's own kernels still use every core through rayon.
///
/// Call it at the start of a program, before other threads run: the CLI, the benchmarks and
/// the notebook kernel do.
pub fn configure_threads() -> usize {
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
    if let Some(n) = std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
    {
        return n;
    }
    let n = num_cpus::get_physical().max(1);
    std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    n
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_count_is_set_once_and_kept() {
        let n = super::configure_threads();
        assert!(n >= 1);
        assert_eq!(std::env::var("RAYON_NUM_THREADS").unwrap(), n.to_string());
        assert_eq!(super::configure_threads(), n);
        assert!(std::env::var("CANDLE_NUM_THREADS").is_ok());
    }
}
