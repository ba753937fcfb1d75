//! Tokenizers for ROUGE: rouge-score's own (the default, reproduced exactly) and an opt-in
//! Unicode-aware one.

use super::porter::porter_stem;

/// How a [`RougeTokenizer::Unicode`] tokenizer stems its tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Stemming {
    /// No stemming.
    #[default]
    Off,
    /// English: NLTK's Porter stemmer ([`porter_stem`](super::porter_stem)) on tokens made
    /// only of ASCII letters and digits and longer than 3 characters, as rouge-score does.
    /// Tokens in any other script are left unstemmed.
    English,
}

/// How ROUGE splits text into tokens.
///
/// The default, [`RougeTokenizer::RougeScore`], is rouge-score 0.1.2's `DefaultTokenizer`,
/// reproduced exactly: it only knows ASCII letters and digits, so "café" becomes `caf` and
/// text in Chinese, Russian or Arabic yields no tokens at all. [`RougeTokenizer::Unicode`] is
/// an opt-in alternative for such text; its scores are not comparable with rouge-score's.
///
/// ```
/// use deepsynth::eval::{RougeTokenizer, Stemming};
/// let tok = RougeTokenizer::RougeScore { stem: true };
/// assert_eq!(tok.tokenize("The runners' café"), ["the", "runner", "caf"]);
/// let uni = RougeTokenizer::Unicode { stem: Stemming::English };
/// assert_eq!(uni.tokenize("Running in 東京, café"), ["run", "in", "東", "京", "café"]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RougeTokenizer {
    /// rouge-score's tokenizer: Python `str.lower()`, every character other than `a-z0-9` is
    /// a separator, and with `stem` tokens longer than 3 characters go through NLTK's Porter
    /// stemmer ([`porter_stem`](super::porter_stem)).
    ///
    /// The only non-ASCII characters that survive are the two whose lowercase form holds an
    /// ASCII letter: `İ` (U+0130, lowercases to `i` + combining dot, so it ends the token
    /// after the `i`) and the KELVIN SIGN (U+212A, lowercases to `k`).
    RougeScore {
        /// Porter-stem tokens longer than 3 characters (rouge-score's `use_stemmer`).
        stem: bool,
    },
    /// A Unicode-aware tokenizer (not rouge-score's; opt-in):
    /// - the text is lowercased with Rust's [`str::to_lowercase`] (full Unicode mappings,
    ///   final sigma included);
    /// - tokens are runs of alphanumeric characters ([`char::is_alphanumeric`]); combining
    ///   marks (U+0300–U+036F, U+1AB0–U+1AFF, U+1DC0–U+1DFF, U+20D0–U+20FF, U+FE20–U+FE2F)
    ///   and the zero-width (non-)joiner continue a token they follow; everything else
    ///   separates, so "don't" is `don`, `t` and "3.5" is `3`, `5`;
    /// - each Han ideograph, hiragana or katakana character is a token on its own (Chinese
    ///   and Japanese do not separate words with spaces); Hangul is split on spaces like
    ///   other alphabets; scripts without spaces that are not handled here (Thai, Lao,
    ///   Khmer, Myanmar) give one token per run;
    /// - no Unicode normalisation: precomposed "é" and "e" + U+0301 are different tokens.
    Unicode {
        /// Which stemming to apply (only English exists; other languages stay unstemmed).
        stem: Stemming,
    },
}

impl Default for RougeTokenizer {
    /// rouge-score's tokenizer without stemming (`RougeScorer(types)`'s default).
    fn default() -> Self {
        RougeTokenizer::RougeScore { stem: false }
    }
}

impl RougeTokenizer {
    /// Whether tokens are stemmed at all.
    pub fn stems(&self) -> bool {
        match *self {
            RougeTokenizer::RougeScore { stem } => stem,
            RougeTokenizer::Unicode { stem } => stem != Stemming::Off,
        }
    }

