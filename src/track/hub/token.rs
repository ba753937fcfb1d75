//! The Hugging Face token, looked up as `huggingface_hub` does: `HF_TOKEN`, else the file at
//! `HF_TOKEN_PATH`, else `$HF_HOME/token`, else `~/.cache/huggingface/token`.

use std::path::PathBuf;

use super::HubError;

/// A Hub access token. Its `Debug` and `Display` never show it; only [`Token::bearer`] does,
/// for the `Authorization` header.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// A token from its text (surrounding whitespace removed).
    pub fn new(text: &str) -> Self {
        Self(text.trim().to_string())
    }

    /// The `Authorization` header value.
    pub(crate) fn bearer(&self) -> String {
        format!("Bearer {}", self.0)
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<hidden>)")
    }
}

impl std::fmt::Display for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<hidden token>")
    }
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// The token files to look at, in order: `HF_TOKEN_PATH`, else `$HF_HOME/token`, else
/// `~/.cache/huggingface/token` (`huggingface_hub` looks at one of them only, the first that
/// is configured; so does this).
fn token_file() -> Option<PathBuf> {
    if let Some(p) = var("HF_TOKEN_PATH") {
        return Some(PathBuf::from(p));
    }
    if let Some(home) = var("HF_HOME") {
        return Some(PathBuf::from(home).join("token"));
    }
    let home = var("HOME")?;
    Some(PathBuf::from(home).join(".cache/huggingface/token"))
}

/// The token: `HF_TOKEN`, else the first line of the token file (see [`token_file`]).
/// [`HubError::NoToken`] names where it looked.
pub fn find_token() -> Result<Token, HubError> {
    if let Some(t) = var("HF_TOKEN") {
        return Ok(Token::new(&t));
    }
    let file = token_file();
    if let Some(text) = file.as_ref().and_then(|p| std::fs::read_to_string(p).ok()) {
        if let Some(line) = text.lines().map(str::trim).find(|l| !l.is_empty()) {
            return Ok(Token::new(line));
        }
    }
    Err(HubError::NoToken {
        looked: file.map_or("no token file (HOME is not set)".into(), |p| {
            p.display().to_string()
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_is_hidden_from_debug_and_display() {
        let t = Token::new(" hf_secret123 \n");
        assert_eq!(format!("{t:?} {t}"), "Token(<hidden>) <hidden token>");
        assert_eq!(t.bearer(), "Bearer hf_secret123");
    }
}
