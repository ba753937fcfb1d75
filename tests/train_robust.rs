//! Runs that stay right on awkward data (the review of issue 14): pages cached by content, not
//! by colliding ids; one byte budget with eviction; resumption that takes its settings from the
//! checkpoint and refuses contradictions; whole documents with the overflow policy and the
//! truncation counted; bad examples skipped, listed and limited; generation failures during
//! evaluation skipped; every evaluator metric able to drive early stopping; zero sizes refused.

#[path = "common/tiny.rs"]
mod tiny;

use std::path::Path;
use std::sync::Arc;

use deepsynth::data::OnOverflow;
use deepsynth::lora::LoraConfig;
use deepsynth::model::{CacheKind, Config, TensorCache};
use deepsynth::render::{Preset, RenderConfig, Renderer};
use deepsynth::track::Runs;
use deepsynth::train::{
    checkpoint_run_config, evaluate, watchable_metrics, BadExampleLimit, EarlyStopping, Example,
    Phase, RunConfig, RunOutcome, TrainConfig, TrainError, SKIPPED_FILE,
};
use tiny::{encoder, encoder_with, ex, examples, long_document, model, model_with, try_run};

fn config(steps: u64) -> RunConfig {
    tiny::run_config(steps, 1)
}

/// [`try_run`] on a fresh fixture model with the default encoder and adapter.
fn run_plain(
    train: &[Example],
    held: &[Example],
    cfg: &RunConfig,
    out: &Path,
) -> (Result<RunOutcome, TrainError>, Vec<String>) {
    try_run(
        &mut model(),
        &encoder(),
        train,
        held,
        cfg,
        &lora(),
        out,
        None,
    )
}

fn lora() -> LoraConfig {
    LoraConfig::new(4, 8.0)
}

/// Two datasets whose ids collide (both fall back to line numbers): each example is scored
/// against its own page. Keyed by id, the second file's evaluation read the first file's page.
#[test]
fn pages_are_cached_by_content_never_by_id() {
    let m = model();
    let enc = encoder();
    let a = ex("1", "The council approved the new park.", "Park approved.");
    let b = ex(
        "1",
        "Heavy rain closed two roads in the north.",
        "Rain closes roads.",
    );
    let pa = enc.page(&a).unwrap().global.flatten_all().unwrap();
    let pb = enc.page(&b).unwrap().global.flatten_all().unwrap();
    let diff: f32 = (pa - pb)
        .unwrap()
        .abs()
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar()
        .unwrap();
    assert!(diff > 0.0, "the second document got the first one's page");
    let g = RunConfig::new(TrainConfig::new(1e-3, 1)).generation;
    let shared_first = evaluate(&m, &enc, std::slice::from_ref(&a), &g).unwrap();
    let shared_second = evaluate(&m, &enc, std::slice::from_ref(&b), &g).unwrap();
    let alone = evaluate(&m, &encoder(), std::slice::from_ref(&b), &g).unwrap();
    assert_eq!(shared_second.metrics, alone.metrics);
    assert_eq!(shared_second.samples, alone.samples);
    assert_ne!(shared_first.metrics["loss"], shared_second.metrics["loss"]);
}

/// Pages and features share one budget; the least recently used go first.
#[test]
fn the_cache_keeps_to_its_budget() {
    let enc = encoder();
    let one_page = {
        enc.page(&ex("x", "A page to size the cache.", "s"))
            .unwrap();
        enc.cache().bytes()
    };
    assert!(one_page > 0);
    let cache = Arc::new(TensorCache::new(one_page * 2 + one_page / 2));
    let enc = encoder().with_cache(cache.clone());
    let (train, _) = examples();
    for e in &train {
        enc.page(e).unwrap();
    }
    assert!(cache.bytes() <= cache.budget());
    let st = cache.stats(CacheKind::Page);
    assert_eq!((st.entries, st.evictions), (2, 2));
    // The newest page is still there; the oldest was rendered again.
    enc.page(&train[3]).unwrap();
    assert_eq!(cache.stats(CacheKind::Page).hits, 1);
    enc.page(&train[0]).unwrap();
    assert_eq!(cache.stats(CacheKind::Page).misses, 5);
}

