//! The torchrun environment ([`DistEnv`]): `RANK`, `LOCAL_RANK`, `WORLD_SIZE`,
//! `LOCAL_WORLD_SIZE`, `MASTER_ADDR` and `MASTER_PORT`, as `torchrun` and cluster launchers
//! (and `deepsynth train --nproc-per-node N`) set them for every rank
//! (<https://pytorch.org/docs/stable/elastic/run.html#environment-variables>).

use super::DistError;

/// The variables read, in the order they are checked.
pub const VARS: [&str; 6] = [
    "RANK",
    "LOCAL_RANK",
    "WORLD_SIZE",
    "LOCAL_WORLD_SIZE",
    "MASTER_ADDR",
    "MASTER_PORT",
];

/// Where this process stands in a data-parallel job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DistEnv {
    /// This process's rank, `0..world_size`.
    pub rank: usize,
    /// Its rank on this machine (the device index of a CUDA rank).
    pub local_rank: usize,
    /// Ranks in the job.
    pub world_size: usize,
    /// Ranks on this machine.
    pub local_world_size: usize,
    /// Host of rank 0's rendezvous listener (`None` for a single process).
    pub master_addr: Option<String>,
    /// Its port (`None` for a single process).
    pub master_port: Option<u16>,
}

impl DistEnv {
    /// One process: rank 0 of 1.
    pub fn single() -> Self {
        Self {
            rank: 0,
            local_rank: 0,
            world_size: 1,
            local_world_size: 1,
            master_addr: None,
            master_port: None,
        }
    }

    /// Rank `rank` of `world` processes on this machine, meeting at `127.0.0.1:port`.
    pub fn loopback(rank: usize, world: usize, port: u16) -> Self {
        Self {
            rank,
            local_rank: rank,
            world_size: world,
            local_world_size: world,
            master_addr: Some("127.0.0.1".into()),
            master_port: Some(port),
        }
    }

    /// Reads the process environment ([`Self::from_lookup`]).
    pub fn from_env() -> Result<Self, DistError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Parses the variables `get` returns. None set: [`Self::single`]. Otherwise `RANK` and
    /// `WORLD_SIZE` are required, `LOCAL_RANK` and `LOCAL_WORLD_SIZE` default to them (one
    /// machine), and `MASTER_ADDR` / `MASTER_PORT` are required when `WORLD_SIZE` is above 1.
    /// Errors name the variable and its value.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, DistError> {
        let vals: Vec<Option<String>> = VARS.iter().map(|v| get(v)).collect();
        if vals.iter().all(Option::is_none) {
            return Ok(Self::single());
        }
        let [rank, local_rank, world, local_world, addr, port] =
            <[Option<String>; 6]>::try_from(vals).expect("six variables");
        let count = |var: &'static str, v: Option<String>, min: usize| match v {
            None => Ok(None),
            Some(s) => match s.trim().parse::<usize>() {
                Ok(n) if n >= min => Ok(Some(n)),
                _ => Err(DistError::Env {
                    var,
                    value: s,
                    reason: format!("expected a whole number >= {min}"),
                }),
            },
        };
        let required = |var: &'static str, v: Option<usize>| {
            v.ok_or(DistError::MissingVar {
                var,
                reason: "another torchrun variable is set".into(),
            })
        };
        let rank = required("RANK", count("RANK", rank, 0)?)?;
        let world_size = required("WORLD_SIZE", count("WORLD_SIZE", world, 1)?)?;
        let local_rank = count("LOCAL_RANK", local_rank, 0)?.unwrap_or(rank);
        let local_world_size = count("LOCAL_WORLD_SIZE", local_world, 1)?.unwrap_or(world_size);
        let out_of = |var: &'static str, value: usize, limit: &str, n: usize| {
            Err(DistError::Env {
                var,
                value: value.to_string(),
                reason: format!("must be below {limit} ({n})"),
            })
        };
        if rank >= world_size {
            return out_of("RANK", rank, "WORLD_SIZE", world_size);
        }
        if local_rank >= local_world_size {
            return out_of(
                "LOCAL_RANK",
                local_rank,
                "LOCAL_WORLD_SIZE",
                local_world_size,
            );
        }
        if local_world_size > world_size {
            return Err(DistError::Env {
                var: "LOCAL_WORLD_SIZE",
                value: local_world_size.to_string(),
                reason: format!("must not exceed WORLD_SIZE ({world_size})"),
            });
        }
        let master_port = match port {
            None => None,
            Some(s) => match s.trim().parse::<u16>() {
                Ok(p) if p > 0 => Some(p),
                _ => {
                    return Err(DistError::Env {
                        var: "MASTER_PORT",
                        value: s,
                        reason: "expected a port number in 1..=65535".into(),
                    })
                }
            },
        };
        let master_addr = match addr {
            Some(a) if a.trim().is_empty() => {
                return Err(DistError::Env {
                    var: "MASTER_ADDR",
                    value: a,
                    reason: "expected a host name or address".into(),
                })
            }
            a => a.map(|a| a.trim().to_string()),
        };
        if world_size > 1 {
            let why = || format!("WORLD_SIZE is {world_size}");
            if master_addr.is_none() {
                return Err(DistError::MissingVar {
                    var: "MASTER_ADDR",
                    reason: why(),
                });
            }
            if master_port.is_none() {
                return Err(DistError::MissingVar {
                    var: "MASTER_PORT",
                    reason: why(),
                });
            }
        }
        Ok(Self {
            rank,
            local_rank,
            world_size,
            local_world_size,
            master_addr,
            master_port,
        })
    }

    /// Whether this is one process of several.
    pub fn is_distributed(&self) -> bool {
        self.world_size > 1
    }

    /// `MASTER_ADDR:MASTER_PORT` (`None` for a single process).
    pub fn master(&self) -> Option<String> {
        Some(format!(
            "{}:{}",
            self.master_addr.as_ref()?,
            self.master_port?
        ))
    }
}

