//! Text tokenisation with a Hugging Face `tokenizer.json` (DeepSeek-OCR's is a
//! `LlamaTokenizerFast`), encoding without special tokens as the reference `text_encode` does.

use std::path::Path;

use super::DataError;

/// Anything that turns text into token ids and back.
pub trait TextCodec: Send + Sync {
    /// Ids of `text`, no special tokens added.
    fn encode(&self, text: &str) -> Result<Vec<u32>, DataError>;
    /// Text of `ids`, optionally dropping special tokens.
    fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String, DataError>;
    /// Vocabulary size including added tokens.
    fn vocab_size(&self) -> usize;
}

/// A `tokenizers` tokenizer.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tokenizer(vocab {})", self.vocab_size())
    }
}

impl Tokenizer {
    /// Loads `tokenizer.json`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, DataError> {
        let path = path.as_ref();
        let inner = tokenizers::Tokenizer::from_file(path).map_err(|e| DataError::Invalid {
            what: format!("tokenizer {}", path.display()),
            reason: e.to_string(),
        })?;
        Ok(Self { inner })
    }

    /// Parses a `tokenizer.json` held in memory.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DataError> {
        let inner = tokenizers::Tokenizer::from_bytes(bytes).map_err(|e| DataError::Invalid {
            what: "tokenizer".into(),
            reason: e.to_string(),
        })?;
        Ok(Self { inner })
    }

    /// Wraps an existing tokenizer.
    pub fn new(inner: tokenizers::Tokenizer) -> Self {
        Self { inner }
    }

    /// The id of a token string (e.g. `<image>`), if the vocabulary has it.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The wrapped tokenizer.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }
}

impl TextCodec for Tokenizer {
    fn encode(&self, text: &str) -> Result<Vec<u32>, DataError> {
        self.inner
            .encode(text, false)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| DataError::Invalid {
                what: "tokenize".into(),
                reason: e.to_string(),
            })
    }

    fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String, DataError> {
        self.inner
            .decode(ids, skip_special)
            .map_err(|e| DataError::Invalid {
                what: "detokenize".into(),
                reason: e.to_string(),
            })
    }

    fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }
}
