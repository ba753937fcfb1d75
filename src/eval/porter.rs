//! The Porter stemmer exactly as NLTK 3.10.4 runs it by default
//! (`nltk.stem.porter.PorterStemmer()`, mode `NLTK_EXTENSIONS`), which is what rouge-score's
//! `use_stemmer=True` uses.
//!
//! NLTK's default mode is neither Porter's 1980 paper nor Martin Porter's frozen reference
//! implementation; it differs from both in a few places, all reproduced here:
//! - a pool of irregular forms looked up before anything else (`skies` → `sky`,
//!   `dying` → `die`, `innings` → `inning`, `proceed` stays `proceed`, ...);
//! - words of at most 2 characters are returned (lowercased) untouched;
//! - step 1a: `ies` → `ie` for 4-letter words (`ties` → `tie`);
//! - step 1b: `ied` → `ie` for 4-letter words, else `i`;
//! - step 1c: `y` → `i` only after a consonant and when what precedes `y` is longer than
//!   1 letter (`happy` → `happi`, `enjoy` and `sky` unchanged);
//! - step 2: `alli` → `al` first (and step 2 again), `bli` → `ble` (not `abli` → `able`),
//!   plus `fulli` → `ful` and `logi` → `log` (the latter tested on the word minus `ogi`);
//! - condition `*o` also holds for a 2-letter vowel-consonant stem.
//!
//! The code works on any Unicode input, like NLTK's: only `a e i o u` are vowels (`y` by
//! position), everything else, non-ASCII letters included, counts as a consonant.

/// Irregular forms NLTK maps before stemming (its `pool`).
fn irregular(lower: &str) -> Option<&'static str> {
    Some(match lower {
        "sky" | "skies" => "sky",
        "dying" => "die",
        "lying" => "lie",
        "tying" => "tie",
        "news" => "news",
        "innings" | "inning" => "inning",
        "outings" | "outing" => "outing",
        "cannings" | "canning" => "canning",
        "howe" => "howe",
        "proceed" => "proceed",
        "exceed" => "exceed",
        "succeed" => "succeed",
        _ => return None,
    })
}

/// One letter of the word being stemmed: a byte for ASCII words (the fast path rouge-score
/// tokens take), a `char` for anything else.
trait Letter: Copy + Eq {
    fn is(self, ascii: u8) -> bool;
    fn from_ascii(ascii: u8) -> Self;
    fn is_vowel(self) -> bool {
        self.is(b'a') || self.is(b'e') || self.is(b'i') || self.is(b'o') || self.is(b'u')
    }
}

impl Letter for u8 {
    #[inline]
    fn is(self, ascii: u8) -> bool {
        self == ascii
    }
    #[inline]
    fn from_ascii(ascii: u8) -> Self {
        ascii
    }
}

impl Letter for char {
    #[inline]
    fn is(self, ascii: u8) -> bool {
        self == ascii as char
    }
    #[inline]
    fn from_ascii(ascii: u8) -> Self {
        ascii as char
    }
}

/// Porter's consonant test for `w[i]`: not a vowel, and a `y` counts as a consonant only
/// when it starts the word or follows a vowel (so runs of `y` alternate).
fn is_consonant<L: Letter>(w: &[L], mut i: usize) -> bool {
    if w[i].is_vowel() {
        return false;
    }
    if w[i].is(b'y') {
        let mut negate = false;
        while i > 0 && w[i].is(b'y') {
            negate = !negate;
            i -= 1;
        }
        // consonant(w[i]) XOR negate
        return w[i].is_vowel() == negate;
    }
    true
}

/// Porter's measure m of `w`: the number of vowel→consonant transitions in `[C](VC){m}[V]`.
fn measure<L: Letter>(w: &[L]) -> usize {
    let mut m = 0;
    let mut prev_consonant = true; // nothing before the word: a leading C adds nothing
    for (i, &c) in w.iter().enumerate() {
        let consonant = if c.is_vowel() {
            false
        } else if c.is(b'y') {
            i == 0 || !prev_consonant
        } else {
            true
        };
        if consonant && !prev_consonant && i > 0 {
            m += 1;
        }
        prev_consonant = consonant;
    }
    m
}