    /// The tokens of `text`, stemmed when this tokenizer stems. ROUGE-Lsum tokenizes each
    /// `"\n"`-separated line on its own; since `"\n"` always separates tokens, the tokens
    /// of the lines concatenated equal the tokens of the whole text.
    ///
    /// This allocates a `String` per token; [`RougeScorer`](super::RougeScorer) works on
    /// interned ids instead.
    pub fn tokenize(&self, text: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut buf = Vec::new();
        let stem = self.stems();
        self.scan(text, &mut buf, |piece| {
            if let Piece::Token(tok) = piece {
                let s = String::from_utf8_lossy(tok);
                if stem && stem_applies(tok) {
                    out.push(porter_stem(&s));
                } else {
                    out.push(s.into_owned());
                }
            }
        });
        out
    }

    /// Feeds the raw (unstemmed) tokens of `text` and its line breaks to `emit`; `buf` is
    /// scratch space.
    pub(crate) fn scan(&self, text: &str, buf: &mut Vec<u8>, emit: impl FnMut(Piece<'_>)) {
        match self {
            RougeTokenizer::RougeScore { .. } => scan_rouge_score(text, buf, emit),
            RougeTokenizer::Unicode { .. } => scan_unicode(text, buf, emit),
        }
    }
}

/// What a tokenizer scan reports.
pub(crate) enum Piece<'a> {
    /// One raw token (lowercased, not stemmed), as UTF-8.
    Token(&'a [u8]),
    /// A `"\n"` in the text (ROUGE-Lsum's line separator).
    LineBreak,
}

/// Whether a (raw) token is stemmed when stemming is on: rouge-score stems tokens longer
/// than 3 characters; its tokens are always ASCII, and the Unicode tokenizer's English
/// stemming only touches ASCII tokens.
#[inline]
pub(crate) fn stem_applies(tok: &[u8]) -> bool {
    tok.len() > 3 && tok.is_ascii()
}

/// Byte → its lowercase when it is an ASCII letter or digit, else 0.
static ALNUM_LOWER: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        if c.is_ascii_alphanumeric() {
            t[b] = c.to_ascii_lowercase();
        }
        b += 1;
    }
    t
};

