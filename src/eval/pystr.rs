//! Python `str` semantics the peers rely on: `isspace`, `split()`, `strip()`, `rstrip()`,
//! and the shared Fx hash map for the n-gram and word tables.

/// Python's `str.isspace()` for one code point (also what `re`'s `\s` matches on `str`).
///
/// This is the Unicode `White_Space` set plus U+001C..U+001F (the ASCII information
/// separators), which Python counts as whitespace and Rust's [`char::is_whitespace`] does not.
#[inline]
pub(crate) fn is_py_space(c: char) -> bool {
    matches!(
        c,
        '\t'..='\r'
            | '\u{1c}'..='\u{20}'
            | '\u{85}'
            | '\u{a0}'
            | '\u{1680}'
            | '\u{2000}'..='\u{200a}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{202f}'
            | '\u{205f}'
            | '\u{3000}'
    )
}

/// Python's `s.split()` (no argument): runs of whitespace separate, empty pieces dropped.
pub(crate) fn py_split(s: &str) -> impl Iterator<Item = &str> {
    s.split(is_py_space).filter(|w| !w.is_empty())
}

/// Python's `s.strip()` (no argument).
pub(crate) fn py_strip(s: &str) -> &str {
    s.trim_matches(is_py_space)
}

/// Python's `s.rstrip()` (no argument).
pub(crate) fn py_rstrip(s: &str) -> &str {
    s.trim_end_matches(is_py_space)
}

pub(crate) use crate::fxhash::FxMap;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_whitespace_set() {
        // The 29 code points for which CPython 3.11's str.isspace() is True.
        let expected: Vec<u32> = vec![
            0x9, 0xa, 0xb, 0xc, 0xd, 0x1c, 0x1d, 0x1e, 0x1f, 0x20, 0x85, 0xa0, 0x1680, 0x2000,
            0x2001, 0x2002, 0x2003, 0x2004, 0x2005, 0x2006, 0x2007, 0x2008, 0x2009, 0x200a, 0x2028,
            0x2029, 0x202f, 0x205f, 0x3000,
        ];
        let got: Vec<u32> = (0..=0x10ffffu32)
            .filter_map(char::from_u32)
            .filter(|&c| is_py_space(c))
            .map(u32::from)
            .collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn split_strip() {
        assert_eq!(
            py_split("\u{1c}a\u{a0}b  c\u{2028}").collect::<Vec<_>>(),
            ["a", "b", "c"]
        );
        assert_eq!(py_strip("\u{1f} x y\u{3000}"), "x y");
        assert_eq!(py_rstrip(" x \u{85}"), " x");
        assert_eq!(py_split("").count(), 0);
    }
}
