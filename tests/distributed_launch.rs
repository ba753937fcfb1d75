//! Data-parallel runs as separate processes on the CPU (`deepsynth train|infer
//! --nproc-per-node N` and the torchrun environment), on the tiny fixture model: the same LoRA
//! weights as one process with the global batch (bit for bit without accumulation, within
//! 1e-6 with it, clipping active), resuming with another number of ranks, the rendezvous
//! naming a missing rank, a rank that dies named by the launcher with its checkpoint still
//! usable, and sharded inference writing one process's output.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use candle_core::{Device, Tensor};

#[path = "common/tiny_cli.rs"]
mod tiny_cli;

/// [`tiny_cli::TINY_TRAIN`] without its batch size and accumulation (each test sets them).
fn tiny_train() -> Vec<&'static str> {
    let mut v = tiny_cli::TINY_TRAIN.to_vec();
    for flag in ["--batch-size", "--gradient-accumulation-steps"] {
        let i = v.iter().position(|a| *a == flag).unwrap();
        v.drain(i..i + 2);
    }
    v
}

/// `deepsynth train` on four training examples (one held out), micro-batches of one example,
/// clipping at 0.01 (the gradient norms are near 3, so it always acts), evaluation and a
/// checkpoint every 2 steps, 2 epochs, no dropout (each rank draws its own masks, so a
/// multi-rank run cannot repeat one process's), a 60 s timeout (those four unless `extra`
/// sets them).
fn train(data: &Path, out: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_deepsynth"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(tiny_train())
        .args(["--batch-size", "1", "--eval-fraction", "0.2"])
        .args(["--lora-rank", "4"])
        .args(["--learning-rate", "0.005", "--max-grad-norm", "0.01"])
        .arg("--dataset")
        .arg(data)
        .arg("--output-dir")
        .arg(out)
        .args(extra)
        // Defaults that `extra` may replace.
        .args(
            [
                ("--epochs", "2"),
                ("--eval-steps", "2"),
                ("--dist-timeout", "60"),
                ("--lora-dropout", "0"),
            ]
            .into_iter()
            .filter(|(flag, _)| !extra.contains(flag))
            .flat_map(|(flag, value)| [flag, value]),
        )
        // A test run must not see a torchrun environment of its own.
        .env_remove("RANK")
        .env_remove("WORLD_SIZE")
        .env_remove("MASTER_ADDR")
        .env_remove("MASTER_PORT")
        .env_remove("LOCAL_RANK")
        .env_remove("LOCAL_WORLD_SIZE");
    c
}

fn ok(mut c: Command) -> Output {
    let o = c.output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    o
}

fn adapter(dir: &Path) -> Vec<(String, Vec<f32>)> {
    let mut t: Vec<(String, Tensor)> =
        candle_core::safetensors::load(dir.join("adapter_model.safetensors"), &Device::Cpu)
            .unwrap()
            .into_iter()
            .collect();
    t.sort_by(|a, b| a.0.cmp(&b.0));
    t.into_iter()
        .map(|(k, v)| (k, v.flatten_all().unwrap().to_vec1::<f32>().unwrap()))
        .collect()
}

fn bytes(dir: &Path, file: &str) -> Vec<u8> {
    std::fs::read(dir.join(file)).unwrap()
}

fn outcome(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("outcome.json")).unwrap()).unwrap()
}

/// The gradient norms a run logged (before clipping).
fn grad_norms(o: &Output) -> Vec<f64> {
    String::from_utf8_lossy(&o.stderr)
        .lines()
        .filter_map(|l| l.split("grad_norm ").nth(1))
        .map(|v| v.split_whitespace().next().unwrap().parse().unwrap())
        .collect()
}

struct Runs {
    _tmp: tempfile::TempDir,
    data: PathBuf,
    root: PathBuf,
}

impl Runs {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let data = tiny_cli::dataset(tmp.path());
        let root = tmp.path().to_path_buf();
        Self {
            _tmp: tmp,
            data,
            root,
        }
    }

    fn run(&self, name: &str, extra: &[&str]) -> (PathBuf, Output) {
        let out = self.root.join(name);
        let o = ok(train(&self.data, &out, extra));
        (out, o)
    }
}

