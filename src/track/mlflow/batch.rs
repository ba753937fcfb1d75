//! What one `runs/log-batch` request may hold, and a run's settings as MLflow params.
//!
//! MLflow's documented request limits (REST API, "Log Batch"): at most 1000 metrics, 100 params
//! and 100 tags per request, and at most 1000 of them together; param values up to 6000
//! characters and keys up to 250.

use serde::Serialize;

/// Most metrics in one `log-batch` request.
pub const MAX_METRICS_PER_BATCH: usize = 1000;
/// Most params in one `log-batch` request.
pub const MAX_PARAMS_PER_BATCH: usize = 100;
/// Most tags in one `log-batch` request.
pub const MAX_TAGS_PER_BATCH: usize = 100;
/// Most metrics, params and tags together in one `log-batch` request.
pub const MAX_ENTITIES_PER_BATCH: usize = 1000;
/// Longest param value, in characters.
pub const MAX_PARAM_VALUE_CHARS: usize = 6000;
/// Longest param, metric or tag key, in characters.
pub const MAX_KEY_CHARS: usize = 250;

/// One metric value, as `log-batch` takes it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Metric {
    /// Name (e.g. `train/loss`).
    pub key: String,
    /// Value; NaN and infinities are sent as the strings protobuf's JSON mapping uses.
    #[serde(serialize_with = "proto_double")]
    pub value: f64,
    /// Milliseconds since the Unix epoch.
    pub timestamp: i64,
    /// Training step.
    pub step: i64,
}

/// A key and a string value: a param or a tag.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KeyValue {
    /// Key.
    pub key: String,
    /// Value.
    pub value: String,
}

impl KeyValue {
    /// A key and its value.
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            value: value.into(),
        }
    }
}

/// The body of one `log-batch` request (without the run id).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Batch {
    /// Metrics, in logging order.
    pub metrics: Vec<Metric>,
    /// Params.
    pub params: Vec<KeyValue>,
    /// Tags.
    pub tags: Vec<KeyValue>,
}

impl Batch {
    /// Metrics, params and tags together.
    pub fn len(&self) -> usize {
        self.metrics.len() + self.params.len() + self.tags.len()
    }

    /// Whether the batch holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn proto_double<S: serde::Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    if v.is_nan() {
        s.serialize_str("NaN")
    } else if v.is_infinite() {
        s.serialize_str(if *v > 0.0 { "Infinity" } else { "-Infinity" })
    } else {
        s.serialize_f64(*v)
    }
}

/// Splits metrics, params and tags into requests within MLflow's limits, keeping each kind in
/// order. Params and tags go first (the fewest requests: each request is filled up to the
/// total limit with metrics).
pub fn split_batches(metrics: &[Metric], params: &[KeyValue], tags: &[KeyValue]) -> Vec<Batch> {
    let (mut m, mut p, mut t) = (0, 0, 0);
    let mut out = Vec::new();
    while m < metrics.len() || p < params.len() || t < tags.len() {
        let np = (params.len() - p).min(MAX_PARAMS_PER_BATCH);
        let nt = (tags.len() - t).min(MAX_TAGS_PER_BATCH);
        let nm = (metrics.len() - m)
            .min(MAX_METRICS_PER_BATCH)
            .min(MAX_ENTITIES_PER_BATCH - np - nt);
        out.push(Batch {
            metrics: metrics[m..m + nm].to_vec(),
            params: params[p..p + np].to_vec(),
            tags: tags[t..t + nt].to_vec(),
        });
        (m, p, t) = (m + nm, p + np, t + nt);
    }
    out
}

/// The first `max` characters of `s` (whole characters), and whether anything was cut.
pub fn clip(s: &str, max: usize) -> (String, bool) {
    match s.char_indices().nth(max) {
        Some((i, _)) => (s[..i].to_string(), true),
        None => (s.to_string(), false),
    }
}

/// A JSON document (a run's settings) as MLflow params: nested object keys joined with `.`,
/// strings as they are, numbers, booleans and `null` as JSON text, arrays as JSON text. Keys
/// and values longer than MLflow takes are cut to its limits; the keys of those are returned
/// second.
pub fn flatten_params(prefix: &str, value: &serde_json::Value) -> (Vec<KeyValue>, Vec<String>) {
    let mut out = Vec::new();
    flatten_into(prefix, value, &mut out);
    let mut clipped = Vec::new();
    let params = out
        .into_iter()
        .map(|(k, v)| {
            let (key, cut_key) = clip(&k, MAX_KEY_CHARS);
            let (value, cut_value) = clip(&v, MAX_PARAM_VALUE_CHARS);
            if cut_key || cut_value {
                clipped.push(k);
            }
            KeyValue { key, value }
        })
        .collect();
    (params, clipped)
}