/// A localhost port the system says is free now (as `torchrun --standalone` picks one).
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> Result<DistEnv, String> {
        DistEnv::from_lookup(|name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        })
        .map_err(|e| e.to_string())
    }

    const FULL: [(&str, &str); 6] = [
        ("RANK", "3"),
        ("LOCAL_RANK", "1"),
        ("WORLD_SIZE", "4"),
        ("LOCAL_WORLD_SIZE", "2"),
        ("MASTER_ADDR", "node0"),
        ("MASTER_PORT", "29500"),
    ];

    #[test]
    fn nothing_set_is_one_process_and_torchrun_sets_all() {
        assert_eq!(parse(&[]).unwrap(), DistEnv::single());
        assert!(!DistEnv::single().is_distributed());
        let e = parse(&FULL).unwrap();
        assert_eq!(
            (e.rank, e.local_rank, e.world_size, e.local_world_size),
            (3, 1, 4, 2)
        );
        assert_eq!(e.master().as_deref(), Some("node0:29500"));
        assert!(e.is_distributed());
        // One rank of one: no rendezvous needed.
        let one = parse(&[("RANK", "0"), ("WORLD_SIZE", "1")]).unwrap();
        assert_eq!(one.local_world_size, 1);
        assert_eq!(one.master(), None);
    }

    #[test]
    fn errors_name_the_variable_and_value() {
        let with = |k: &str, v: &str| {
            let mut p: Vec<(&str, &str)> = FULL.iter().copied().filter(|(n, _)| *n != k).collect();
            if !v.is_empty() {
                p.push((k, v));
            }
            parse(&p).unwrap_err()
        };
        assert_eq!(
            with("RANK", "x"),
            "torchrun environment: RANK=`x`: expected a whole number >= 0"
        );
        assert_eq!(
            with("RANK", "4"),
            "torchrun environment: RANK=`4`: must be below WORLD_SIZE (4)"
        );
        assert_eq!(
            with("WORLD_SIZE", "0"),
            "torchrun environment: WORLD_SIZE=`0`: expected a whole number >= 1"
        );
        assert_eq!(
            with("LOCAL_RANK", "2"),
            "torchrun environment: LOCAL_RANK=`2`: must be below LOCAL_WORLD_SIZE (2)"
        );
        assert_eq!(
            with("MASTER_PORT", "70000"),
            "torchrun environment: MASTER_PORT=`70000`: expected a port number in 1..=65535"
        );
        assert_eq!(
            with("MASTER_ADDR", ""),
            "torchrun environment: MASTER_ADDR is not set (WORLD_SIZE is 4)"
        );
        assert_eq!(
            with("WORLD_SIZE", ""),
            "torchrun environment: WORLD_SIZE is not set (another torchrun variable is set)"
        );
        assert_eq!(
            with("LOCAL_WORLD_SIZE", "8"),
            "torchrun environment: LOCAL_WORLD_SIZE=`8`: must not exceed WORLD_SIZE (4)"
        );
    }
}
