//! The CPU collective's speed ([`TcpGroup`], ranks joined over localhost TCP through the
//! rendezvous, one thread each): all-reduce time and nccl-tests' bus bandwidth
//! (`size x 2 (n - 1) / n / time`, <https://github.com/NVIDIA/nccl-tests/blob/master/doc/PERFORMANCE.md>)
//! for the tiny adapter's gradients, 40 MB, and the full-size r=16 adapter's (77,509,632 f32,
//! 310 MB). No peer here: PyTorch's gloo would be the one (torch is not installed on the
//! machines this runs on); the numbers size the CPU backend, not NCCL.
//!
//! Also the time of the small second round a training step made before its counts joined its
//! gradient buffer.
//!
//! `cargo bench --bench allreduce_tcp` (one untimed call, then the best of 3).

use std::time::{Duration, Instant};

use deepsynth::train::distributed::{free_port, rendezvous, Collective, DistEnv, TcpGroup};

fn groups(world: usize) -> Vec<TcpGroup> {
    let port = free_port().unwrap();
    let timeout = Duration::from_secs(600);
    std::thread::scope(|s| {
        let jobs: Vec<_> = (0..world)
            .map(|rank| {
                s.spawn(move || {
                    let env = DistEnv::loopback(rank, world, port);
                    TcpGroup::new(rendezvous(&env, timeout).unwrap(), timeout)
                })
            })
            .collect();
        jobs.into_iter().map(|j| j.join().unwrap()).collect()
    })
}

/// Best of 3 timed all-reduces of `n` f32 (or, with `f64`, `n` f64; after one untimed), in
/// seconds.
fn time(groups: &[TcpGroup], n: usize, f64: bool) -> f64 {
    std::thread::scope(|s| {
        let jobs: Vec<_> = groups
            .iter()
            .map(|g| {
                s.spawn(move || {
                    let mut buf = vec![1f32; n];
                    let mut buf64 = vec![1f64; n];
                    let mut best = f64::INFINITY;
                    for i in 0..4 {
                        let t = Instant::now();
                        if f64 {
                            g.all_reduce_sum_f64(&mut buf64).unwrap();
                        } else {
                            g.all_reduce_sum_f32(&mut buf).unwrap();
                        }
                        if i > 0 {
                            best = best.min(t.elapsed().as_secs_f64());
                        }
                    }
                    best
                })
            })
            .collect();
        jobs.into_iter()
            .map(|j| j.join().unwrap())
            .fold(0.0, f64::max)
    })
}

fn main() {
    // Before a training step's counts went into its gradient buffer, each step made a second
    // round: an f64 all-reduce of a flag per parameter (the tiny adapter has 138) and 4
    // counts. Its time is what one collective per step saves.
    for world in [2, 4] {
        let g = groups(world);
        println!(
            "{world} ranks: a separate all-reduce of 142 f64 (the counts round a step no \
             longer makes) takes {:.3} ms",
            1e3 * time(&g, 142, true)
        );
    }
    println!("| ranks | f32 values | bytes | time | bus bandwidth |");
    println!("|---|---|---|---|---|");
    for world in [2, 4] {
        let g = groups(world);
        for n in [40_320, 10_000_000, 77_509_632] {
            let t = time(&g, n, false);
            let bytes = 4.0 * n as f64;
            let bus = bytes * 2.0 * (world - 1) as f64 / world as f64 / t;
            println!(
                "| {world} | {n} | {:.1} MB | {:.4} s | {:.2} GB/s |",
                bytes / 1e6,
                t,
                bus / 1e9
            );
        }
    }
}
