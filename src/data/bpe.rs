//! Training a small byte-level BPE tokenizer (GPT-2 style: any UTF-8 text round-trips) on a
//! corpus, for models trained from scratch such as the bundled tiny DeepSeek-OCR.

use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::models::TrainerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::AddedToken;

use super::{DataError, Tokenizer};

/// The special tokens of a trained tokenizer, ids 0, 1, 2: BOS, EOS and the image position.
pub const BPE_SPECIALS: [&str; 3] = ["<s>", "</s>", "<image>"];

/// Trains a byte-level BPE of `vocab_size` ids (the 3 [`BPE_SPECIALS`] and the 256 byte
/// symbols included) on `texts`; merges need at least 2 occurrences. Deterministic for the
/// same texts in the same order.
pub fn train_bpe<'a>(
    texts: impl Iterator<Item = &'a str> + Send,
    vocab_size: usize,
) -> Result<Tokenizer, DataError> {
    let min = BPE_SPECIALS.len() + 256;
    if vocab_size < min {
        return Err(DataError::Invalid {
            what: "tokenizer vocabulary".into(),
            reason: format!("{vocab_size} ids; a byte-level BPE needs at least {min}"),
        });
    }
    let trainer = BpeTrainerBuilder::new()
        .vocab_size(vocab_size)
        .min_frequency(2)
        .show_progress(false)
        .special_tokens(
            BPE_SPECIALS
                .iter()
                .map(|t| AddedToken::from(*t, true))
                .collect(),
        )
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build();
    let mut tok = tokenizers::Tokenizer::new(BPE::default());
    tok.with_pre_tokenizer(Some(ByteLevel::default().add_prefix_space(false)));
    tok.with_decoder(Some(ByteLevel::default()));
    let mut trainer = TrainerWrapper::BpeTrainer(trainer);
    tok.train(&mut trainer, texts)
        .map_err(|e| DataError::Invalid {
            what: "tokenizer training".into(),
            reason: e.to_string(),
        })?;
    Ok(Tokenizer::new(tok))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::TextCodec;

    #[test]
    fn trained_bpe_round_trips_and_compresses() {
        let corpus: Vec<String> = (0..200)
            .map(|i| format!("A fast library for parsing number {i} in Rust. Ünïcödé ok — 日本"))
            .collect();
        let tok = train_bpe(corpus.iter().map(String::as_str), 400).unwrap();
        assert_eq!(tok.token_id("<s>"), Some(0));
        assert_eq!(tok.token_id("</s>"), Some(1));
        assert_eq!(tok.token_id("<image>"), Some(2));
        assert!(tok.vocab_size() <= 400 && tok.vocab_size() > 300);
        let text = "A fast library for parsing in Rust, unseen: ½ ∑ 🚀";
        let ids = tok.encode(text).unwrap();
        assert_eq!(tok.decode(&ids, true).unwrap(), text);
        // Merges learned on the corpus make its words shorter than their bytes.
        assert!(tok.encode("A fast library for parsing").unwrap().len() < 10);
        assert!(train_bpe(corpus.iter().map(String::as_str), 100).is_err());
    }
}