#[test]
fn two_ranks_give_one_process_updates_and_resume_with_one_rank() {
    let r = Runs::new();
    let (one, o1) = r.run("one", &["--gradient-accumulation-steps", "2"]);
    let (two, o2) = r.run(
        "two",
        &[
            "--gradient-accumulation-steps",
            "1",
            "--nproc-per-node",
            "2",
        ],
    );
    assert!(grad_norms(&o1).len() == 4 && grad_norms(&o1).iter().all(|&n| n > 0.01));
    assert_eq!(grad_norms(&o1), grad_norms(&o2));
    assert!(String::from_utf8_lossy(&o2.stderr).contains("[rank 1] "));
    // One example per rank per step: the same sums in the same order, so the same bits.
    for ck in ["checkpoint-000002", "checkpoint-000004"] {
        for f in ["adapter_model.safetensors", "optimizer.safetensors"] {
            assert!(
                bytes(&one.join(ck), f) == bytes(&two.join(ck), f),
                "{ck}/{f} differs"
            );
        }
    }
    let (a, b) = (outcome(&one), outcome(&two));
    assert_eq!(a["train_losses"], b["train_losses"]);
    // Evaluation split across the ranks and gathered: the same summaries and metrics.
    assert_eq!(a["evals"], b["evals"]);
    // The 2-rank checkpoint at step 2, continued by one process (accumulation 2 derived from
    // the checkpoint), ends where the uninterrupted runs did.
    let (resumed, o) = r.run(
        "resumed",
        &[
            "--resume-from-checkpoint",
            two.join("checkpoint-000002").to_str().unwrap(),
        ],
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("x accumulation 2)"));
    let f = "adapter_model.safetensors";
    assert!(
        bytes(&resumed.join("checkpoint-000004"), f) == bytes(&one.join("checkpoint-000004"), f)
    );
    assert_eq!(outcome(&resumed)["train_losses"], a["train_losses"]);
    // And the 1-process checkpoint continued by 2 ranks.
    let (resumed2, _) = r.run(
        "resumed2",
        &[
            "--nproc-per-node",
            "2",
            "--resume-from-checkpoint",
            one.join("checkpoint-000002").to_str().unwrap(),
        ],
    );
    assert!(
        bytes(&resumed2.join("checkpoint-000004"), f) == bytes(&one.join("checkpoint-000004"), f)
    );
}

/// The `dropout_rngs` of a checkpoint's run state.
fn dropout_rngs(dir: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(dir.join("trainer_state.json")).unwrap();
    let state: serde_json::Value = serde_json::from_str(&text).unwrap();
    state["extra"]["dropout_rngs"].as_array().unwrap().clone()
}

/// With LoRA dropout 0.1, each of 2 ranks draws from its own generator, the checkpoint keeps
/// both, and the run resumed from its step-2 checkpoint ends on the bytes of the uninterrupted
/// run; resumed by one process instead, the generator is re-seeded from the seed and the
/// step, the same way each time.
#[test]
fn dropout_generators_resume_on_every_rank() {
    let r = Runs::new();
    let two = [
        "--gradient-accumulation-steps",
        "1",
        "--nproc-per-node",
        "2",
        "--lora-dropout",
        "0.1",
    ];
    let (full, _) = r.run("full", &two);
    let (plain, _) = r.run("plain", &two[..4]);
    let ck2 = full.join("checkpoint-000002");
    let rngs = dropout_rngs(&ck2);
    assert_eq!(rngs.len(), 2);
    assert_ne!(rngs[0], rngs[1], "the ranks draw different masks");
    let f = "adapter_model.safetensors";
    let last = "checkpoint-000004";
    assert!(
        bytes(&full.join(last), f) != bytes(&plain.join(last), f),
        "dropout changed the updates"
    );
    let resume = ["--resume-from-checkpoint", ck2.to_str().unwrap()];
    let (resumed, _) = r.run("resumed", &[&two[..], &resume].concat());
    for file in [f, "optimizer.safetensors"] {
        assert!(
            bytes(&resumed.join(last), file) == bytes(&full.join(last), file),
            "{file} differs"
        );
    }
    assert_eq!(
        dropout_rngs(&resumed.join(last)),
        dropout_rngs(&full.join(last))
    );
    // Another world size: re-seeded from seed and step, deterministically.
    let one = [&["--lora-dropout", "0.1"][..], &resume].concat();
    let (a, o) = r.run("one_a", &one);
    let (b, _) = r.run("one_b", &one);
    assert!(String::from_utf8_lossy(&o.stderr).contains("dropout generators re-seeded"));
    assert!(bytes(&a.join(last), f) == bytes(&b.join(last), f));
    assert!(bytes(&a.join(last), f) != bytes(&full.join(last), f));
}

