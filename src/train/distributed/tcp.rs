//! [`Collective`] across processes over the rendezvous' TCP connections: the CPU backend of a
//! multi-process run (PyTorch's gloo plays this part; NCCL is the CUDA one). A star through
//! rank 0: every other rank sends its buffer, rank 0 sums them in rank order (the order of
//! [`super::InProcessGroup`] and of one process accumulating, so the bits are the same) and
//! sends the result back. Every read and write has a deadline; a closed connection or a
//! deadline becomes an error naming the rank, and rank 0 tells the others why a round failed.
//! After a failure the group is unusable (as an NCCL communicator after an error).

use std::net::TcpStream;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::rendezvous::{Rendezvous, SESSION_ID_BYTES};
use super::wire::{recv_frame, send_frame};
use super::{Collective, CollectiveError};

const F32: u8 = 1;
const F64: u8 = 2;
const BYTES: u8 = 3;
const FAILED: u8 = 9;

/// Largest frame accepted (16 GiB: far above any adapter's gradients).
const MAX_FRAME: u64 = 1 << 34;

fn op_name(tag: u8) -> &'static str {
    match tag {
        F32 | F64 => "all-reduce",
        BYTES => "all-gather",
        _ => "collective",
    }
}

/// One process's handle on a group of processes; see the module docs.
pub struct TcpGroup {
    rank: usize,
    world: usize,
    timeout: Duration,
    session: [u8; SESSION_ID_BYTES],
    state: Mutex<State>,
}

struct State {
    /// Rank 0: rank `r`'s connection at `r - 1`; other ranks: rank 0's.
    links: Vec<TcpStream>,
    /// Why the group stopped working, once it has.
    broken: Option<CollectiveError>,
}

impl TcpGroup {
    /// The group over a finished rendezvous; each collective waits at most `timeout` for the
    /// other ranks (ranks above 0 wait twice as long for rank 0's answer, so that rank 0's
    /// verdict naming a missing rank reaches them first).
    pub fn new(rdv: Rendezvous, timeout: Duration) -> Self {
        Self {
            rank: rdv.rank,
            world: rdv.world,
            timeout,
            session: rdv.session,
            state: Mutex::new(State {
                links: rdv.links,
                broken: None,
            }),
        }
    }