/// Condition `*v*`: `w` contains a vowel.
fn contains_vowel<L: Letter>(w: &[L]) -> bool {
    (0..w.len()).any(|i| !is_consonant(w, i))
}

/// Condition `*d`: `w` ends with a double consonant.
fn ends_double_consonant<L: Letter>(w: &[L]) -> bool {
    let n = w.len();
    n >= 2 && w[n - 1] == w[n - 2] && is_consonant(w, n - 1)
}

/// Condition `*o`: `w` ends consonant-vowel-consonant with the last not `w`, `x` or `y`;
/// NLTK also accepts a 2-letter vowel-consonant word.
fn ends_cvc<L: Letter>(w: &[L]) -> bool {
    let n = w.len();
    (n >= 3
        && is_consonant(w, n - 3)
        && !is_consonant(w, n - 2)
        && is_consonant(w, n - 1)
        && !(w[n - 1].is(b'w') || w[n - 1].is(b'x') || w[n - 1].is(b'y')))
        || (n == 2 && !is_consonant(w, 0) && is_consonant(w, 1))
}

fn ends_with<L: Letter>(w: &[L], suffix: &[u8]) -> bool {
    w.len() >= suffix.len()
        && w[w.len() - suffix.len()..]
            .iter()
            .zip(suffix)
            .all(|(&c, &s)| c.is(s))
}

/// Replaces the last `cut` letters of `w` with `replacement`.
fn replace_tail<L: Letter>(w: &mut Vec<L>, cut: usize, replacement: &[u8]) {
    w.truncate(w.len() - cut);
    w.extend(replacement.iter().map(|&b| L::from_ascii(b)));
}

/// Which condition a suffix rule tests.
#[derive(Clone, Copy)]
enum Cond {
    /// m(stem) > 0.
    M0,
    /// m(stem) > 1.
    M1,
    /// m(stem) > 1 and the stem ends in `s` or `t` (step 4's `ion`).
    M1St,
    /// m(word minus its last 3 letters) > 0 (NLTK's `logi` rule).
    M0Minus3,
}

/// NLTK's `_apply_rule_list`: the FIRST rule whose suffix ends the word decides; if its
/// condition fails the word is returned unchanged (later rules are not tried).
fn apply_rules<L: Letter>(w: &mut Vec<L>, rules: &[(&[u8], &[u8], Cond)]) {
    for &(suffix, replacement, cond) in rules {
        if ends_with(w, suffix) {
            let stem = &w[..w.len() - suffix.len()];
            let ok = match cond {
                Cond::M0 => measure(stem) > 0,
                Cond::M1 => measure(stem) > 1,
                Cond::M1St => {
                    measure(stem) > 1 && stem.last().is_some_and(|&c| c.is(b's') || c.is(b't'))
                }
                Cond::M0Minus3 => measure(&w[..w.len() - 3]) > 0,
            };
            if ok {
                replace_tail(w, suffix.len(), replacement);
            }
            return;
        }
    }
}

fn step1a<L: Letter>(w: &mut Vec<L>) {
    if ends_with(w, b"ies") && w.len() == 4 {
        replace_tail(w, 3, b"ie");
    } else if ends_with(w, b"sses") || ends_with(w, b"ies") {
        w.truncate(w.len() - 2); // sses → ss, ies → i
    } else if ends_with(w, b"ss") {
        // ss → ss
    } else if ends_with(w, b"s") {
        w.pop();
    }
}

fn step1b<L: Letter>(w: &mut Vec<L>) {
    if ends_with(w, b"ied") {
        let replacement: &[u8] = if w.len() == 4 { b"ie" } else { b"i" };
        replace_tail(w, 3, replacement);
        return;
    }
    if ends_with(w, b"eed") {
        if measure(&w[..w.len() - 3]) > 0 {
            w.pop(); // eed → ee
        }
        return;
    }
    let cut = if ends_with(w, b"ed") && contains_vowel(&w[..w.len() - 2]) {
        2
    } else if ends_with(w, b"ing") && contains_vowel(&w[..w.len() - 3]) {
        3
    } else {
        return;
    };
    w.truncate(w.len() - cut);
    // The follow-up rules on the intermediate stem, first match decides.
    if ends_with(w, b"at") || ends_with(w, b"bl") || ends_with(w, b"iz") {
        w.push(L::from_ascii(b'e'));
    } else if ends_double_consonant(w) {
        let last = w[w.len() - 1];
        if !(last.is(b'l') || last.is(b's') || last.is(b'z')) {
            w.pop();
        }
    } else if ends_with(w, b"*d") {
        // NLTK spells the double-consonant rule as the suffix "*d" and also tests it as a
        // literal suffix: a stem ending in "*d" loses the '*'.
        let n = w.len();
        w.remove(n - 2);
    } else if measure(w) == 1 && ends_cvc(w) {
        w.push(L::from_ascii(b'e'));
    }
}

