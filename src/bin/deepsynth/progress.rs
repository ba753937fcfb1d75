//! Progress on stderr: a redrawn bar on a terminal, whole lines (every 10%) otherwise, so logs
//! and notebooks get readable output.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::Instant;

/// Reports `done / total` for a named task.
pub struct Progress {
    label: &'static str,
    tty: bool,
    start: Instant,
    last_decile: Mutex<usize>,
}

impl Progress {
    pub fn new(label: &'static str) -> Self {
        Self {
            label,
            tty: std::io::stderr().is_terminal(),
            start: Instant::now(),
            last_decile: Mutex::new(0),
        }
    }

    pub fn update(&self, done: usize, total: usize) {
        let total = total.max(1);
        let secs = self.start.elapsed().as_secs_f64();
        let rate = done as f64 / secs.max(1e-9);
        let mut err = std::io::stderr().lock();
        if self.tty {
            let width = 30;
            let filled = done * width / total;
            let bar: String = "#".repeat(filled) + &"-".repeat(width - filled);
            let _ = write!(err, "\r{} [{bar}] {done}/{total} ({rate:.1}/s)", self.label);
            if done == total {
                let _ = writeln!(err);
            }
        } else {
            let decile = done * 10 / total;
            let Ok(mut last) = self.last_decile.lock() else {
                return;
            };
            if decile > *last || done == total {
                *last = decile;
                let _ = writeln!(
                    err,
                    "{}: {done}/{total} ({:.0}%, {rate:.1}/s, {secs:.1}s)",
                    self.label,
                    100.0 * done as f64 / total as f64
                );
            }
        }
    }
}