/// Resuming takes the adapter configuration and settings from the checkpoint and refuses
/// contradicting ones, naming both values.
#[test]
fn resume_uses_the_checkpoint_settings_and_refuses_contradictions() {
    let (train, held) = examples();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let mut cfg = config(4);
    cfg.epochs = 2;
    let (r, _) = run_plain(&train, &held, &cfg, &out);
    r.unwrap();
    let ckpt = out.join("checkpoint-000002");
    let (saved, saved_lora) = checkpoint_run_config(&ckpt).unwrap();
    assert_eq!(saved, cfg);
    assert_eq!((saved_lora.r, saved_lora.lora_alpha), (4, 8.0));
    // Another batch size and another rank: both named, nothing written.
    let mut other = cfg.clone();
    other.batch_size = 1;
    let out2 = tmp.path().join("resumed");
    let (r, _) = try_run(
        &mut model(),
        &encoder(),
        &train,
        &held,
        &other,
        &LoraConfig::new(16, 32.0),
        &out2,
        Some(&ckpt),
    );
    let e = r.unwrap_err().to_string();
    for part in [
        "batch_size: 1 (given) vs 2 (checkpoint)",
        "lora rank: 16 (given) vs 4 (checkpoint)",
    ] {
        assert!(e.contains(part), "{e}");
    }
    // Other training data.
    let mut fewer = train.clone();
    fewer.pop();
    let (r, _) = try_run(
        &mut model(),
        &encoder(),
        &fewer,
        &held,
        &cfg,
        &saved_lora,
        &out2,
        Some(&ckpt),
    );
    assert!(r.unwrap_err().to_string().contains("training data"));
    // With the checkpoint's own settings it resumes, and what it writes matches the tensors.
    let mut cont = saved.clone();
    cont.eval_every = 1;
    let (r, _) = try_run(
        &mut model(),
        &encoder(),
        &train,
        &held,
        &cont,
        &saved_lora,
        &out2,
        Some(&ckpt),
    );
    r.unwrap();
    let written = LoraConfig::from_file(out2.join("best/adapter_config.json")).unwrap();
    assert_eq!((written.r, written.lora_alpha), (4, 8.0));
}

/// A 5,000-word document does not fit on a Tiny page: truncated (and counted), skipped or an
/// error, as the policy says.
#[test]
fn long_documents_follow_the_overflow_policy_and_are_counted() {
    let (mut train, held) = examples();
    let doc = long_document(5000);
    let total = doc.chars().count();
    train.push(ex("long", &doc, "Long."));
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(3);
    let (r, lines) = run_plain(&train, &held, &cfg, &tmp.path().join("truncate"));
    let o = r.unwrap();
    assert_eq!(o.examples.truncated.len(), 1, "{lines:?}");
    let t = &o.examples.truncated[0];
    assert_eq!((t.id.as_str(), t.phase, t.index), ("long", Phase::Train, 4));
    assert!(t.shown.pages_needed > 1);
    assert!(t.shown.shown_chars > 500 && t.shown.shown_chars < total / 2);
    assert!(t.shown.shown_chars + t.shown.truncated_chars + 1 >= total);
    assert!(o.examples.skipped.is_empty());

    let enc = encoder().with_on_overflow(OnOverflow::Skip);
    let (r, _) = try_run(
        &mut model(),
        &enc,
        &train,
        &held,
        &cfg,
        &lora(),
        &tmp.path().join("skip"),
        None,
    );
    let o = r.unwrap();
    assert_eq!(o.examples.skipped.len(), 1);
    assert!(o.examples.skipped[0].reason.contains("pages"));

    let enc = encoder().with_on_overflow(OnOverflow::Error);
    let (r, _) = try_run(
        &mut model(),
        &enc,
        &train,
        &held,
        &cfg,
        &lora(),
        &tmp.path().join("error"),
        None,
    );
    assert!(matches!(r, Err(TrainError::Overflow { .. })), "{r:?}");
}

