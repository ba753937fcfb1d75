//! jiwer 4.0.0's default transforms: how WER splits words and CER splits characters.

use super::super::pystr::{is_py_space, py_strip};

/// jiwer's `wer_default` transform: `re.sub(r"\s\s+", " ")` (a run of two or more Python
/// whitespace characters becomes one space; a lone `\n`, `\t` or NBSP stays), `strip()`, then
/// split on the single character `' '` dropping empty strings.
///
/// ```
/// use deepsynth::eval::wer_words;
/// assert_eq!(wer_words("  a \n b\u{a0}c "), ["a", "b\u{a0}c"]);
/// ```
pub fn wer_words(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    for_each_wer_word(text, |w| out.push(w));
    out
}

/// Calls `f` with each word of [`wer_words`] without collecting them.
pub(super) fn for_each_wer_word<'a>(text: &'a str, mut f: impl FnMut(&'a str)) {
    // After strip(), words are the maximal pieces without ' ' and without any whitespace run
    // of length >= 2; a lone non-space whitespace char stays inside its word.
    let t = py_strip(text);
    let b = t.as_bytes();
    let mut start: Option<usize> = None;
    let mut i = 0;
    while i < b.len() {
        // Fast path: printable ASCII bytes are word bytes.
        if b[i] > b' ' && b[i] < 0x7f {
            if start.is_none() {
                start = Some(i);
            }
            i += 1;
            while i < b.len() && b[i] > b' ' && b[i] < 0x7f {
                i += 1;
            }
            continue;
        }
        let (ws, len) = classify(t, i);
        if !ws {
            if start.is_none() {
                start = Some(i);
            }
            i += len;
            continue;
        }
        let run_start = i;
        let mut count = 0;
        let mut has_space = false;
        while i < b.len() {
            let (ws, len) = classify(t, i);
            if !ws {
                break;
            }
            count += 1;
            has_space |= b[i] == b' ';
            i += len;
        }
        if count > 1 || has_space {
            if let Some(s) = start.take() {
                f(&t[s..run_start]);
            }
        } else if start.is_none() {
            start = Some(run_start);
        }
    }
    if let Some(s) = start {
        f(&t[s..]);
    }
}

/// Whether the char at byte `i` of `t` is Python whitespace, and its UTF-8 length.
#[inline(always)]
pub(super) fn classify(t: &str, i: usize) -> (bool, usize) {
    let b = t.as_bytes()[i];
    if b < 0x80 {
        (matches!(b, b'\t'..=b'\r' | 0x1c..=0x20), 1)
    } else {
        let c = t[i..].chars().next().unwrap_or(' ');
        (is_py_space(c), c.len_utf8())
    }
}

/// jiwer's `cer_default` transform: `strip()`, then the code points (spaces and inner
/// whitespace runs count).
pub fn cer_chars(text: &str) -> impl Iterator<Item = char> + '_ {
    py_strip(text).chars()
}
