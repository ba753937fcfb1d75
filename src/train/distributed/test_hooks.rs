//! Test-only failure injection for the multi-process tests: `DEEPSYNTH_TEST_DIE_AT_STEP=R:S`
//! makes rank `R` of a data-parallel run exit (status [`DIE_STATUS`]) just before it starts
//! optimiser step `S`, as a crashed rank would. Not for production use.

use super::DistError;

/// The variable.
pub const DIE_AT_STEP: &str = "DEEPSYNTH_TEST_DIE_AT_STEP";

/// The exit status of a rank stopped by [`DIE_AT_STEP`].
pub const DIE_STATUS: i32 = 86;

/// `(rank, step)` from [`DIE_AT_STEP`], if it is set; a malformed value is an error naming it.
pub fn die_at_step() -> Result<Option<(usize, u64)>, DistError> {
    let Ok(v) = std::env::var(DIE_AT_STEP) else {
        return Ok(None);
    };
    parse(&v).map(Some).ok_or(DistError::Env {
        var: DIE_AT_STEP,
        value: v,
        reason: "expected RANK:STEP (test-only)".into(),
    })
}

fn parse(v: &str) -> Option<(usize, u64)> {
    let (r, s) = v.split_once(':')?;
    Some((r.trim().parse().ok()?, s.trim().parse().ok()?))
}

/// Ends the process when `plan` says `rank` dies before `step`.
pub fn maybe_die(plan: Option<(usize, u64)>, rank: usize, step: u64) {
    if plan == Some((rank, step)) {
        eprintln!("rank {rank}: exiting before step {step} ({DIE_AT_STEP}, test-only)");
        std::process::exit(DIE_STATUS);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_rank_and_step() {
        assert_eq!(super::parse("1:2"), Some((1, 2)));
        assert_eq!(super::parse("1"), None);
        assert_eq!(super::parse("a:2"), None);
    }
}