/// One of each kind of bad example is skipped, listed in `skipped.jsonl` and TensorBoard, and
/// the run finishes; past the limit it fails naming the list.
#[test]
fn bad_examples_are_skipped_listed_and_limited() {
    let (mut train, held) = examples();
    train.push(ex("empty", "  \n", "Nothing."));
    train.push(ex(
        "glyph",
        "Emoji \u{1F600} and Devanagari \u{0915}.",
        "Glyphs.",
    ));
    train.push(ex("nosummary", "A document without a summary.", ""));
    // 9,000 summary tokens: longer than the model's 8,192 positions.
    train.push(ex("huge", "A short document.", &"x".repeat(9000)));
    let strict = Renderer::new(RenderConfig::preset(Preset::Tiny).strict()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("bad");
    let cfg = config(4);
    let (r, lines) = try_run(
        &mut model(),
        &encoder_with(strict.clone()),
        &train,
        &held,
        &cfg,
        &lora(),
        &out,
        None,
    );
    let o = r.unwrap();
    let ids: Vec<&str> = o.examples.skipped.iter().map(|s| s.id.as_str()).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(sorted, ["empty", "glyph", "huge", "nosummary"], "{lines:?}");
    let reasons: Vec<&str> = o
        .examples
        .skipped
        .iter()
        .map(|s| s.reason.as_str())
        .collect();
    for want in ["empty", "U+0915", "max_position_embeddings", "summary"] {
        assert!(
            reasons.iter().any(|r| r.contains(want)),
            "{want}: {reasons:?}"
        );
    }
    let listed: Vec<serde_json::Value> = std::fs::read_to_string(out.join(SKIPPED_FILE))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(listed.len(), 4);
    assert!(listed.iter().all(|s| s["phase"] == "train"));
    let recs = Runs::records(&out).unwrap();
    let last = recs
        .iter()
        .filter(|(_, r)| r.tag == "train/skipped_examples")
        .map(|(_, r)| r.value)
        .fold(0.0, f64::max);
    assert_eq!(last, 4.0);
    // Each example is listed once, although the run meets it every epoch.
    let mut two = cfg.clone();
    two.epochs = 2;
    two.train.total_steps = 8;
    let (r, _) = try_run(
        &mut model(),
        &encoder_with(strict.clone()),
        &train,
        &held,
        &two,
        &lora(),
        &tmp.path().join("two"),
        None,
    );
    assert_eq!(r.unwrap().examples.skipped.len(), 4);
    // Three allowed, four met: the run fails and says where the list is.
    let mut limited = cfg.clone();
    limited.max_bad_examples = BadExampleLimit::Count(3);
    let (r, _) = try_run(
        &mut model(),
        &encoder_with(strict),
        &train,
        &held,
        &limited,
        &lora(),
        &tmp.path().join("limited"),
        None,
    );
    let e = r.unwrap_err();
    assert!(
        matches!(
            e,
            TrainError::TooManyBadExamples {
                count: 4,
                limit: 3,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains(SKIPPED_FILE));
}

/// Generation that fails on a held-out example (here: it runs past the model's positions)
/// skips that example in the evaluation instead of ending the run.
#[test]
fn generation_failures_during_evaluation_are_skipped() {
    let mut cfg = Config::tiny();
    // BOS + 21 image positions + "\nSum:" = 27 prompt positions; 6 new tokens need 32.
    cfg.decoder.max_position_embeddings = 30;
    let mut m = model_with(&cfg);
    let train = vec![
        ex("a", "The park was approved.", "ok"),
        ex("b", "Rain.", "no"),
    ];
    let held = vec![ex("h", "The library opens late.", "hi")];
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("gen");
    let (r, lines) = try_run(
        &mut m,
        &encoder(),
        &train,
        &held,
        &config(1),
        &lora(),
        &out,
        None,
    );
    let o = r.unwrap();
    assert_eq!(o.steps, 1);
    let s = &o.examples.skipped;
    assert_eq!(s.len(), 1, "{lines:?}");
    assert_eq!((s[0].phase, s[0].id.as_str()), (Phase::Eval, "h"));
    assert!(s[0].reason.contains("generation failed"), "{}", s[0].reason);
    assert_eq!(o.evals[0].skipped.len(), 1);
    assert!(o.evals[0].metrics.is_empty());
}

/// Every metric an evaluation reports can drive early stopping and `best/`.
#[test]
fn every_metric_can_drive_early_stopping() {
    let names = watchable_metrics();
    assert_eq!(
        names,
        [
            "loss",
            "rouge1",
            "rouge2",
            "rougeL",
            "rougeLsum",
            "bleu",
            "chrf",
            "wer",
            "cer"
        ]
    );
    assert_eq!(EarlyStopping::on("rougel", 2).unwrap().metric, "rougeL");
    assert_eq!(
        EarlyStopping::on("ROUGE-Lsum", 2).unwrap().metric,
        "rougeLsum"
    );
    assert!(!EarlyStopping::on("wer", 1).unwrap().higher_is_better);
    let e = EarlyStopping::on("meteor", 1).unwrap_err().to_string();
    assert!(
        e.contains("loss, rouge1, rouge2, rougeL, rougeLsum, bleu, chrf, wer, cer"),
        "{e}"
    );
    let (train, held) = examples();
    let tmp = tempfile::tempdir().unwrap();
    for metric in ["rougeLsum", "bleu", "chrf"] {
        let mut cfg = config(2);
        cfg.eval_every = 1;
        cfg.early_stopping = Some(EarlyStopping::on(metric, 5).unwrap());
        let out = tmp.path().join(metric);
        let (r, _) = run_plain(&train, &held, &cfg, &out);
        let o = r.unwrap();
        assert!(o.evals.iter().all(|e| e.metrics.contains_key(metric)));
        assert!(o.best.is_some(), "{metric}: no best");
        assert!(out.join("best/adapter_config.json").is_file(), "{metric}");
    }
}

/// Zero sizes are errors naming the setting, not silently replaced.
#[test]
fn zero_sizes_are_refused() {
    let (train, held) = examples();
    let tmp = tempfile::tempdir().unwrap();
    type Zero = fn(&mut RunConfig);
    let cases: [(&str, Zero); 4] = [
        ("batch_size", |c| c.batch_size = 0),
        ("keep_last", |c| c.keep_last = 0),
        ("grad_accum", |c| c.train.grad_accum = 0),
        ("max_eval_examples", |c| c.max_eval_examples = 0),
    ];
    for (name, f) in cases {
        let mut cfg = config(2);
        f(&mut cfg);
        let (r, _) = run_plain(&train, &held, &cfg, &tmp.path().join(name));
        let e = r.unwrap_err().to_string();
        assert!(e.contains(name) && e.contains("at least 1"), "{name}: {e}");
    }
}
