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

/// Prints `error: {msg}` and returns the usage exit code (2).
pub fn usage(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::from(2)
}
