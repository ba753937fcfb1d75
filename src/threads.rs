//! Process-wide CPU thread settings.

/// Fixes the thread count that candle asks for on every CPU matmul, and returns it.
///
/// candle 0.11 looks up its thread count on each matmul: `RAYON_NUM_THREADS`, or, when that is
/// unset, the physical core count, which it finds by reading and parsing `/proc/cpuinfo` every
/// time. On the tiny model that is thousands of reads per second (a quarter of the
/// quickstart's wall time went to them and their system calls). This sets
/// `RAYON_NUM_THREADS` once to the count candle would have found, so nothing else changes; an
/// existing positive `RAYON_NUM_THREADS` is kept. Call it at the start of a program, before
/// other threads run: the CLI, the benchmarks and the notebook kernel do.
pub fn configure_threads() -> usize {
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
    }
}