/// Five training examples (the held-out set given apart) over 2 ranks, not a multiple: no
/// example is repeated (rank 1 joins each epoch's third step with nothing), so 2 ranks give
/// one process's bytes with accumulation 2 at every checkpoint, and each world size resumes the
/// other's mid-epoch checkpoint (step 4) to the same end.
#[test]
fn an_uneven_training_set_has_one_order_for_every_world_size() {
    let r = Runs::new();
    let eval = [
        "--eval-dataset",
        r.data.to_str().unwrap(),
        "--save-total-limit",
        "5",
    ];
    let ranks = |n: &'static str, accum: &'static str| {
        [
            &eval[..],
            &[
                "--nproc-per-node",
                n,
                "--gradient-accumulation-steps",
                accum,
            ],
        ]
        .concat()
    };
    let (one, o1) = r.run("one", &ranks("1", "2"));
    let (two, _) = r.run("two", &ranks("2", "1"));
    // Three steps per epoch of five examples: checkpoints at 2, 4 and 6.
    assert_eq!(grad_norms(&o1).len(), 6);
    let f = "adapter_model.safetensors";
    for ck in [
        "checkpoint-000002",
        "checkpoint-000004",
        "checkpoint-000006",
    ] {
        for file in [f, "optimizer.safetensors"] {
            assert!(
                bytes(&one.join(ck), file) == bytes(&two.join(ck), file),
                "{ck}/{file} differs"
            );
        }
    }
    assert_eq!(outcome(&one)["train_losses"], outcome(&two)["train_losses"]);
    let last = "checkpoint-000006";
    for (name, from, n, accum) in [("to_two", &one, "2", "1"), ("to_one", &two, "1", "2")] {
        let ck = from.join("checkpoint-000004");
        let resume = ["--resume-from-checkpoint", ck.to_str().unwrap()];
        let (resumed, _) = r.run(name, &[&ranks(n, accum)[..], &resume].concat());
        assert!(
            bytes(&resumed.join(last), f) == bytes(&one.join(last), f),
            "{name}: the adapter differs"
        );
    }
}

#[test]
fn two_ranks_with_accumulation_match_within_1e_6() {
    let r = Runs::new();
    // One step per epoch of all four examples: 1 process x 4 micro-batches, 2 ranks x 2.
    let (one, o1) = r.run("one", &["--gradient-accumulation-steps", "4"]);
    let (two, _) = r.run(
        "two",
        &[
            "--gradient-accumulation-steps",
            "2",
            "--nproc-per-node",
            "2",
        ],
    );
    assert!(grad_norms(&o1).iter().all(|&n| n > 0.01));
    let (a, b) = (
        adapter(&one.join("checkpoint-000002")),
        adapter(&two.join("checkpoint-000002")),
    );
    let start = adapter(&one.join("checkpoint-000002"))
        .iter()
        .all(|(_, v)| v.iter().all(|&x| x == 0.0));
    assert!(!start, "the adapter trained");
    assert_eq!(a.len(), b.len());
    let mut worst = 0f32;
    for ((ka, va), (kb, vb)) in a.iter().zip(&b) {
        assert_eq!(ka, kb);
        for (x, y) in va.iter().zip(vb) {
            worst = worst.max((x - y).abs());
        }
    }
    // The ranks sum (g0 + g2) + (g1 + g3) where one process sums ((g0 + g1) + g2) + g3.
    assert!(worst <= 1e-6, "largest difference {worst:e}");
}

