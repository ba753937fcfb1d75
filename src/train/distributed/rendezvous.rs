//! Rank discovery over TCP, as torchrun's static rendezvous: rank 0 listens on
//! `MASTER_PORT` (every interface, as PyTorch's `TCPStore`), the other ranks connect to
//! `MASTER_ADDR:MASTER_PORT` (retrying until the timeout, since rank 0 may start last) and say
//! hello with their rank and world size. Rank 0 refuses duplicates and mismatched world sizes,
//! names the ranks that did not show up in time, and sends every rank the session id (a
//! 128-byte opaque blob: where an NCCL unique id goes) and the rank list. The connections stay
//! open for [`super::TcpGroup`].

use std::io::{ErrorKind, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use super::wire::{read_exact_by, write_all};
use super::{DistEnv, DistError};

/// Bytes of the session id (`ncclUniqueId` is 128 bytes).
pub const SESSION_ID_BYTES: usize = 128;

const MAGIC: &[u8; 4] = b"DSRV";
const VERSION: u32 = 1;

/// One rank as rank 0 saw it join.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RankInfo {
    /// The rank.
    pub rank: usize,
    /// The address it connected from (rank 0: its listening address).
    pub addr: String,
}

/// A finished rendezvous: this rank's place, the session id and the open connections.
pub struct Rendezvous {
    /// This rank.
    pub rank: usize,
    /// Ranks in the group.
    pub world: usize,
    /// The same 128 bytes on every rank (an NCCL unique id's place).
    pub session: [u8; SESSION_ID_BYTES],
    /// Every rank, in rank order.
    pub ranks: Vec<RankInfo>,
    /// Rank 0: the connection of rank `r` at `r - 1`; other ranks: the one to rank 0.
    pub(crate) links: Vec<TcpStream>,
}

/// Joins the group `env` describes, waiting at most `timeout` for the other ranks. A single
/// process gets a rendezvous with no connections.
pub fn rendezvous(env: &DistEnv, timeout: Duration) -> Result<Rendezvous, DistError> {
    let deadline = Instant::now() + timeout;
    let single = || Rendezvous {
        rank: 0,
        world: 1,
        session: [0; SESSION_ID_BYTES],
        ranks: vec![RankInfo {
            rank: 0,
            addr: "local".into(),
        }],
        links: Vec::new(),
    };
    let Some(master) = env.master().filter(|_| env.is_distributed()) else {
        return Ok(single());
    };
    if env.rank == 0 {
        serve(env, &master, deadline, timeout)
    } else {
        join(env, &master, deadline, timeout)
    }
}

fn fail(rank: usize, reason: impl Into<String>) -> DistError {
    DistError::Rendezvous {
        rank,
        reason: reason.into(),
    }
}

/// Rank 0: accepts the others, checks them, answers them.
fn serve(
    env: &DistEnv,
    master: &str,
    deadline: Instant,
    timeout: Duration,
) -> Result<Rendezvous, DistError> {
    let port = env.master_port.expect("a distributed env has a port");
    let listener = TcpListener::bind(("0.0.0.0", port))
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(|e| fail(0, format!("cannot listen on port {port} ({master}): {e}")))?;
    let world = env.world_size;
    let mut joined: Vec<Option<(TcpStream, SocketAddr)>> = (0..world).map(|_| None).collect();
    let result = (|| {
        while joined[1..].iter().any(Option::is_none) {
            let (stream, from) = match listener.accept() {
                Ok(c) => c,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    if Instant::now() >= deadline {
                        let missing = (1..world).filter(|&r| joined[r].is_none()).collect();
                        return Err(DistError::Missing {
                            missing,
                            master: master.to_string(),
                            seconds: timeout.as_secs_f64(),
                        });
                    }
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
                Err(e) => return Err(fail(0, format!("accepting a connection: {e}"))),
            };
            let mut stream = configure(stream).map_err(|e| fail(0, e.to_string()))?;
            let mut hello = [0u8; 16];
            read_exact_by(&mut stream, &mut hello, deadline)
                .map_err(|e| fail(0, format!("no hello from {from}: {e}")))?;
            let word = |i: usize| u32::from_le_bytes(hello[i..i + 4].try_into().expect("4"));
            if &hello[..4] != MAGIC || word(4) != VERSION {
                return Err(fail(
                    0,
                    format!("{from} is not a deepsynth rank of this version"),
                ));
            }
            let (rank, their_world) = (word(8) as usize, word(12) as usize);
            let refuse = |mut s: TcpStream, reason: String| {
                let _ = send_refusal(&mut s, &reason);
                Err(fail(0, reason))
            };
            if their_world != world {
                return refuse(
                    stream,
                    format!(
                        "rank {rank} ({from}) has WORLD_SIZE {their_world}, rank 0 has {world}"
                    ),
                );
            }
            if rank == 0 || rank >= world {
                return refuse(
                    stream,
                    format!("{from} says it is rank {rank}, not in 1..{world}"),
                );
            }
            if let Some((_, first)) = &joined[rank] {
                return refuse(
                    stream,
                    format!("rank {rank} joined twice (from {first} and from {from})"),
                );
            }
            joined[rank] = Some((stream, from));
        }
        Ok(())
    })();
    if let Err(e) = result {
        // Tell the ranks already waiting, so they stop now instead of at their timeout.
        for (s, _) in joined.iter_mut().flatten() {
            let _ = send_refusal(s, &e.to_string());
        }
        return Err(e);
    }
    let session = session_id();
    let mut ranks = vec![RankInfo {
        rank: 0,
        addr: master.to_string(),
    }];
    let mut links = Vec::with_capacity(world - 1);
    for (r, slot) in joined.into_iter().enumerate().skip(1) {
        let (s, from) = slot.expect("every rank joined");
        ranks.push(RankInfo {
            rank: r,
            addr: from.to_string(),
        });
        links.push(s);
    }
    let mut welcome = vec![0u8];
    welcome.extend_from_slice(&session);
    welcome.extend_from_slice(&(world as u32).to_le_bytes());
    for info in &ranks {
        welcome.extend_from_slice(&(info.rank as u32).to_le_bytes());
        welcome.extend_from_slice(&(info.addr.len() as u32).to_le_bytes());
        welcome.extend_from_slice(info.addr.as_bytes());
    }
    for (i, s) in links.iter_mut().enumerate() {
        write_all(s, &welcome, deadline).map_err(|e| fail(0, format!("rank {}: {e}", i + 1)))?;
    }
    Ok(Rendezvous {
        rank: 0,
        world,
        session,
        ranks,
        links,
    })
}

