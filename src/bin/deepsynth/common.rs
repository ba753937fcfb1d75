//! Helpers shared by the subcommands: dtype names, which options were given on the command
//! line, and usage errors.

use std::process::ExitCode;

use candle_core::DType;
use clap::parser::ValueSource;
use clap::ArgMatches;

/// Parses a dtype name.
pub fn parse_dtype(name: &str) -> deepsynth::Result<DType> {
    match name {
        "f32" | "float32" => Ok(DType::F32),
        "bf16" | "bfloat16" => Ok(DType::BF16),
        "f16" | "float16" => Ok(DType::F16),
        other => Err(deepsynth::model::ModelError::Input {
            what: "--dtype".into(),
            reason: format!("unknown dtype `{other}` (f32, bf16, f16)"),
        }
        .into()),
    }
}

/// Which options of a subcommand were typed on the command line (not defaults).
#[derive(Clone, Copy, Default)]
pub struct Given<'a>(Option<&'a ArgMatches>);

impl<'a> Given<'a> {
    /// The options of `matches` (a subcommand's).
    pub fn new(matches: Option<&'a ArgMatches>) -> Self {
        Self(matches)
    }

    /// Whether the option with this id (the field name) was given.
    pub fn has(&self, id: &str) -> bool {
        self.0.is_some_and(|m| {
            m.try_get_raw(id).is_ok_and(|raw| raw.is_some())
                && matches!(
                    m.value_source(id),
                    Some(ValueSource::CommandLine) | Some(ValueSource::EnvVariable)
                )
        })
    }
}

/// The command line with the original plan's underscore spellings of long options
/// (`--max_seq_length 4096`, `--push_to_hub`) turned into their dashed names: the part of an
/// argument before `=` that starts with `--`, up to a lone `--`. Values are left as they are.
pub fn dashed_flags(args: impl IntoIterator<Item = std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let mut out = Vec::new();
    let mut options = true;
    for a in args {
        let Some(s) = a.to_str().filter(|s| options && s.starts_with("--")) else {
            out.push(a);
            continue;
        };
        if s == "--" {
            options = false;
            out.push(a);
            continue;
        }
        let (name, value) = s.split_once('=').map_or((s, None), |(n, v)| (n, Some(v)));
        let mut fixed = format!("--{}", name[2..].replace('_', "-"));
        if let Some(v) = value {
            fixed.push('=');
            fixed.push_str(v);
        }
        out.push(fixed.into());
    }
    out
}

/// Prints `error: {msg}` and returns the usage exit code (2).
pub fn usage(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::from(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn underscore_flags_become_dashed_and_values_stay() {
        let args = [
            "deepsynth",
            "train",
            "--max_seq_length",
            "4096",
            "--hub_model_id=me/my_model",
            "--prompt",
            "a_b",
            "--",
            "--not_a_flag",
        ];
        let got: Vec<String> = dashed_flags(args.iter().map(Into::into))
            .into_iter()
            .map(|s| s.into_string().unwrap())
            .collect();
        assert_eq!(
            got,
            [
                "deepsynth",
                "train",
                "--max-seq-length",
                "4096",
                "--hub-model-id=me/my_model",
                "--prompt",
                "a_b",
                "--",
                "--not_a_flag"
            ]
        );
    }
}

/// `--device`, shared by the commands that run a model.
#[derive(clap::Args, Clone, Debug)]
pub struct DeviceArg {
    /// Device: auto (the first CUDA GPU when built with `--features cuda` and one is present,
    /// else the CPU), cpu, cuda, cuda:N. Checkpoints do not depend on it: a run saved on one
    /// device resumes on another.
    #[arg(long, default_value = "auto")]
    pub device: deepsynth::device::DeviceSpec,
}

impl DeviceArg {
    /// Opens the device, saying which one was chosen when `auto` picked it.
    pub fn open(&self) -> deepsynth::Result<candle_core::Device> {
        let d = self.device.resolve()?;
        if self.device == deepsynth::device::DeviceSpec::Auto && !d.is_cpu() {
            eprintln!("device: {}", deepsynth::device::device_name(&d));
        }
        Ok(d)
    }
}