fn step1c<L: Letter>(w: &mut [L]) {
    if ends_with(w, b"y") {
        let n = w.len();
        if n - 1 > 1 && is_consonant(&w[..n - 1], n - 2) {
            w[n - 1] = L::from_ascii(b'i');
        }
    }
}

const STEP2: &[(&[u8], &[u8], Cond)] = &[
    (b"ational", b"ate", Cond::M0),
    (b"tional", b"tion", Cond::M0),
    (b"enci", b"ence", Cond::M0),
    (b"anci", b"ance", Cond::M0),
    (b"izer", b"ize", Cond::M0),
    (b"bli", b"ble", Cond::M0),
    (b"alli", b"al", Cond::M0),
    (b"entli", b"ent", Cond::M0),
    (b"eli", b"e", Cond::M0),
    (b"ousli", b"ous", Cond::M0),
    (b"ization", b"ize", Cond::M0),
    (b"ation", b"ate", Cond::M0),
    (b"ator", b"ate", Cond::M0),
    (b"alism", b"al", Cond::M0),
    (b"iveness", b"ive", Cond::M0),
    (b"fulness", b"ful", Cond::M0),
    (b"ousness", b"ous", Cond::M0),
    (b"aliti", b"al", Cond::M0),
    (b"iviti", b"ive", Cond::M0),
    (b"biliti", b"ble", Cond::M0),
    (b"fulli", b"ful", Cond::M0),
    (b"logi", b"log", Cond::M0Minus3),
];

fn step2<L: Letter>(w: &mut Vec<L>) {
    // NLTK: "alli" → "al" first, then step 2 again on the result.
    while ends_with(w, b"alli") && measure(&w[..w.len() - 4]) > 0 {
        replace_tail(w, 4, b"al");
    }
    apply_rules(w, STEP2);
}

const STEP3: &[(&[u8], &[u8], Cond)] = &[
    (b"icate", b"ic", Cond::M0),
    (b"ative", b"", Cond::M0),
    (b"alize", b"al", Cond::M0),
    (b"iciti", b"ic", Cond::M0),
    (b"ical", b"ic", Cond::M0),
    (b"ful", b"", Cond::M0),
    (b"ness", b"", Cond::M0),
];

const STEP4: &[(&[u8], &[u8], Cond)] = &[
    (b"al", b"", Cond::M1),
    (b"ance", b"", Cond::M1),
    (b"ence", b"", Cond::M1),
    (b"er", b"", Cond::M1),
    (b"ic", b"", Cond::M1),
    (b"able", b"", Cond::M1),
    (b"ible", b"", Cond::M1),
    (b"ant", b"", Cond::M1),
    (b"ement", b"", Cond::M1),
    (b"ment", b"", Cond::M1),
    (b"ent", b"", Cond::M1),
    (b"ion", b"", Cond::M1St),
    (b"ou", b"", Cond::M1),
    (b"ism", b"", Cond::M1),
    (b"ate", b"", Cond::M1),
    (b"iti", b"", Cond::M1),
    (b"ous", b"", Cond::M1),
    (b"ive", b"", Cond::M1),
    (b"ize", b"", Cond::M1),
];

fn step5a<L: Letter>(w: &mut Vec<L>) {
    if ends_with(w, b"e") {
        let stem = &w[..w.len() - 1];
        let m = measure(stem);
        if m > 1 || (m == 1 && !ends_cvc(stem)) {
            w.pop();
        }
    }
}

fn step5b<L: Letter>(w: &mut Vec<L>) {
    if ends_with(w, b"ll") && measure(&w[..w.len() - 1]) > 1 {
        w.pop();
    }
}

