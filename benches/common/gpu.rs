//! GPU memory of a child process, polled from outside with `nvidia-smi` (the same measurement
//! for ours and for PyTorch, whatever each runtime's allocator reports of itself).

use std::process::{Child, Command};
use std::time::Duration;

use candle_core::{DType, Device};
use deepsynth::device::DeviceSpec;

/// `nvidia-smi`'s used memory of process `pid`, MiB (`None`: not listed, or no `nvidia-smi`).
fn used_mib(pid: u32) -> Option<f64> {
    let out = Command::new("nvidia-smi")
        .args([
            "--query-compute-apps=pid,used_memory",
            "--format=csv,noheader,nounits",
        ])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).lines().find_map(|l| {
        let mut it = l.split(',').map(str::trim);
        (it.next()?.parse::<u32>().ok()? == pid).then(|| it.next()?.parse().ok())?
    })
}

/// Waits for `child`, sampling its GPU memory every 50 ms: its output, the first sample (the
/// CUDA context before any model tensor, when the child pauses after opening the device) and
/// the peak, MiB.
pub fn wait_sampling(
    mut child: Child,
) -> (
    std::io::Result<std::process::Output>,
    Option<f64>,
    Option<f64>,
) {
    let pid = child.id();
    let (mut first, mut peak) = (None, None::<f64>);
    loop {
        match child.try_wait() {
            Ok(Some(_)) | Err(_) => break,
            Ok(None) => {}
        }
        if let Some(m) = used_mib(pid) {
            first.get_or_insert(m);
            peak = Some(peak.map_or(m, |p| p.max(m)));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    (child.wait_with_output(), first, peak)
}

/// `DEEPSYNTH_BENCH_DEVICE` (`cpu` when unset, or `cuda[:N]`), not opened: a parent process
/// that only spawns the measured children reads this and holds no CUDA context of its own. A
/// benchmark names its device: `auto` is refused.
pub fn bench_spec() -> DeviceSpec {
    let spec = std::env::var("DEEPSYNTH_BENCH_DEVICE")
        .unwrap_or_else(|_| "cpu".into())
        .parse::<DeviceSpec>()
        .expect("DEEPSYNTH_BENCH_DEVICE");
    assert!(
        spec != DeviceSpec::Auto,
        "DEEPSYNTH_BENCH_DEVICE: name the device (cpu or cuda:N), not auto"
    );
    spec
}

/// The device of [`bench_spec`], opened.
pub fn bench_device() -> Device {
    bench_spec().resolve().expect("the benchmark's device")
}

/// The compute dtype of `DEEPSYNTH_BENCH_DTYPE` (`f32` when unset, or `bf16`) and its name.
pub fn bench_dtype() -> (DType, String) {
    let name = std::env::var("DEEPSYNTH_BENCH_DTYPE").unwrap_or_else(|_| "f32".into());
    let dtype = match name.as_str() {
        "f32" => DType::F32,
        "bf16" => DType::BF16,
        other => panic!("DEEPSYNTH_BENCH_DTYPE {other}: f32 or bf16"),
    };
    (dtype, name)
}
