//! [`Collective`] over threads of one process: the test double of the CPU tests (NCCL is the
//! collective of CUDA ranks). Each all-reduce is a round: every rank deposits its buffer, the
//! last to arrive sums them in rank order (so every rank gets the same bits), and a rank that
//! does not arrive within the timeout is named in every other rank's error instead of hanging
//! them.

use std::any::Any;
use std::ops::Add;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::{Collective, CollectiveError};

/// One rank's handle on a group of threads; make the group with [`InProcessGroup::new`] and
/// move one handle into each rank's thread.
pub struct InProcessGroup {
    rank: usize,
    shared: Arc<Shared>,
}

struct Shared {
    world: usize,
    timeout: Duration,
    round: Mutex<Round>,
    changed: Condvar,
}

/// A finished round: its result, or each rank's buffer length when they differ.
type Outcome = Result<Box<dyn Any + Send + Sync>, Vec<usize>>;

/// The state of the current collective.
#[derive(Default)]
struct Round {
    /// Incremented when a round's result is ready.
    generation: u64,
    /// Each rank's buffer, until the round completes.
    slots: Vec<Option<Box<dyn Any + Send>>>,
    /// The result (or the mismatch), shared by the ranks still to read it.
    result: Option<Arc<Outcome>>,
    /// Ranks yet to read `result`; no new round starts before they have.
    readers: usize,
    /// The ranks missing when a rank gave up waiting: the group is unusable from then on.
    broken: Option<Vec<usize>>,
}

impl InProcessGroup {
    /// Handles for ranks `0..world` that wait at most `timeout` for each other.
    pub fn new(world: usize, timeout: Duration) -> Vec<InProcessGroup> {
        let shared = Arc::new(Shared {
            world,
            timeout,
            round: Mutex::new(Round {
                slots: (0..world).map(|_| None).collect(),
                ..Round::default()
            }),
            changed: Condvar::new(),
        });
        (0..world)
            .map(|rank| InProcessGroup {
                rank,
                shared: shared.clone(),
            })
            .collect()
    }

