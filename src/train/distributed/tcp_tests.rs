//! [`TcpGroup`] and the rendezvous over localhost, ranks as threads: the same bits as
//! [`InProcessGroup`], gathers in rank order, and every failure named.

use std::time::{Duration, Instant};

use super::*;

fn free_port() -> u16 {
    super::free_port().unwrap()
}

/// Runs `f` as each of `ranks` (of `world`) in its own thread after joining the rendezvous.
fn with_ranks<T: Send>(
    ranks: &[usize],
    world: usize,
    timeout: Duration,
    f: impl Fn(Result<TcpGroup, DistError>) -> T + Sync,
) -> Vec<T> {
    let port = free_port();
    std::thread::scope(|s| {
        let jobs: Vec<_> = ranks
            .iter()
            .map(|&r| {
                let f = &f;
                s.spawn(move || {
                    f(rendezvous(&DistEnv::loopback(r, world, port), timeout)
                        .map(|v| TcpGroup::new(v, timeout)))
                })
            })
            .collect();
        jobs.into_iter().map(|j| j.join().unwrap()).collect()
    })
}

/// Values whose sum depends on the order of addition.
fn values(rank: usize) -> Vec<f32> {
    (0..1000)
        .map(|i| ((i * 7 + rank * 13) as f32 * 0.1).sin() * 10f32.powi((i % 9) as i32 - 4))
        .collect()
}

#[test]
fn tcp_sums_match_the_in_process_group_bit_for_bit() {
    let tcp = with_ranks(&[0, 1, 2], 3, Duration::from_secs(20), |g| {
        let g = g.unwrap();
        let mut a = values(g.rank());
        g.all_reduce_sum_f32(&mut a).unwrap();
        let mut b = vec![0.1 * g.rank() as f64, 1.0];
        g.all_reduce_sum_f64(&mut b).unwrap();
        let gathered = g.all_gather_bytes(&vec![g.rank() as u8; g.rank()]).unwrap();
        (a, b, gathered, *g.session_id())
    });
    let local = InProcessGroup::new(3, Duration::from_secs(20));
    let want: Vec<Vec<f32>> = std::thread::scope(|s| {
        let jobs: Vec<_> = local
            .iter()
            .map(|h| {
                s.spawn(move || {
                    let mut a = values(h.rank());
                    h.all_reduce_sum_f32(&mut a).unwrap();
                    let g = h.all_gather_bytes(&[h.rank() as u8]).unwrap();
                    assert_eq!(g, [vec![0], vec![1], vec![2]]);
                    a
                })
            })
            .collect();
        jobs.into_iter().map(|j| j.join().unwrap()).collect()
    });
    for (rank, (a, b, gathered, session)) in tcp.iter().enumerate() {
        assert!(
            a == &want[0],
            "rank {rank}: sums differ from the in-process group"
        );
        assert_eq!(b, &[0.1 + 0.2, 3.0]);
        assert_eq!(gathered, &[vec![], vec![1], vec![2, 2]]);
        assert_eq!(session, &tcp[0].3, "one session id");
    }
    assert!(tcp[0].3.iter().any(|&b| b != 0));
}

#[test]
fn a_missing_rank_is_named_within_the_timeout() {
    let start = Instant::now();
    let errs = with_ranks(&[0, 1], 3, Duration::from_millis(500), |g| {
        g.err().unwrap().to_string()
    });
    assert!(start.elapsed() < Duration::from_secs(5));
    assert!(
        errs[0].starts_with("rank 0: rank(s) [2] did not join the rendezvous at 127.0.0.1:"),
        "{}",
        errs[0]
    );
    assert!(
        errs[1].contains("rank 1: rendezvous: rank 0 stopped the rendezvous: rank 0: rank(s) [2]"),
        "{}",
        errs[1]
    );
    // Nobody listening: rank 1 gives up, naming rank 0's address.
    let err = with_ranks(&[1], 2, Duration::from_millis(300), |g| {
        g.err().unwrap().to_string()
    });
    assert!(
        err[0].contains("could not reach rank 0 at 127.0.0.1:"),
        "{}",
        err[0]
    );
}

#[test]
fn duplicates_and_other_world_sizes_are_refused() {
    let errs = with_ranks(&[0, 1, 1], 3, Duration::from_secs(5), |g| {
        g.err().map(|e| e.to_string()).unwrap_or_default()
    });
    assert!(errs[0].contains("rank 1 joined twice"), "{errs:?}");
    let port = free_port();
    let errs: Vec<String> = std::thread::scope(|s| {
        let a =
            s.spawn(|| rendezvous(&DistEnv::loopback(0, 2, port), Duration::from_secs(5)).err());
        let b =
            s.spawn(|| rendezvous(&DistEnv::loopback(1, 3, port), Duration::from_secs(5)).err());
        [a, b]
            .into_iter()
            .map(|j| j.join().unwrap().unwrap().to_string())
            .collect()
    });
    assert!(errs[0].contains("rank 1 (127.0.0.1:"), "{errs:?}");
    assert!(
        errs[0].contains("has WORLD_SIZE 3, rank 0 has 2"),
        "{errs:?}"
    );
    assert!(
        errs[1].contains("rank 0 stopped the rendezvous"),
        "{errs:?}"
    );
}

#[test]
fn a_dead_or_hung_rank_is_named() {
    // Rank 2 leaves (its connection closes): rank 0 names it, rank 1 hears why from rank 0.
    let errs = with_ranks(&[0, 1, 2], 3, Duration::from_secs(20), |g| {
        let g = g.unwrap();
        if g.rank() == 2 {
            return String::new();
        }
        let e = g.all_reduce_sum_f32(&mut [1.0]).unwrap_err().to_string();
        // The group stays broken.
        assert_eq!(g.all_reduce_sum_f64(&mut [1.0]).unwrap_err().to_string(), e);
        e
    });
    assert!(errs[0].starts_with("rank 0: lost rank 2: "), "{}", errs[0]);
    assert!(
        errs[1].starts_with("rank 1: rank 0 ended the collective: rank 0: lost rank 2"),
        "{}",
        errs[1]
    );
    // Rank 1 stays but never calls: a timeout naming it.
    let start = Instant::now();
    let errs = with_ranks(&[0, 1], 2, Duration::from_millis(400), |g| {
        let g = g.unwrap();
        if g.rank() == 1 {
            std::thread::sleep(Duration::from_millis(1500));
            return String::new();
        }
        g.all_gather_bytes(b"x").unwrap_err().to_string()
    });
    assert_eq!(
        errs[0],
        "rank 0: rank(s) [1] did not reach the all-gather within 0.4 s"
    );
    assert!(start.elapsed() < Duration::from_secs(10));
}
