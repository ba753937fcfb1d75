//! The device a run computes on: `cpu`, `cuda`, `cuda:N` or `auto`.
//!
//! A run chooses its device once (`--device` on every command, [`crate::infer::LoadOptions`]'s
//! `device`, [`crate::train::bundled::Bundled::load_on`]) and every tensor it creates follows
//! the model's device: LoRA matrices, optimiser moments, NF4 codes and scales, pixel batches,
//! the KV cache. Checkpoints hold plain safetensors, so a run saved on one device resumes on
//! another.
//!
//! `auto` (the default) is the first CUDA GPU when the crate is built with the `cuda` feature
//! and one is present, else the CPU.
//!
//! ```
//! use deepsynth::device::DeviceSpec;
//! let spec: DeviceSpec = "cuda:1".parse()?;
//! assert_eq!(spec, DeviceSpec::Cuda(1));
//! assert_eq!(spec.to_string(), "cuda:1");
//! assert!(DeviceSpec::Cpu.resolve()?.is_cpu());
//! # Ok::<(), deepsynth::device::DeviceError>(())
//! ```

use std::fmt;
use std::str::FromStr;

use candle_core::Device;

/// Why a device could not be chosen.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeviceError {
    /// The name is not `auto`, `cpu`, `cuda` or `cuda:N`.
    #[error("unknown device `{0}` (auto, cpu, cuda, cuda:N)")]
    Parse(String),
    /// The device was named but cannot be used here.
    #[error("device `{spec}` is not available: {reason}")]
    Unavailable {
        /// The device asked for.
        spec: String,
        /// Why not (no `cuda` feature in this build, no GPU, a driver error).
        reason: String,
    },
}

/// A device choice, before it is opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum DeviceSpec {
    /// The first CUDA GPU when built with `cuda` and one is present, else the CPU.
    #[default]
    Auto,
    /// The CPU.
    Cpu,
    /// CUDA GPU number `N` (`cuda` is `cuda:0`).
    Cuda(usize),
}

impl FromStr for DeviceSpec {
    type Err = DeviceError;

    fn from_str(s: &str) -> Result<Self, DeviceError> {
        let t = s.trim().to_ascii_lowercase();
        match t.as_str() {
            "auto" | "" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "cuda" | "gpu" => Ok(Self::Cuda(0)),
            _ => t
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(Self::Cuda)
                .ok_or_else(|| DeviceError::Parse(s.to_string())),
        }
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl serde::Serialize for DeviceSpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for DeviceSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl DeviceSpec {
    /// Opens the device. `Auto` never fails: without a usable GPU it is the CPU.
    pub fn resolve(self) -> Result<Device, DeviceError> {
        match self {
            Self::Cpu => Ok(Device::Cpu),
            Self::Auto => Ok(first_gpu().unwrap_or(Device::Cpu)),
            Self::Cuda(n) => open_cuda(n).map_err(|reason| DeviceError::Unavailable {
                spec: self.to_string(),
                reason,
            }),
        }
    }
}

/// The device's name as [`DeviceSpec`] parses it: `cpu`, `cuda:N` (`metal:N` for Metal).
pub fn device_name(d: &Device) -> String {
    match d.location() {
        candle_core::DeviceLocation::Cpu => "cpu".into(),
        candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}

/// Whether this build can use CUDA at all (the `cuda` feature).
pub const fn cuda_built() -> bool {
    cfg!(feature = "cuda")
}

#[cfg(feature = "cuda")]
fn open_cuda(n: usize) -> Result<Device, String> {
    Device::new_cuda(n).map_err(|e| e.to_string())
}

#[cfg(not(feature = "cuda"))]
fn open_cuda(_: usize) -> Result<Device, String> {
    Err("this build has no CUDA support: build with `--features cuda`".into())
}

/// The first CUDA GPU, when the build has `cuda` and the driver finds one.
fn first_gpu() -> Option<Device> {
    if !cuda_built() {
        return None;
    }
    open_cuda(0).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_print_back() {
        for (s, d) in [
            ("auto", DeviceSpec::Auto),
            ("CPU", DeviceSpec::Cpu),
            ("cuda", DeviceSpec::Cuda(0)),
            ("cuda:3", DeviceSpec::Cuda(3)),
        ] {
            assert_eq!(s.parse::<DeviceSpec>().unwrap(), d, "{s}");
            assert_eq!(d.to_string().parse::<DeviceSpec>().unwrap(), d);
        }
        for bad in ["tpu", "cuda:", "cuda:x", "cuda:-1", "cpu:0"] {
            let e = bad.parse::<DeviceSpec>().unwrap_err();
            assert!(e.to_string().contains(bad), "{e}");
        }
        let j = serde_json::to_string(&DeviceSpec::Cuda(2)).unwrap();
        assert_eq!(j, "\"cuda:2\"");
        assert_eq!(
            serde_json::from_str::<DeviceSpec>(&j).unwrap(),
            DeviceSpec::Cuda(2)
        );
    }

    #[test]
    fn cpu_and_auto_resolve_without_a_gpu_build() {
        assert!(DeviceSpec::Cpu.resolve().unwrap().is_cpu());
        assert_eq!(device_name(&Device::Cpu), "cpu");
        if !cuda_built() {
            assert!(DeviceSpec::Auto.resolve().unwrap().is_cpu());
            let e = DeviceSpec::Cuda(1).resolve().unwrap_err();
            let msg = e.to_string();
            assert!(
                msg.contains("cuda:1") && msg.contains("--features cuda"),
                "{msg}"
            );
        }
    }
}