#[test]
fn a_missing_rank_is_named_within_the_timeout() {
    let r = Runs::new();
    let port = deepsynth::train::distributed::free_port().unwrap();
    let start = Instant::now();
    let mut c = train(&r.data, &r.root.join("run"), &["--dist-timeout", "1"]);
    c.envs([
        ("RANK", "0"),
        ("WORLD_SIZE", "3"),
        ("MASTER_ADDR", "127.0.0.1"),
        ("MASTER_PORT", &port.to_string()),
    ]);
    let o = c.output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains(&format!(
            "error: rank 0: rank(s) [1, 2] did not join the rendezvous at 127.0.0.1:{port} within 1.0 s"
        )),
        "{err}"
    );
    assert!(start.elapsed() < Duration::from_secs(30));
    // A bad torchrun variable is named; --nproc-per-node inside a torchrun rank is refused.
    let mut c = train(&r.data, &r.root.join("run"), &[]);
    c.envs([("RANK", "2"), ("WORLD_SIZE", "2")]);
    let err = String::from_utf8_lossy(&c.output().unwrap().stderr).into_owned();
    assert!(
        err.contains("torchrun environment: RANK=`2`: must be below WORLD_SIZE (2)"),
        "{err}"
    );
    let mut c = train(&r.data, &r.root.join("run"), &["--nproc-per-node", "2"]);
    c.envs([("RANK", "0"), ("WORLD_SIZE", "1")]);
    let o = c.output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("--nproc-per-node 2 was given but RANK is set")
    );
}

#[test]
fn a_rank_that_dies_is_named_and_the_checkpoint_stays_usable() {
    let r = Runs::new();
    let out = r.root.join("dies");
    let start = Instant::now();
    let mut c = train(
        &r.data,
        &out,
        &[
            "--gradient-accumulation-steps",
            "1",
            "--save-steps",
            "1",
            "--nproc-per-node",
            "2",
        ],
    );
    c.env("DEEPSYNTH_TEST_DIE_AT_STEP", "1:3");
    let o = c.output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(86), "{err}");
    assert!(
        err.contains("error: rank 1 failed (exit status: 86)"),
        "{err}"
    );
    assert!(err.contains("lost rank 1"), "{err}");
    assert!(start.elapsed() < Duration::from_secs(60));
    // The last checkpoint rank 0 wrote (step 2; step 3 never ran) continues the run.
    let last = out.join("checkpoint-000002");
    assert!(!out.join("checkpoint-000003").exists());
    let (one, _) = r.run("one", &["--gradient-accumulation-steps", "2"]);
    let (resumed, _) = r.run(
        "resumed",
        &["--resume-from-checkpoint", last.to_str().unwrap()],
    );
    let f = "adapter_model.safetensors";
    assert!(
        bytes(&resumed.join("checkpoint-000004"), f) == bytes(&one.join("checkpoint-000004"), f)
    );
}

/// The output lines without wall-clock measurements.
fn without_timings(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            let r = v["result"].as_object_mut().unwrap();
            assert!(r.remove("timings").is_some() && r.remove("tokens_per_s").is_some());
            v
        })
        .collect()
}

