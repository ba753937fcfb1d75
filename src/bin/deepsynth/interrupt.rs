//! Ctrl-C during a run that reports to MLflow: the first one stops the training loop at its
//! next logged value, so the MLflow run can be marked `KILLED` and what is waiting sent; a
//! second one ends the program at once (the handler is installed with `SA_RESETHAND`).

use std::sync::atomic::{AtomicBool, Ordering};

use deepsynth::track::{TrackError, Tracker};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
    const MSG: &[u8] =
        b"\ninterrupted: stopping after the current step (Ctrl-C again to quit at once)\n";
    // SAFETY: write(2) is async-signal-safe; the buffer is static.
    unsafe {
        libc::write(2, MSG.as_ptr().cast(), MSG.len());
    }
}

/// Installs the SIGINT handler (once is enough; later calls reinstall it).
pub fn install() {
    // SAFETY: a plain sigaction with a handler that only stores an atomic and calls write(2).
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_sigint as extern "C" fn(libc::c_int) as libc::sighandler_t;
        action.sa_flags = libc::SA_RESETHAND;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(libc::SIGINT, &action, std::ptr::null_mut());
    }
}

/// A tracker that fails with [`TrackError::Interrupted`] once Ctrl-C was pressed.
pub struct Stop;

impl Stop {
    fn check() -> Result<(), TrackError> {
        if INTERRUPTED.load(Ordering::SeqCst) {
            Err(TrackError::Interrupted)
        } else {
            Ok(())
        }
    }
}

impl Tracker for Stop {
    fn scalar(&mut self, _: &str, _: u64, _: f64) -> Result<(), TrackError> {
        Self::check()
    }

    fn image(
        &mut self,
        _: &str,
        _: u64,
        _: &[u8],
        _: u32,
        _: u32,
        _: u32,
    ) -> Result<(), TrackError> {
        Self::check()
    }
}
