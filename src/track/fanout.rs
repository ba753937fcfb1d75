//! One [`Tracker`] that writes to several: the run folder first, then services such as MLflow.

use super::{Saved, TrackError, Tracker};

/// Sends every call to each tracker in order. Every tracker gets every call even when an
/// earlier one fails; the first error is returned.
pub struct Fanout<'a> {
    trackers: Vec<&'a mut dyn Tracker>,
}

impl<'a> Fanout<'a> {
    /// The trackers, in the order they are written (put the run folder's first).
    pub fn new(trackers: Vec<&'a mut dyn Tracker>) -> Self {
        Self { trackers }
    }

    fn each(
        &mut self,
        mut f: impl FnMut(&mut dyn Tracker) -> Result<(), TrackError>,
    ) -> Result<(), TrackError> {
        let mut first = Ok(());
        for t in self.trackers.iter_mut() {
            let r = f(&mut **t);
            if first.is_ok() {
                first = r;
            }
        }
        first
    }
}

impl Tracker for Fanout<'_> {
    fn scalar(&mut self, tag: &str, step: u64, value: f64) -> Result<(), TrackError> {
        self.each(|t| t.scalar(tag, step, value))
    }

    fn image(
        &mut self,
        tag: &str,
        step: u64,
        png: &[u8],
        width: u32,
        height: u32,
        channels: u32,
    ) -> Result<(), TrackError> {
        self.each(|t| t.image(tag, step, png, width, height, channels))
    }

    fn finish(&mut self) -> Result<(), TrackError> {
        self.each(|t| t.finish())
    }

    fn saved(&mut self, what: Saved<'_>) -> Result<(), TrackError> {
        self.each(|t| t.saved(what))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Log(Vec<(String, u64, f64)>, bool);

    impl Tracker for Log {
        fn scalar(&mut self, tag: &str, step: u64, value: f64) -> Result<(), TrackError> {
            self.0.push((tag.into(), step, value));
            if self.1 {
                return Err(TrackError::Interrupted);
            }
            Ok(())
        }
    }

    #[test]
    fn every_tracker_gets_every_scalar_and_the_first_error_wins() {
        let (mut a, mut b) = (Log(vec![], true), Log::default());
        let err = Fanout::new(vec![&mut a, &mut b]).scalar("train/loss", 3, 0.5);
        assert!(matches!(err, Err(TrackError::Interrupted)));
        assert_eq!(a.0, b.0);
        assert_eq!(b.0, [("train/loss".to_string(), 3, 0.5)]);
    }
}