#[test]
fn sharded_inference_writes_one_process_output() {
    let r = Runs::new();
    let infer = |extra: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_deepsynth"));
        c.current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(["infer", "--model", "tests/fixtures/deepseek-ocr-tiny"])
            .args([
                "--tokenizer",
                "tests/fixtures/tiny-char-tokenizer/tokenizer.json",
            ])
            .args(["--mode", "tiny", "--render-preset", "tiny", "--offline"])
            .args(["--max-new-tokens", "4", "--input"])
            .arg(&r.data)
            .args(extra)
            .env_remove("RANK")
            .env_remove("WORLD_SIZE");
        ok(c)
    };
    let file = |name: &str| r.root.join(name).to_str().unwrap().to_string();
    infer(&["--out", &file("one.jsonl")]);
    infer(&["--out", &file("two.jsonl"), "--nproc-per-node", "2"]);
    // Three ranks over five inputs (uneven shards), merged on standard output.
    let three = infer(&["--nproc-per-node", "3"]);
    let one = std::fs::read_to_string(file("one.jsonl")).unwrap();
    let want = without_timings(&one);
    assert_eq!(want.len(), 5);
    let ids: Vec<&str> = want.iter().map(|v| v["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["n0", "n1", "n2", "n3", "n4"]);
    let two = std::fs::read_to_string(file("two.jsonl")).unwrap();
    assert_eq!(without_timings(&two), want);
    assert_eq!(
        without_timings(&String::from_utf8_lossy(&three.stdout)),
        want
    );
}

#[test]
fn rank_0_lists_the_examples_every_rank_skipped() {
    let r = Runs::new();
    // The five short items and four whose summary does not fit in 200 positions.
    let mut text = std::fs::read_to_string(&r.data).unwrap();
    for i in 5..9 {
        let row = serde_json::json!({"id": format!("long{i}"), "text": "Long one.",
            "summary": "word ".repeat(80)});
        text.push_str(&format!("{row}\n"));
    }
    let data = r.root.join("with_long.jsonl");
    std::fs::write(&data, text).unwrap();
    let run = |name: &str, extra: &[&str]| {
        let out = r.root.join(name);
        let mut c = train(&data, &out, extra);
        c.args(["--max-seq-length", "200"])
            .arg("--eval-dataset")
            .arg(&r.data);
        (out, ok(c))
    };
    let (one, _) = run("one", &["--gradient-accumulation-steps", "2"]);
    let (two, o) = run(
        "two",
        &[
            "--gradient-accumulation-steps",
            "1",
            "--nproc-per-node",
            "2",
        ],
    );
    let ids = |dir: &Path| {
        let mut v: Vec<String> = std::fs::read_to_string(dir.join("skipped.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["id"].to_string())
            .collect();
        v.sort();
        v
    };
    assert_eq!(ids(&one).len(), 4);
    assert_eq!(ids(&two), ids(&one));
    // Rank 0 met only some of them itself.
    let met = String::from_utf8_lossy(&o.stderr)
        .matches("[rank 0] skipped training example")
        .count();
    assert!(met < 4, "{met}");
    let (a, b) = (outcome(&one), outcome(&two));
    assert_eq!(a["examples"]["skipped"].as_array().unwrap().len(), 4);
    assert_eq!(
        b["examples"]["skipped"].as_array().unwrap().len(),
        4,
        "{}",
        b["examples"]
    );
}

/// Whether process `pid` is gone (or a zombie waiting for a reaper).
fn ended(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
    }
}

#[cfg(target_os = "linux")]
#[test]
fn killing_the_launcher_ends_the_ranks() {
    use std::io::{BufRead, BufReader};
    let r = Runs::new();
    // Long enough to be running when the launcher is killed, and silent (a rank writing to
    // the launcher's closed pipe would fail on its own): no step lines, a checkpoint per step.
    let out = r.root.join("long");
    let mut c = train(
        &r.data,
        &out,
        &[
            "--gradient-accumulation-steps",
            "1",
            "--epochs",
            "1000",
            "--eval-steps",
            "0",
            "--save-steps",
            "1",
            "--save-total-limit",
            "1",
            "--logging-steps",
            "1000000",
            "--nproc-per-node",
            "2",
        ],
    );
    let mut launcher = c.stderr(std::process::Stdio::piped()).spawn().unwrap();
    let lines = BufReader::new(launcher.stderr.take().unwrap()).lines();
    let mut pids = Vec::new();
    for line in lines {
        if let Some(pid) = line.unwrap().split(": pid ").nth(1) {
            pids.push(pid.trim().parse::<u32>().unwrap());
        }
        if pids.len() == 2 {
            break;
        }
    }
    let start = Instant::now();
    let training = || {
        std::fs::read_dir(&out).is_ok_and(|d| {
            d.filter_map(Result::ok)
                .any(|e| e.file_name().to_string_lossy().starts_with("checkpoint-"))
        })
    };
    while !training() {
        assert!(start.elapsed() < Duration::from_secs(60), "no checkpoint");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(pids.len(), 2);
    assert!(pids.iter().all(|&p| !ended(p)), "the ranks are running");
    launcher.kill().unwrap();
    launcher.wait().unwrap();
    let start = Instant::now();
    while !pids.iter().all(|&p| ended(p)) {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "ranks {pids:?} outlived the launcher"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
