//! Putting a list split across ranks back together: rank `r` holds items `r`, `r + N`, ...
//! (as [`super::shard`] splits an order); every rank's part is gathered and the list rebuilt
//! in its order, on every rank. Sharded evaluation and sharded `infer` use it.

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::Collective;
use crate::train::TrainError;

/// The `total` items of a list of which this rank holds `mine` (items `rank`, `rank + N`,
/// ...), in list order; `what` names the items in errors.
pub fn gather_strided<T: Serialize + DeserializeOwned>(
    group: &dyn Collective,
    mine: &[T],
    total: usize,
    what: &str,
) -> Result<Vec<T>, TrainError> {
    let bytes = serde_json::to_vec(mine)
        .map_err(|e| TrainError::Collective(format!("rank {}'s {what}: {e}", group.rank())))?;
    let parts = group
        .all_gather_bytes(&bytes)
        .map_err(|e| TrainError::Collective(e.to_string()))?;
    let mut per_rank = Vec::with_capacity(parts.len());
    for (r, p) in parts.iter().enumerate() {
        let v: Vec<T> = serde_json::from_slice(p)
            .map_err(|e| TrainError::Collective(format!("rank {r}'s {what}: {e}")))?;
        per_rank.push(v.into_iter());
    }
    let world = per_rank.len();
    (0..total)
        .map(|i| {
            per_rank[i % world].next().ok_or_else(|| {
                TrainError::Collective(format!(
                    "rank {} sent fewer {what} than it has items",
                    i % world
                ))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::train::distributed::InProcessGroup;

    /// Three ranks holding every third of seven items give back the seven in order; a rank
    /// that holds too few is named.
    #[test]
    fn gathers_in_list_order_and_names_a_short_rank() {
        let groups = InProcessGroup::new(3, Duration::from_secs(5));
        let items: Vec<String> = (0..7).map(|i| format!("item {i}")).collect();
        std::thread::scope(|s| {
            let jobs: Vec<_> = groups
                .iter()
                .map(|g| {
                    let items = &items;
                    s.spawn(move || {
                        let mine: Vec<String> =
                            items.iter().skip(g.rank()).step_by(3).cloned().collect();
                        gather_strided(g, &mine, 7, "lines").unwrap()
                    })
                })
                .collect();
            for j in jobs {
                assert_eq!(j.join().unwrap(), items);
            }
        });
        let groups = InProcessGroup::new(2, Duration::from_secs(5));
        let errs: Vec<String> = std::thread::scope(|s| {
            let jobs: Vec<_> = groups
                .iter()
                .map(|g| s.spawn(move || gather_strided(g, &[g.rank()], 4, "lines")))
                .collect();
            jobs.into_iter()
                .map(|j| j.join().unwrap().unwrap_err().to_string())
                .collect()
        });
        for e in errs {
            assert!(e.contains("rank 0 sent fewer lines"), "{e}");
        }
    }
}