fn send_refusal(s: &mut TcpStream, reason: &str) -> std::io::Result<()> {
    let mut msg = vec![1u8];
    msg.extend_from_slice(&(reason.len() as u32).to_le_bytes());
    msg.extend_from_slice(reason.as_bytes());
    s.set_nonblocking(false)?;
    s.set_write_timeout(Some(Duration::from_secs(1)))?;
    s.write_all(&msg)
}

/// Blocking, no Nagle delay.
fn configure(s: TcpStream) -> std::io::Result<TcpStream> {
    s.set_nonblocking(false)?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// 128 bytes that differ between sessions (time and process id through SplitMix).
fn session_id() -> [u8; SESSION_ID_BYTES] {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut rng = crate::rng::Rng::new(nanos ^ ((std::process::id() as u64) << 32));
    let mut id = [0u8; SESSION_ID_BYTES];
    for chunk in id.chunks_mut(8) {
        chunk.copy_from_slice(&rng.next_u64().to_le_bytes());
    }
    id
}

/// A rank above 0: connects (retrying), says hello, reads the welcome.
fn join(
    env: &DistEnv,
    master: &str,
    deadline: Instant,
    timeout: Duration,
) -> Result<Rendezvous, DistError> {
    let rank = env.rank;
    let mut last_err;
    let mut stream = loop {
        let attempt = master.to_socket_addrs().map(|mut a| a.next());
        match attempt {
            Ok(Some(addr)) => {
                let left = deadline.saturating_duration_since(Instant::now());
                match TcpStream::connect_timeout(&addr, left.max(Duration::from_millis(1))) {
                    Ok(s) => break configure(s).map_err(|e| fail(rank, e.to_string()))?,
                    Err(e) => last_err = e.to_string(),
                }
            }
            Ok(None) => last_err = format!("{master} resolves to no address"),
            Err(e) => last_err = e.to_string(),
        }
        if Instant::now() >= deadline {
            return Err(fail(
                rank,
                format!(
                    "could not reach rank 0 at {master} within {:.1} s: {last_err}",
                    timeout.as_secs_f64()
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut hello = MAGIC.to_vec();
    for w in [VERSION, rank as u32, env.world_size as u32] {
        hello.extend_from_slice(&w.to_le_bytes());
    }
    // Rank 0's answer may be its verdict on a missing rank, sent when its own timeout ends:
    // wait long enough to hear it.
    let deadline = deadline + timeout;
    let io = |e: std::io::Error| fail(rank, format!("rendezvous with rank 0 at {master}: {e}"));
    write_all(&mut stream, &hello, deadline).map_err(io)?;
    let mut status = [0u8; 1];
    read_exact_by(&mut stream, &mut status, deadline).map_err(io)?;
    let u32_at = |s: &mut TcpStream| -> Result<u32, DistError> {
        let mut b = [0u8; 4];
        read_exact_by(s, &mut b, deadline).map_err(io)?;
        Ok(u32::from_le_bytes(b))
    };
    if status[0] != 0 {
        let n = u32_at(&mut stream)? as usize;
        let mut msg = vec![0u8; n.min(1 << 16)];
        read_exact_by(&mut stream, &mut msg, deadline).map_err(io)?;
        return Err(fail(
            rank,
            format!(
                "rank 0 stopped the rendezvous: {}",
                String::from_utf8_lossy(&msg)
            ),
        ));
    }
    let mut session = [0u8; SESSION_ID_BYTES];
    read_exact_by(&mut stream, &mut session, deadline).map_err(io)?;
    let world = u32_at(&mut stream)? as usize;
    let mut ranks = Vec::with_capacity(world);
    for _ in 0..world {
        let r = u32_at(&mut stream)? as usize;
        let n = u32_at(&mut stream)? as usize;
        let mut addr = vec![0u8; n.min(1 << 10)];
        read_exact_by(&mut stream, &mut addr, deadline).map_err(io)?;
        ranks.push(RankInfo {
            rank: r,
            addr: String::from_utf8_lossy(&addr).into_owned(),
        });
    }
    Ok(Rendezvous {
        rank,
        world,
        session,
        ranks,
        links: vec![stream],
    })
}