    fn lock(&self) -> MutexGuard<'_, Round> {
        // A rank that panicked while holding the lock leaves a consistent round behind (every
        // update is done before a panic can happen), so the poison is ignored.
        self.shared.round.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits on the condition variable until `done` or the deadline. At the deadline the
    /// ranks whose slot is still empty are the missing ones, and the group is marked broken
    /// so that every other waiting or later call fails with the same ranks.
    fn wait<'a>(
        &self,
        op: &'static str,
        mut g: MutexGuard<'a, Round>,
        deadline: Instant,
        done: impl Fn(&Round) -> bool,
    ) -> Result<MutexGuard<'a, Round>, CollectiveError> {
        loop {
            if let Some(missing) = &g.broken {
                return Err(self.timeout(op, missing.clone()));
            }
            if done(&g) {
                return Ok(g);
            }
            let now = Instant::now();
            if now >= deadline {
                let missing: Vec<usize> = (0..self.shared.world)
                    .filter(|&r| g.slots[r].is_none())
                    .collect();
                g.broken = Some(missing.clone());
                self.shared.changed.notify_all();
                return Err(self.timeout(op, missing));
            }
            g = self
                .shared
                .changed
                .wait_timeout(g, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    fn timeout(&self, op: &'static str, missing: Vec<usize>) -> CollectiveError {
        CollectiveError::Timeout {
            rank: self.rank,
            op,
            missing,
            seconds: self.shared.timeout.as_secs_f64(),
        }
    }

    /// One round: every rank deposits `mine`; the last to arrive runs `combine` over them in
    /// rank order, and every rank gets a copy of its result.
    fn round<T, R>(
        &self,
        op: &'static str,
        mine: T,
        combine: impl FnOnce(Vec<T>) -> Result<R, Vec<usize>>,
    ) -> Result<R, CollectiveError>
    where
        T: Send + 'static,
        R: Clone + Send + Sync + 'static,
    {
        let world = self.shared.world;
        let deadline = Instant::now() + self.shared.timeout;
        let g = self.lock();
        // The previous round's readers first.
        let mut g = self.wait(op, g, deadline, |r| r.readers == 0)?;
        let generation = g.generation;
        g.slots[self.rank] = Some(Box::new(mine));
        if g.slots.iter().all(Option::is_some) {
            let parts: Vec<T> = g
                .slots
                .iter_mut()
                .map(|s| {
                    *s.take()
                        .expect("every slot is filled")
                        .downcast::<T>()
                        .expect("one element type per round")
                })
                .collect();
            let result = combine(parts).map(|r| Box::new(r) as Box<dyn Any + Send + Sync>);
            g.result = Some(Arc::new(result));
            g.readers = world;
            g.generation += 1;
            self.shared.changed.notify_all();
        } else {
            g = self.wait(op, g, deadline, |r| r.generation != generation)?;
        }
        let result = g.result.clone().expect("a finished round has a result");
        g.readers -= 1;
        if g.readers == 0 {
            g.result = None;
            self.shared.changed.notify_all();
        }
        drop(g);
        match &*result {
            Ok(out) => Ok(out.downcast_ref::<R>().expect("same result type").clone()),
            Err(lens) => Err(CollectiveError::Mismatch(lens.clone())),
        }
    }

    fn all_reduce<T>(&self, buf: &mut [T]) -> Result<(), CollectiveError>
    where
        T: Copy + Add<Output = T> + Send + Sync + 'static,
    {
        let sum = self.round("all-reduce", buf.to_vec(), |parts: Vec<Vec<T>>| {
            let lens: Vec<usize> = parts.iter().map(Vec::len).collect();
            if lens.iter().any(|&n| n != lens[0]) {
                return Err(lens);
            }
            let mut sum = parts[0].clone();
            for p in &parts[1..] {
                for (s, &x) in sum.iter_mut().zip(p) {
                    *s = *s + x;
                }
            }
            Ok(sum)
        })?;
        buf.copy_from_slice(&sum);
        Ok(())
    }
}

impl Collective for InProcessGroup {
    fn rank(&self) -> usize {
        self.rank
    }

    fn world_size(&self) -> usize {
        self.shared.world
    }

    fn all_reduce_sum_f32(&self, buf: &mut [f32]) -> Result<(), CollectiveError> {
        self.all_reduce(buf)
    }

    fn all_reduce_sum_f64(&self, buf: &mut [f64]) -> Result<(), CollectiveError> {
        self.all_reduce(buf)
    }

    fn all_gather_bytes(&self, mine: &[u8]) -> Result<Vec<Vec<u8>>, CollectiveError> {
        self.round("all-gather", mine.to_vec(), |parts: Vec<Vec<u8>>| Ok(parts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_get_the_same_sum_round_after_round() {
        let handles = InProcessGroup::new(3, Duration::from_secs(20));
        let out: Vec<Vec<f32>> = std::thread::scope(|s| {
            let jobs: Vec<_> = handles
                .iter()
                .map(|h| {
                    s.spawn(move || {
                        let mut seen = Vec::new();
                        for round in 0..50 {
                            let mut b = vec![h.rank() as f32 + round as f32, 1.0];
                            h.all_reduce_sum_f32(&mut b).unwrap();
                            seen.extend(b);
                        }
                        seen
                    })
                })
                .collect();
            jobs.into_iter().map(|j| j.join().unwrap()).collect()
        });
        for round in 0..50 {
            // (0 + 1 + 2) + 3 * round, and 3 ranks x 1.0.
            let want = [3.0 + 3.0 * round as f32, 3.0];
            assert_eq!(out[0][2 * round..2 * round + 2], want, "round {round}");
        }
        assert!(out.iter().all(|o| o == &out[0]));
    }

    #[test]
    fn a_missing_rank_is_named_and_lengths_are_checked() {
        let handles = InProcessGroup::new(3, Duration::from_millis(300));
        let errs: Vec<String> = std::thread::scope(|s| {
            let jobs: Vec<_> = handles[..2]
                .iter()
                .map(|h| s.spawn(move || h.all_reduce_sum_f64(&mut [1.0]).unwrap_err()))
                .collect();
            jobs.into_iter()
                .map(|j| j.join().unwrap().to_string())
                .collect()
        });
        assert_eq!(
            errs,
            [
                "rank 0: rank(s) [2] did not reach the all-reduce within 0.3 s",
                "rank 1: rank(s) [2] did not reach the all-reduce within 0.3 s"
            ]
        );
        let handles = InProcessGroup::new(2, Duration::from_secs(20));
        let errs: Vec<String> = std::thread::scope(|s| {
            let jobs: Vec<_> = handles
                .iter()
                .map(|h| {
                    s.spawn(move || {
                        let mut b = vec![0f32; 1 + h.rank()];
                        h.all_reduce_sum_f32(&mut b).unwrap_err().to_string()
                    })
                })
                .collect();
            jobs.into_iter().map(|j| j.join().unwrap()).collect()
        });
        assert!(errs.iter().all(|e| e.contains("[1, 2]")), "{errs:?}");
    }
}