    /// The session id every rank received from rank 0.
    pub fn session_id(&self) -> &[u8; SESSION_ID_BYTES] {
        &self.session
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The error of a failed read or write on the connection to `peer`.
    fn io_error(&self, tag: u8, peer: usize, e: std::io::Error) -> CollectiveError {
        match e.kind() {
            std::io::ErrorKind::TimedOut => CollectiveError::Timeout {
                rank: self.rank,
                op: op_name(tag),
                missing: vec![peer],
                seconds: self.timeout.as_secs_f64(),
            },
            _ => CollectiveError::Lost {
                rank: self.rank,
                peer,
                reason: e.to_string(),
            },
        }
    }

    /// One round: this rank's `mine` in, the combined bytes out. `combine` (run on rank 0)
    /// gets every rank's bytes in rank order.
    fn round(
        &self,
        tag: u8,
        mine: Vec<u8>,
        combine: impl FnOnce(Vec<Vec<u8>>) -> Result<Vec<u8>, CollectiveError>,
    ) -> Result<Vec<u8>, CollectiveError> {
        if self.world == 1 {
            return combine(vec![mine]);
        }
        let mut st = self.lock();
        if let Some(e) = &st.broken {
            return Err(e.clone());
        }
        let result = if self.rank == 0 {
            self.root_round(&mut st.links, tag, mine, combine)
        } else {
            self.leaf_round(&mut st.links[0], tag, mine)
        };
        if let Err(e) = &result {
            st.broken = Some(e.clone());
        }
        result
    }

    fn root_round(
        &self,
        links: &mut [TcpStream],
        tag: u8,
        mine: Vec<u8>,
        combine: impl FnOnce(Vec<Vec<u8>>) -> Result<Vec<u8>, CollectiveError>,
    ) -> Result<Vec<u8>, CollectiveError> {
        let deadline = Instant::now() + self.timeout;
        let mut parts = vec![mine];
        let mut failure = None;
        for (i, link) in links.iter_mut().enumerate() {
            let peer = i + 1;
            match recv_frame(link, deadline, MAX_FRAME) {
                Ok((t, body)) if t == tag => parts.push(body),
                Ok((t, _)) => {
                    failure = Some(CollectiveError::OutOfStep {
                        rank: 0,
                        peer,
                        theirs: op_name(t),
                        ours: op_name(tag),
                    });
                    break;
                }
                Err(e) => {
                    failure = Some(self.io_error(tag, peer, e));
                    break;
                }
            }
        }
        let result = match failure {
            Some(e) => Err(e),
            None => combine(parts),
        };
        match result {
            Ok(out) => {
                for (i, link) in links.iter_mut().enumerate() {
                    send_frame(link, tag, &out, deadline)
                        .map_err(|e| self.io_error(tag, i + 1, e))?;
                }
                Ok(out)
            }
            Err(e) => {
                // Best effort: the ranks still listening learn why instead of timing out.
                let why = e.to_string();
                let soon = Instant::now() + Duration::from_secs(2);
                for link in links.iter_mut() {
                    let _ = send_frame(link, FAILED, why.as_bytes(), soon);
                }
                Err(e)
            }
        }
    }

    fn leaf_round(
        &self,
        link: &mut TcpStream,
        tag: u8,
        mine: Vec<u8>,
    ) -> Result<Vec<u8>, CollectiveError> {
        let deadline = Instant::now() + 2 * self.timeout;
        send_frame(link, tag, &mine, deadline).map_err(|e| self.io_error(tag, 0, e))?;
        match recv_frame(link, deadline, MAX_FRAME) {
            Ok((FAILED, why)) => Err(CollectiveError::Remote {
                rank: self.rank,
                reason: String::from_utf8_lossy(&why).into_owned(),
            }),
            Ok((t, body)) if t == tag => Ok(body),
            Ok((t, _)) => Err(CollectiveError::OutOfStep {
                rank: self.rank,
                peer: 0,
                theirs: op_name(t),
                ours: op_name(tag),
            }),
            Err(e) => Err(self.io_error(tag, 0, e)),
        }
    }

    fn all_reduce<const N: usize, T: Copy + std::ops::Add<Output = T>>(
        &self,
        tag: u8,
        buf: &mut [T],
        to: fn(T) -> [u8; N],
        from: fn([u8; N]) -> T,
    ) -> Result<(), CollectiveError> {
        let decode = |b: &[u8]| -> Vec<T> {
            b.chunks_exact(N)
                .map(|c| from(c.try_into().expect("N bytes")))
                .collect()
        };
        let encode = |v: &[T]| -> Vec<u8> {
            let mut out = Vec::with_capacity(v.len() * N);
            for &x in v {
                out.extend_from_slice(&to(x));
            }
            out
        };
        let out = self.round(tag, encode(buf), |parts| {
            let lens: Vec<usize> = parts.iter().map(|p| p.len() / N).collect();
            if lens.iter().any(|&n| n != lens[0]) {
                return Err(CollectiveError::Mismatch(lens));
            }
            let mut sum = decode(&parts[0]);
            for p in &parts[1..] {
                for (s, c) in sum.iter_mut().zip(p.chunks_exact(N)) {
                    *s = *s + from(c.try_into().expect("N bytes"));
                }
            }
            Ok(encode(&sum))
        })?;
        if out.len() != buf.len() * N {
            return Err(CollectiveError::Mismatch(vec![buf.len(), out.len() / N]));
        }
        for (b, c) in buf.iter_mut().zip(out.chunks_exact(N)) {
            *b = from(c.try_into().expect("N bytes"));
        }
        Ok(())
    }
}

impl Collective for TcpGroup {
    fn rank(&self) -> usize {
        self.rank
    }

    fn world_size(&self) -> usize {
        self.world
    }

    fn all_reduce_sum_f32(&self, buf: &mut [f32]) -> Result<(), CollectiveError> {
        self.all_reduce(F32, buf, f32::to_le_bytes, f32::from_le_bytes)
    }

    fn all_reduce_sum_f64(&self, buf: &mut [f64]) -> Result<(), CollectiveError> {
        self.all_reduce(F64, buf, f64::to_le_bytes, f64::from_le_bytes)
    }

    fn all_gather_bytes(&self, mine: &[u8]) -> Result<Vec<Vec<u8>>, CollectiveError> {
        let out = self.round(BYTES, mine.to_vec(), |parts| {
            let mut out = Vec::new();
            for p in &parts {
                out.extend_from_slice(&(p.len() as u64).to_le_bytes());
                out.extend_from_slice(p);
            }
            Ok(out)
        })?;
        let mut parts = Vec::with_capacity(self.world);
        let mut at = 0;
        while at + 8 <= out.len() {
            let n = u64::from_le_bytes(out[at..at + 8].try_into().expect("8")) as usize;
            at += 8;
            let end = (at + n).min(out.len());
            parts.push(out[at..end].to_vec());
            at = end;
        }
        if parts.len() != self.world {
            return Err(CollectiveError::Mismatch(vec![self.world, parts.len()]));
        }
        Ok(parts)
    }
}
