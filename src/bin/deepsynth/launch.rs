//! `--nproc-per-node N`: one machine's ranks, as `torchrun --standalone` starts them. The
//! command re-runs itself N times with the torchrun environment set (`RANK`, `LOCAL_RANK`,
//! `WORLD_SIZE`, `LOCAL_WORLD_SIZE`, `MASTER_ADDR=127.0.0.1`, `MASTER_PORT`; and
//! `RAYON_NUM_THREADS`: the machine's threads shared out), prints their
//! output with a `[rank k]` prefix (rank 0's standard output passes through untouched, so
//! results can be piped), and waits. When a rank exits with an error or is killed, the others
//! get [`GRACE`] to end on their own (they fail at their next collective, naming the lost
//! rank; a checkpoint being written is finished), then are killed, and the command fails
//! naming the rank and its exit status (ranks that only stopped because of it, exit status
//! [`PEER_FAILED_STATUS`], are listed after it). Without
//! `--nproc-per-node`, a process started with the torchrun variables set (by `torchrun
//! --no-python deepsynth ...` or a cluster launcher) runs as that rank.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::Duration;

use clap::Args;
use deepsynth::train::distributed::{
    join_from_env, DistEnv, TcpGroup, PEER_FAILED_STATUS, TORCHRUN_VARS,
};
use deepsynth::train::TrainError;

use crate::common::{dashed_flags, usage};

/// How long the other ranks may take to end after one failed (torchrun's default).
const GRACE: Duration = Duration::from_secs(30);

/// Options of a data-parallel run.
#[derive(Args, Debug, Clone)]
pub struct LaunchArgs {
    /// Start this many ranks on this machine (data parallel; torchrun's --nproc-per-node).
    /// Without it, the torchrun environment (RANK, WORLD_SIZE, MASTER_ADDR, ...) decides.
    #[arg(long)]
    pub nproc_per_node: Option<usize>,
    /// Port of rank 0's rendezvous with --nproc-per-node [default: a free one].
    #[arg(long)]
    pub master_port: Option<u16>,
    /// Seconds the ranks wait for each other (rendezvous, each collective) before failing
    /// with an error naming the missing rank (PyTorch's default NCCL timeout is 600 s).
    #[arg(long, default_value_t = 600.0)]
    pub dist_timeout: f64,
}

/// What this process does in a data-parallel run.
pub enum Role {
    /// It launched the ranks, which have finished: exit with this code.
    Launched(ExitCode),
    /// It is a rank (the group is `None` for a single process).
    Rank(DistEnv, Option<Box<TcpGroup>>),
}

/// Launches the ranks (`--nproc-per-node`), or joins the group the torchrun environment
/// describes.
pub fn start(args: &LaunchArgs) -> deepsynth::Result<Role> {
    if !(args.dist_timeout > 0.0 && args.dist_timeout.is_finite()) {
        return Ok(Role::Launched(usage(format!(
            "--dist-timeout must be a positive number of seconds, got {}",
            args.dist_timeout
        ))));
    }
    let timeout = Duration::from_secs_f64(args.dist_timeout);
    let env = DistEnv::from_env().map_err(TrainError::from)?;
    if let Some(n) = args.nproc_per_node {
        if let Some(var) = TORCHRUN_VARS.iter().find(|v| std::env::var_os(v).is_some()) {
            return Ok(Role::Launched(usage(format!(
                "--nproc-per-node {n} was given but {var} is set: this process is rank {} of \
                 {} of a torchrun-style launch; leave out one of them",
                env.rank, env.world_size
            ))));
        }
        if n == 0 {
            return Ok(Role::Launched(usage("--nproc-per-node must be at least 1")));
        }
        return launch(n, args.master_port).map(Role::Launched);
    }
    let group = join_from_env(timeout).map_err(TrainError::from)?;
    Ok(Role::Rank(env, group.map(Box::new)))
}

/// The command line without the launcher's own options.
fn child_args() -> Vec<OsString> {
    let mut out = Vec::new();
    let mut args = dashed_flags(std::env::args_os()).into_iter().skip(1);
    while let Some(a) = args.next() {
        let s = a.to_string_lossy();
        if s == "--" {
            out.push(a);
            out.extend(args.by_ref());
            break;
        }
        if s == "--nproc-per-node" || s == "--master-port" {
            args.next();
            continue;
        }
        if s.starts_with("--nproc-per-node=") || s.starts_with("--master-port=") {
            continue;
        }
        out.push(a);
    }
    out
}

/// Copies `from` line by line to stdout or stderr with `prefix`.
fn relay(from: impl Read + Send + 'static, prefix: String, to_stderr: bool) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut r = BufReader::new(from);
        let mut line = Vec::new();
        while matches!(r.read_until(b'\n', &mut line), Ok(n) if n > 0) {
            if !line.ends_with(b"\n") {
                line.push(b'\n');
            }
            let mut out: Box<dyn Write> = if to_stderr {
                Box::new(std::io::stderr().lock())
            } else {
                Box::new(std::io::stdout().lock())
            };
            let _ = out.write_all(prefix.as_bytes());
            let _ = out.write_all(&line);
            line.clear();
        }
    })
}