/// Steps 1a to 5b on an already lowercased word of more than 2 letters.
fn run_steps<L: Letter>(w: &mut Vec<L>) {
    step1a(w);
    step1b(w);
    step1c(w);
    step2(w);
    apply_rules(w, STEP3);
    apply_rules(w, STEP4);
    step5a(w);
    step5b(w);
}

/// Stems one word exactly as NLTK 3.10.4's `PorterStemmer().stem(word)` does (default mode
/// `NLTK_EXTENSIONS`, the stemmer behind rouge-score's `use_stemmer=True`).
///
/// The word is lowercased first (Unicode lowercasing, as Python's `str.lower()`), checked
/// against NLTK's irregular forms, returned as is when it has at most 2 characters, and
/// otherwise run through Porter's steps with NLTK's extensions: irregular forms (`skies` →
/// `sky`, `dying` → `die`, `proceed` unchanged, ...), `ies`/`ied` → `ie` for 4-letter words,
/// `y` → `i` only after a consonant, `alli` → `al` first in step 2, `bli` → `ble`, `fulli` →
/// `ful`, `logi` → `log`, and `*o` true for 2-letter vowel-consonant stems. Any input is
/// accepted; only `a e i o u` are vowels (`y` by position), so non-ASCII letters count as
/// consonants.
///
/// ```
/// use deepsynth::eval::porter_stem;
/// assert_eq!(porter_stem("running"), "run");
/// assert_eq!(porter_stem("generously"), "gener");
/// assert_eq!(porter_stem("skies"), "sky");
/// assert_eq!(porter_stem("happy"), "happi");
/// ```
pub fn porter_stem(word: &str) -> String {
    if word.is_ascii() {
        let mut out = Vec::with_capacity(word.len());
        stem_ascii_into(word.as_bytes(), &mut out);
        // Only ASCII bytes were written.
        return String::from_utf8(out).unwrap_or_default();
    }
    let lower = word.to_lowercase();
    if let Some(stem) = irregular(&lower) {
        return stem.to_string();
    }
    if word.chars().count() <= 2 {
        return lower;
    }
    let mut w: Vec<char> = lower.chars().collect();
    run_steps(&mut w);
    w.into_iter().collect()
}

/// [`porter_stem`] for an ASCII word, written into `out` (cleared first) without other
/// allocation. Uppercase ASCII letters are lowercased like NLTK does.
pub(crate) fn stem_ascii_into(word: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.extend(word.iter().map(u8::to_ascii_lowercase));
    if let Some(stem) = std::str::from_utf8(out).ok().and_then(irregular) {
        out.clear();
        out.extend_from_slice(stem.as_bytes());
        return;
    }
    if word.len() <= 2 {
        return;
    }
    run_steps(out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paper_examples() {
        for (w, s) in [
            ("caresses", "caress"),
            ("ponies", "poni"),
            ("ties", "tie"),
            ("feed", "feed"),
            ("agreed", "agre"),
            ("hopping", "hop"),
            ("filing", "file"),
            ("relational", "relat"),
            ("controll", "control"),
            ("", ""),
            ("a", "a"),
            ("AS", "as"),
        ] {
            assert_eq!(porter_stem(w), s, "{w}");
        }
    }

    #[test]
    fn y_runs_alternate() {
        let w = b"syzygy";
        let flags: Vec<bool> = (0..w.len()).map(|i| is_consonant(&w[..], i)).collect();
        assert_eq!(flags, [true, false, true, false, true, false]);
        assert_eq!(porter_stem("yyyy"), "yyyi");
    }

    #[test]
    fn literal_star_d_quirk() {
        // NLTK tests the "*d" rule as a literal suffix too: "a*ded" → "a*d" → "ad".
        assert_eq!(porter_stem("a*ded"), "ad");
    }

    #[test]
    fn unicode_words_do_not_panic() {
        for w in ["İİ", "ÉTÉS", "naïveties", "straße", "🙂🙂🙂ing", "ǅemal"] {
            let _ = porter_stem(w);
        }
        assert_eq!(porter_stem("İİ"), "i\u{307}i\u{307}");
    }
}
