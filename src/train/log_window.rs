//! Hugging Face's `logging_steps` ([`RunConfig::logging_steps`](super::RunConfig)): the
//! training loss is tracked every `n` optimiser steps as the mean over the steps since the
//! last log, with the learning rate and gradient norm of the logged step. The window is saved
//! with every checkpoint, so a resumed run logs the same values as an uninterrupted one.

use serde::{Deserialize, Serialize};

/// One logged point: the step, the mean loss since the last log, the step's learning rate and
/// gradient norm, and how many steps the mean covers.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct LoggedStep {
    pub step: u64,
    pub loss: f64,
    pub lr: f64,
    pub grad_norm: f64,
    pub steps: u64,
}

/// The steps not logged yet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct LossWindow {
    sum: f64,
    steps: u64,
    last_step: u64,
    last_lr: f64,
    last_grad_norm: f64,
}

impl LossWindow {
    /// Adds step `step`; returns the point to log when `step` is a multiple of `every` (and
    /// empties the window).
    pub fn push(
        &mut self,
        step: u64,
        loss: f64,
        lr: f64,
        grad_norm: f64,
        every: u64,
    ) -> Option<LoggedStep> {
        self.sum += loss;
        self.steps += 1;
        self.last_step = step;
        self.last_lr = lr;
        self.last_grad_norm = grad_norm;
        if every <= 1 || step % every == 0 {
            self.flush()
        } else {
            None
        }
    }

    /// The point for the steps not logged yet, if any (the run's last steps).
    pub fn flush(&mut self) -> Option<LoggedStep> {
        if self.steps == 0 {
            return None;
        }
        let p = LoggedStep {
            step: self.last_step,
            loss: self.sum / self.steps as f64,
            lr: self.last_lr,
            grad_norm: self.last_grad_norm,
            steps: self.steps,
        };
        *self = Self::default();
        Some(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_third_step_logs_the_mean_and_the_last_step_is_flushed() {
        let mut w = LossWindow::default();
        let losses = [3.0, 2.0, 1.0, 5.0, 4.0];
        let mut logged = vec![];
        for (i, l) in losses.iter().enumerate() {
            let step = i as u64 + 1;
            if let Some(p) = w.push(step, *l, 0.1 * step as f64, 10.0 + step as f64, 3) {
                logged.push(p);
            }
        }
        logged.extend(w.flush());
        assert_eq!(w.flush(), None);
        // Hand-computed: steps 1-3 mean 2.0 logged at 3; steps 4-5 mean 4.5 at 5.
        assert_eq!(
            logged,
            vec![
                LoggedStep {
                    step: 3,
                    loss: 2.0,
                    lr: 0.30000000000000004,
                    grad_norm: 13.0,
                    steps: 3
                },
                LoggedStep {
                    step: 5,
                    loss: 4.5,
                    lr: 0.5,
                    grad_norm: 15.0,
                    steps: 2
                },
            ]
        );
    }

    #[test]
    fn every_step_when_one() {
        let mut w = LossWindow::default();
        assert_eq!(w.push(1, 2.5, 0.1, 1.0, 1).map(|p| p.loss), Some(2.5));
        assert_eq!(w.push(2, 1.5, 0.1, 1.0, 0).map(|p| p.loss), Some(1.5));
        assert_eq!(w.flush(), None);
    }
}