/// rouge-score's `tokenize`: `text.lower()`, `[^a-z0-9]+` → separator. Works on bytes: an
/// ASCII byte is kept (lowercased) when alphanumeric; of the non-ASCII characters only
/// U+0130 (→ "i" then a separator, its lowercase being "i" + U+0307) and U+212A (→ "k")
/// lowercase to anything in `a-z0-9` under Python's `str.lower()`; every other non-ASCII
/// byte is a separator.
fn scan_rouge_score(text: &str, buf: &mut Vec<u8>, mut emit: impl FnMut(Piece<'_>)) {
    let bytes = text.as_bytes();
    buf.clear();
    fn flush(buf: &mut Vec<u8>, emit: &mut impl FnMut(Piece<'_>)) {
        if !buf.is_empty() {
            emit(Piece::Token(buf));
            buf.clear();
        }
    }
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if ALNUM_LOWER[b as usize] != 0 {
            let start = i;
            let mut upper = false;
            while let Some(&c) = bytes.get(i) {
                let lower = ALNUM_LOWER[c as usize];
                if lower == 0 {
                    break;
                }
                upper |= lower != c;
                i += 1;
            }
            let run = &bytes[start..i];
            // U+0130 (C4 B0) or a KELVIN SIGN (E2 84 AA) right after the run continues the
            // token; any other next byte ends it.
            if buf.is_empty() && !upper && !matches!(bytes.get(i), Some(0xC4 | 0xE2)) {
                emit(Piece::Token(run)); // already lowercase: no copy
            } else {
                buf.extend(run.iter().map(u8::to_ascii_lowercase));
            }
        } else if b < 0x80 {
            flush(buf, &mut emit);
            if b == b'\n' {
                emit(Piece::LineBreak);
            }
            i += 1;
        } else if b == 0xC4 && bytes.get(i + 1) == Some(&0xB0) {
            // U+0130 LATIN CAPITAL LETTER I WITH DOT ABOVE → "i" + U+0307 (a separator).
            buf.push(b'i');
            flush(buf, &mut emit);
            i += 2;
        } else if b == 0xE2 && bytes.get(i + 1) == Some(&0x84) && bytes.get(i + 2) == Some(&0xAA) {
            // U+212A KELVIN SIGN → "k".
            buf.push(b'k');
            i += 3;
        } else {
            flush(buf, &mut emit);
            i += 1;
        }
    }
    flush(buf, &mut emit);
}

/// Han ideographs, kana and CJK iteration marks: one token each in the Unicode tokenizer.
fn is_cjk_single(c: char) -> bool {
    matches!(c as u32,
        0x3005..=0x3007          // 々 〆 〇
        | 0x3040..=0x309F        // Hiragana
        | 0x30A0..=0x30FF        // Katakana
        | 0x31F0..=0x31FF        // Katakana phonetic extensions
        | 0x3400..=0x4DBF        // CJK Extension A
        | 0x4E00..=0x9FFF        // CJK Unified Ideographs
        | 0xF900..=0xFAFF        // CJK Compatibility Ideographs
        | 0xFF66..=0xFF9F        // Halfwidth katakana
        | 0x20000..=0x323AF      // Planes 2–3: CJK Extensions B–H, compatibility supplement
    )
}

/// Characters that continue (never start) a token in the Unicode tokenizer.
fn continues_token(c: char) -> bool {
    matches!(c as u32,
        0x0300..=0x036F | 0x1AB0..=0x1AFF | 0x1DC0..=0x1DFF | 0x20D0..=0x20FF | 0xFE20..=0xFE2F
        | 0x200C | 0x200D)
}

fn scan_unicode(text: &str, buf: &mut Vec<u8>, mut emit: impl FnMut(Piece<'_>)) {
    let lower = text.to_lowercase();
    buf.clear();
    let mut utf8 = [0u8; 4];
    for c in lower.chars() {
        if c.is_alphanumeric() && !is_cjk_single(c) {
            buf.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
            continue;
        }
        if !buf.is_empty() && continues_token(c) {
            buf.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
            continue;
        }
        if !buf.is_empty() {
            emit(Piece::Token(buf));
            buf.clear();
        }
        if c == '\n' {
            emit(Piece::LineBreak);
        } else if is_cjk_single(c) {
            emit(Piece::Token(c.encode_utf8(&mut utf8).as_bytes()));
        }
    }
    if !buf.is_empty() {
        emit(Piece::Token(buf));
        buf.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rs(text: &str, stem: bool) -> Vec<String> {
        RougeTokenizer::RougeScore { stem }.tokenize(text)
    }

    #[test]
    fn rouge_score_basics() {
        assert_eq!(
            rs("don't U.S. 3.5%", false),
            ["don", "t", "u", "s", "3", "5"]
        );
        assert_eq!(rs("aİb \u{212A}elvin", false), ["ai", "b", "kelvin"]);
        assert_eq!(rs("Москва 東京 ﬁnance", true), ["nanc"]);
        assert!(rs("", true).is_empty());
        // A lone continuation or lead byte pattern cut short never panics.
        assert_eq!(rs("\u{C4}\u{E2}x", false), ["x"]);
    }

    /// The byte scanner against the plain definition (whole-text Unicode lowercase, then
    /// runs of `[a-z0-9]`) on random strings over an adversarial alphabet.
    #[test]
    fn byte_scanner_matches_plain_definition() {
        let alphabet = [
            'a', 'B', 'z', 'Z', '0', '9', ' ', '\n', '\u{130}', '\u{212A}', 'é', '東', '\u{307}',
            '-', 'ß', 'ǅ', 'Σ', '\u{C4}', '\u{E2}', '\u{2122}', '\u{2129}',
        ];
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20_000 {
            let len = next() % 12;
            let text: String = (0..len)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect();
            let want: Vec<String> = text
                .to_lowercase()
                .split(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit()))
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect();
            assert_eq!(rs(&text, false), want, "{text:?}");
        }
    }

    #[test]
    fn unicode_tokenizer() {
        let t = RougeTokenizer::Unicode {
            stem: Stemming::Off,
        };
        assert_eq!(t.tokenize("Москва, ΟΔΟΣ!"), ["москва", "οδος"]);
        assert_eq!(
            t.tokenize("東京タワーへ"),
            ["東", "京", "タ", "ワ", "ー", "へ"]
        );
        assert_eq!(t.tokenize("cafe\u{301} x"), ["cafe\u{301}", "x"]);
        assert_eq!(t.tokenize("\u{301}a"), ["a"]);
        let t = RougeTokenizer::Unicode {
            stem: Stemming::English,
        };
        assert_eq!(t.tokenize("Runnings straße"), ["run", "straße"]);
    }
}