fn flatten_into(prefix: &str, value: &serde_json::Value, out: &mut Vec<(String, String)>) {
    use serde_json::Value;
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten_into(&key, v, out);
            }
        }
        Value::String(s) => out.push((prefix.to_string(), s.clone())),
        other => out.push((prefix.to_string(), other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics(n: usize) -> Vec<Metric> {
        (0..n)
            .map(|i| Metric {
                key: "train/loss".into(),
                value: i as f64,
                timestamp: 0,
                step: i as i64,
            })
            .collect()
    }

    fn kvs(prefix: &str, n: usize) -> Vec<KeyValue> {
        (0..n)
            .map(|i| KeyValue::new(format!("{prefix}{i}"), i.to_string()))
            .collect()
    }

    fn counts(batches: &[Batch]) -> Vec<(usize, usize, usize)> {
        batches
            .iter()
            .map(|b| (b.metrics.len(), b.params.len(), b.tags.len()))
            .collect()
    }

    #[test]
    fn batches_respect_mlflow_limits() {
        // 2500 metrics, 250 params, 30 tags. Request 1: 100 params + 30 tags leave 870 of
        // the 1000 entities for metrics; request 2: 100 params + 900 metrics; request 3: the
        // last 50 params + the remaining 2500 - 870 - 900 = 730 metrics.
        let (m, p, t) = (metrics(2500), kvs("p", 250), kvs("t", 30));
        let b = split_batches(&m, &p, &t);
        assert_eq!(counts(&b), [(870, 100, 30), (900, 100, 0), (730, 50, 0)]);
        // Every item once, each kind in order.
        let all: Vec<Metric> = b.iter().flat_map(|b| b.metrics.clone()).collect();
        assert_eq!(all, m);
        let all: Vec<KeyValue> = b.iter().flat_map(|b| b.params.clone()).collect();
        assert_eq!(all, p);
        // Metrics alone: 1000 per request. 2001 = 1000 + 1000 + 1.
        assert_eq!(
            counts(&split_batches(&metrics(2001), &[], &[])),
            [(1000, 0, 0), (1000, 0, 0), (1, 0, 0)]
        );
        // Tags past 100 and params past 100 in the same request: 100 + 100 + 800 metrics.
        assert_eq!(
            counts(&split_batches(
                &metrics(900),
                &kvs("p", 101),
                &kvs("t", 101)
            )),
            [(800, 100, 100), (100, 1, 1)]
        );
        assert!(split_batches(&[], &[], &[]).is_empty());
        for batch in &b {
            assert!(batch.len() <= MAX_ENTITIES_PER_BATCH);
        }
    }

    #[test]
    fn params_are_flattened_and_clipped() {
        let long = "é".repeat(MAX_PARAM_VALUE_CHARS + 5);
        let v = serde_json::json!({
            "run": {"lr": 2e-4, "targets": ["q_proj", "v_proj"], "stop": null, "name": "x"},
            "text": long,
            "empty": {},
        });
        let (params, clipped) = flatten_params("", &v);
        let get = |k: &str| params.iter().find(|p| p.key == k).map(|p| p.value.clone());
        assert_eq!(get("run.lr").as_deref(), Some("0.0002"));
        assert_eq!(
            get("run.targets").as_deref(),
            Some(r#"["q_proj","v_proj"]"#)
        );
        assert_eq!(get("run.stop").as_deref(), Some("null"));
        assert_eq!(get("run.name").as_deref(), Some("x"));
        assert_eq!(get("empty").as_deref(), Some("{}"));
        assert_eq!(get("text").unwrap().chars().count(), MAX_PARAM_VALUE_CHARS);
        assert_eq!(clipped, ["text"]);
    }

    #[test]
    fn non_finite_values_use_protobuf_json_names() {
        let m = |v: f64| {
            serde_json::to_value(Metric {
                key: "k".into(),
                value: v,
                timestamp: 1,
                step: 2,
            })
            .unwrap()["value"]
                .clone()
        };
        assert_eq!(m(f64::NAN), "NaN");
        assert_eq!(m(f64::INFINITY), "Infinity");
        assert_eq!(m(f64::NEG_INFINITY), "-Infinity");
        assert_eq!(m(0.25), 0.25);
    }
}