fn launch(n: usize, port: Option<u16>) -> deepsynth::Result<ExitCode> {
    let io = |what: &'static str, e: std::io::Error| {
        deepsynth::Error::from(deepsynth::error::IoError::new(what, "deepsynth", e))
    };
    let port = match port {
        Some(p) => p,
        // As torchrun --standalone: a port the system says is free now.
        None => {
            deepsynth::train::distributed::free_port().map_err(|e| io("pick a free port", e))?
        }
    };
    let exe = std::env::current_exe().map_err(|e| io("find the running program", e))?;
    // The ranks share this machine's cores (torchrun sets OMP_NUM_THREADS=1 for the same
    // reason): each gets its share of the threads this process would use.
    let threads = (deepsynth::configure_threads() / n).max(1);
    let args = child_args();
    eprintln!("launching {n} ranks (rendezvous at 127.0.0.1:{port})");
    let mut children: Vec<Option<Child>> = Vec::with_capacity(n);
    let mut relays = Vec::new();
    for rank in 0..n {
        let mut cmd = Command::new(&exe);
        cmd.args(&args)
            .env("RANK", rank.to_string())
            .env("LOCAL_RANK", rank.to_string())
            .env("WORLD_SIZE", n.to_string())
            .env("LOCAL_WORLD_SIZE", n.to_string())
            .env("MASTER_ADDR", "127.0.0.1")
            .env("MASTER_PORT", port.to_string())
            .env("RAYON_NUM_THREADS", threads.to_string())
            .stdout(if rank == 0 {
                Stdio::inherit()
            } else {
                Stdio::piped()
            })
            .stderr(Stdio::piped());
        end_with_launcher(&mut cmd);
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                stop(&mut children);
                return Err(io("start a rank", e));
            }
        };
        eprintln!("rank {rank}: pid {}", child.id());
        let prefix = format!("[rank {rank}] ");
        if let Some(out) = child.stdout.take() {
            relays.push(relay(out, prefix.clone(), false));
        }
        if let Some(err) = child.stderr.take() {
            relays.push(relay(err, prefix, true));
        }
        children.push(Some(child));
    }
    let mut failed = wait(&mut children);
    for r in relays {
        let _ = r.join();
    }
    if failed.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    // Causes first, then the ranks that stopped because of them (a stable sort keeps the
    // order in which they were seen).
    failed.sort_by_key(|(_, s)| s.code() == Some(PEER_FAILED_STATUS as i32));
    let what: Vec<String> = failed
        .iter()
        .map(|(rank, status)| format!("rank {rank} failed ({status})"))
        .collect();
    eprintln!("error: {}", what.join(", then "));
    // The first cause's exit status (a rank killed by a signal: 1).
    let code = failed[0].1.code().filter(|c| (1..=255).contains(c));
    Ok(code.map_or(ExitCode::FAILURE, |c| ExitCode::from(c as u8)))
}

/// Waits for every rank; after the first failure, gives the others [`GRACE`] to end, then
/// kills them. Returns the ranks that failed, in the order they were seen.
fn wait(children: &mut [Option<Child>]) -> Vec<(usize, ExitStatus)> {
    let mut failed = Vec::new();
    let mut deadline = None;
    loop {
        let mut running = 0;
        for (rank, slot) in children.iter_mut().enumerate() {
            let Some(child) = slot else { continue };
            match child.try_wait() {
                Ok(Some(status)) => {
                    if !status.success() {
                        failed.push((rank, status));
                    }
                    *slot = None;
                }
                Ok(None) => running += 1,
                Err(_) => {
                    let _ = child.kill();
                    *slot = None;
                }
            }
        }
        if running == 0 {
            return failed;
        }
        if !failed.is_empty() {
            let at = *deadline.get_or_insert_with(|| std::time::Instant::now() + GRACE);
            if std::time::Instant::now() >= at {
                eprintln!(
                    "deepsynth: ranks still running {} s after a rank failed: killing them",
                    GRACE.as_secs()
                );
                stop(children);
                return failed;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Kills and reaps the ranks still running.
fn stop(children: &mut [Option<Child>]) {
    for slot in children.iter_mut() {
        if let Some(mut c) = slot.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Makes the rank die with the launcher (Linux: `PR_SET_PDEATHSIG`), so that killing the
/// launcher leaves no rank running on its own.
#[cfg(target_os = "linux")]
fn end_with_launcher(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the child between fork and exec and only calls prctl(2),
    // which is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Elsewhere the ranks outlive a launcher that is killed (they fail at their next collective
/// once rank 0 is gone, or finish).
#[cfg(not(target_os = "linux"))]
fn end_with_launcher(_: &mut Command) {}
