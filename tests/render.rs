//! Rendering: glyph coverage, wrap bounds, pagination, edge cases, fonts, determinism.

use deepsynth::render::{
    BatchOptions, ChainFont, Document, FontChain, Layout, MissingGlyphs, PageMode, PngCompression,
    Preset, RenderConfig, RenderError, Renderer,
};

const SEED_FR: &str = "àáâäèéêëìíîïòóôöùúûüÿç";
const SEED_ES: &str = "ñáéíóúü";
const SEED_DE: &str = "äöüßÄÖÜ";
const GREEK: &str =
    "Η γρήγορη καφέ αλεπού πηδάει πάνω από τον τεμπέλη σκύλο. ΑΒΓΔΕΖΗΘΙΚΛΜΝΞΟΠΡΣΤΥΦΧΨΩ";
const CYRILLIC: &str = "Съешь же ещё этих мягких французских булок, да выпей же чаю. ЁЖЗИЙ";
const HEBREW: &str = "המודל קורא את הדף כתמונה וכותב תקציר קצר. עִבְרִית";
const CJK: &str =
    "文档被渲染成页面图像，视觉编码器把每一页压缩成几百个视觉标记。日本語のテキスト、한국어 문장";

#[path = "common/news.rs"]
mod news;
use news::news_text;

fn renderer(preset: Preset) -> Renderer {
    Renderer::from_preset(preset).expect("bundled preset")
}

fn assert_every_glyph_inked(r: &Renderer, text: &str) {
    let layout = r.layout(text).unwrap();
    assert!(
        layout.report.is_complete(),
        "missing: {}",
        layout.report.missing_summary()
    );
    let non_space = text.chars().filter(|c| !c.is_whitespace()).count();
    assert_eq!(
        layout.report.chars_drawn, non_space,
        "every visible char drawn once"
    );
    for page_layout in &layout.pages {
        let page = r.rasterize(page_layout);
        for g in &page_layout.glyphs {
            // Combining marks (zero-width) may sit on another glyph's box; check their own box too.
            let (x0, y0, x1, y1) = r
                .glyph_box(g)
                .unwrap_or_else(|| panic!("{:?} (U+{:04X}) has no outline", g.ch, g.ch as u32));
            let mut peak = 0u8;
            for y in y0.max(0)..y1 {
                for x in x0.max(0)..x1 {
                    peak = peak.max(page.coverage_at(x as u32, y as u32));
                }
            }
            assert!(
                peak >= 96,
                "{:?} (U+{:04X}) has no visible ink in its box {:?}: peak coverage {peak}",
                g.ch,
                g.ch as u32,
                (x0, y0, x1, y1)
            );
        }
    }
}

#[test]
fn seed_and_script_samples_render_with_ink_and_no_missing_glyph() {
    let r = renderer(Preset::Base);
    for text in [SEED_FR, SEED_ES, SEED_DE, GREEK, CYRILLIC, HEBREW, CJK] {
        assert_every_glyph_inked(&r, text);
    }
    // Small sizes too: the Tiny preset's 10 px text.
    let tiny = renderer(Preset::Tiny);
    for text in [SEED_FR, SEED_DE, CJK] {
        assert_every_glyph_inked(&tiny, text);
    }
}

#[test]
fn fallback_chain_picks_the_covering_font() {
    let r = renderer(Preset::Base);
    let layout = r.layout("aé Ж 中 \u{0591}").unwrap();
    let fonts: Vec<(char, u8)> = layout.pages[0]
        .glyphs
        .iter()
        .map(|g| (g.ch, g.font))
        .collect();
    assert_eq!(
        fonts,
        vec![('a', 0), ('é', 0), ('Ж', 0), ('中', 2), ('\u{0591}', 1)]
    );
    let per_font = &layout.report.glyphs_per_font;
    assert_eq!(per_font["DejaVuSans.ttf"], 3);
    assert_eq!(per_font["DroidSansFallback.ttf"], 1);
    assert_eq!(per_font["NotoSansHebrew-Regular.ttf"], 1);
}

/// Checks line widths and that no inked pixel lies outside the content box (1 px antialiasing
/// tolerance on the right, 2 px on the left for negative side bearings).
fn assert_within_margins(r: &Renderer, text: &str) {
    let cfg = r.config();
    let layout = r.layout(text).unwrap();
    for page_layout in &layout.pages {
        let content = (page_layout.width - cfg.margins.left - cfg.margins.right) as f32;
        for line in &page_layout.lines {
            assert!(
                line.width <= content + 1e-3,
                "line {:?} is {} px wide, content width {content}",
                &text[line.source.clone()],
                line.width
            );
        }
        let page = r.rasterize(page_layout);
        if let Some((x0, _, x1, _)) = page.ink_bbox() {
            assert!(x0 + 2 >= cfg.margins.left, "ink at x={x0} left of margin");
            assert!(
                x1 <= page_layout.width - cfg.margins.right,
                "ink up to x={x1} past right margin {}",
                page_layout.width - cfg.margins.right
            );
        }
    }
}

#[test]
fn no_line_exceeds_the_content_width() {
    let long_word = "x".repeat(300);
    let texts = [
        news_text(2000, 1),
        format!("{SEED_FR} {SEED_ES} {SEED_DE} ").repeat(40),
        format!("{GREEK} {CYRILLIC} ").repeat(20),
        format!("{HEBREW} 2024 DeepSynth ").repeat(20),
        CJK.repeat(30),
        format!("WAVE AV To\tTab\t\tstops {long_word} end"),
    ];
    for preset in Preset::ALL {
        let r = renderer(preset);
        for text in &texts {
            assert_within_margins(&r, text);
        }
    }
}

fn words(s: &str) -> Vec<&str> {
    s.split_whitespace().collect()
}

/// Every non-space character appears once and in order, and lines only end at a space, a
/// hyphen or the end of a paragraph (so no word is split or lost).
fn assert_words_kept(layout: &Layout, text: &str) {
    let lines = layout.line_texts(text);
    let from_lines: String = lines.iter().flat_map(|l| words(l)).collect();
    assert_eq!(
        from_lines,
        words(text).concat(),
        "characters lost, duplicated or reordered"
    );
    let mut end = 0;
    for (l, line) in layout.pages.iter().flat_map(|p| p.lines.iter()).zip(&lines) {
        assert!(l.source.start >= end, "lines overlap");
        end = l.source.end;
        let next = text[end..].chars().next();
        let last = line.chars().last();
        assert!(
            matches!(next, None | Some('\n'))
                || last.is_some_and(|c| c.is_whitespace() || c == '-'),
            "line {line:?} breaks inside a word"
        );
    }
}

#[test]
fn pagination_keeps_every_word_once_in_order() {
    let text = news_text(12_000, 7);
    for preset in [Preset::Tiny, Preset::Base, Preset::DeepSynth] {
        let cfg = RenderConfig::preset(preset).paginated();
        let r = Renderer::new(cfg.clone()).unwrap();
        let layout = r.layout(&text).unwrap();
        assert!(layout.pages.len() > 1, "{preset}: expected several pages");
        assert_words_kept(&layout, &text);
        let PageMode::Paginate { width, height } = cfg.page else {
            unreachable!()
        };
        let per_page = ((height - cfg.margins.top - cfg.margins.bottom) / r.line_pitch()) as usize;
        for (i, p) in layout.pages.iter().enumerate() {
            assert_eq!((p.width, p.height), (width, height));
            let last = i + 1 == layout.pages.len();
            assert!(p.lines.len() == per_page || (last && p.lines.len() <= per_page));
            // Lines stay inside the page vertically.
            let bottom = p.lines.last().map(|l| l.baseline).unwrap_or(0);
            assert!(bottom < (height - cfg.margins.bottom) as i32);
        }
        assert_eq!(layout.report.pages, layout.pages.len());
        assert_eq!(
            layout.report.lines,
            layout.pages.iter().map(|p| p.lines.len()).sum::<usize>()
        );
    }
}

#[test]
fn grow_mode_fits_short_text_and_continues_long_text() {
    let r = renderer(Preset::Base);
    let short = r.layout("one line").unwrap();
    assert_eq!(short.pages.len(), 1);
    let m = r.config().margins;
    assert_eq!(short.pages[0].height, m.top + m.bottom + r.line_pitch());
    let long = r.layout(&news_text(3000, 3)).unwrap();
    assert!(long.pages.len() > 1);
    for p in &long.pages {
        assert!(p.height <= 1024 && p.width == 1024);
    }
    // The DeepSynth preset shrinks the width to the longest line.
    let ds = renderer(Preset::DeepSynth).layout("short").unwrap();
    assert!(ds.pages[0].width < 200, "width {}", ds.pages[0].width);
}

#[test]
fn empty_text_gives_one_blank_page() {
    for preset in Preset::ALL {
        let r = renderer(preset);
        let out = r.render("").unwrap();
        assert_eq!(out.pages.len(), 1);
        assert_eq!(out.report.chars_drawn, 0);
        assert!(out.report.is_complete());
        assert_eq!(out.pages[0].ink_bbox(), None);
    }
    let only_space = renderer(Preset::Base)
        .render(" \n\t\n\u{200B}\u{FEFF}")
        .unwrap();
    assert_eq!(only_space.report.chars_drawn, 0);
    assert_eq!(only_space.report.chars_ignored, 2);
    assert_eq!(only_space.pages[0].ink_bbox(), None);
}

#[test]
fn one_megabyte_document_lays_out_completely() {
    let mut text = news_text(200_000, 11);
    text.truncate(1 << 20); // ASCII, so any byte is a char boundary
    assert!(text.len() > 1_000_000);
    let r = Renderer::new(RenderConfig::preset(Preset::Base).paginated()).unwrap();
    let layout = r.layout(&text).unwrap();
    assert_words_kept(&layout, &text);
    assert!(layout.pages.len() > 150, "{} pages", layout.pages.len());
    // Pages rasterise on demand: first and last only, memory stays bounded.
    for p in [&layout.pages[0], layout.pages.last().unwrap()] {
        assert!(r.rasterize(p).ink_bbox().is_some());
    }
}

#[test]
fn a_5000_character_word_is_broken_by_character() {
    let word: String = "abcdefghijklmnopqrstuvwxyz"
        .chars()
        .cycle()
        .take(5000)
        .collect();
    let text = format!("start {word} end");
    let r = renderer(Preset::Base);
    let layout = r.layout(&text).unwrap();
    let lines = layout.line_texts(&text);
    assert!(lines.len() > 40, "{} lines", lines.len());
    let rejoined: String = lines.concat();
    assert_eq!(rejoined, text);
    assert_eq!(lines[0], "start ", "the long word starts on its own line");
    assert_within_margins(&r, &text);
}

#[test]
fn missing_glyphs_are_replaced_and_reported_or_refused_in_strict_mode() {
    let text = "ok \u{E000} and \u{E000}\u{10FFFD}";
    let out = renderer(Preset::Base).render(text).unwrap();
    let missing: Vec<(char, usize, usize)> = out
        .report
        .missing
        .iter()
        .map(|m| (m.ch, m.count, m.first_offset))
        .collect();
    assert_eq!(missing, vec![('\u{E000}', 2, 3), ('\u{10FFFD}', 1, 14)]);
    assert_eq!(out.report.chars_drawn, 2 + 3 + 3, "replacements are drawn");
    assert!(out.report.to_string().contains("U+E000"));

    let strict = Renderer::new(RenderConfig::preset(Preset::Base).strict()).unwrap();
    assert_eq!(strict.config().missing_glyphs, MissingGlyphs::Error);
    match strict.render(text) {
        Err(RenderError::MissingGlyphs {
            count,
            missing,
            summary,
        }) => {
            assert_eq!(count, 3);
            assert_eq!(missing.len(), 2);
            assert!(summary.contains("U+10FFFD"), "{summary}");
        }
        other => panic!("expected MissingGlyphs, got {other:?}"),
    }
    assert!(strict.render(SEED_FR).is_ok());
}

#[test]
fn font_files_errors_name_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing-font.ttf");
    let err = FontChain::from_files(&[&missing]).unwrap_err();
    assert!(matches!(err, RenderError::FontRead { .. }));
    assert!(err.to_string().contains("missing-font.ttf"), "{err}");
    let corrupt = dir.path().join("corrupt-font.ttf");
    std::fs::write(&corrupt, vec![0u8; 4096]).unwrap();
    let err = FontChain::from_files(&[&corrupt]).unwrap_err();
    assert!(matches!(err, RenderError::FontParse { .. }));
    assert!(err.to_string().contains("corrupt-font.ttf"), "{err}");
    // A valid file loads and takes precedence.
    let good = dir.path().join("DejaVuSans.ttf");
    std::fs::write(&good, deepsynth::render::DEJAVU_SANS).unwrap();
    let chain = FontChain::bundled()
        .unwrap()
        .with_primary(ChainFont::from_file(&good).unwrap())
        .unwrap();
    assert!(chain.fonts()[0].name().ends_with("DejaVuSans.ttf"));
    assert_eq!(chain.fonts().len(), 4);
}

#[test]
fn advances_and_kerning_match_fonttools_goldens() {
    let goldens: serde_json::Value =
        serde_json::from_str(include_str!("fixtures/render/advance_goldens.json")).unwrap();
    for case in goldens["cases"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let size = case["size"].as_f64().unwrap() as f32;
        for (kerning, key) in [(true, "kerned"), (false, "unkerned")] {
            let mut cfg = RenderConfig::preset(Preset::Base).with_font_size(size);
            cfg.kerning = kerning;
            let got = Renderer::new(cfg).unwrap().measure(text);
            let want = case[key].as_f64().unwrap() as f32;
            assert!(
                (got - want).abs() <= 1e-3 * want.max(1.0),
                "{text:?} at {size}px ({key}): got {got}, fontTools says {want}"
            );
        }
    }
}

#[test]
fn output_is_identical_across_runs_threads_and_caches() {
    let docs: Vec<String> = (0..12)
        .map(|i| {
            format!(
                "{} {GREEK} {CJK} {HEBREW}",
                news_text(300 + 50 * i, i as u64)
            )
        })
        .collect();
    let r = renderer(Preset::Base);
    let png_all = |threads: usize| -> Vec<Vec<u8>> {
        r.render_batch(&docs, &BatchOptions::default().with_threads(threads))
            .unwrap()
            .into_iter()
            .flat_map(|res| res.unwrap().pages)
            .map(|p| p.to_png(PngCompression::Fast).unwrap())
            .collect()
    };
    let one = png_all(1);
    assert_eq!(one, png_all(2));
    assert_eq!(one, png_all(4));
    // A fresh renderer with cold caches, one document at a time.
    let fresh = renderer(Preset::Base);
    let sequential: Vec<Vec<u8>> = docs
        .iter()
        .flat_map(|d| fresh.render(d).unwrap().pages)
        .map(|p| p.to_png(PngCompression::Fast).unwrap())
        .collect();
    assert_eq!(one, sequential);
}

#[test]
fn render_to_dir_writes_pages_and_reports_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let docs = vec![
        Document::new("en/1", news_text(1500, 5)),
        Document::new("bad", "\u{E000}"),
        Document::new("zh", CJK),
    ];
    let r = Renderer::new(RenderConfig::preset(Preset::Small).strict()).unwrap();
    let seen = std::sync::atomic::AtomicUsize::new(0);
    let summary = r
        .render_to_dir(
            &docs,
            dir.path(),
            &BatchOptions::default().with_threads(2),
            &|_, total| {
                assert_eq!(total, 3);
                seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            },
        )
        .unwrap();
    assert_eq!(seen.into_inner(), 3);
    assert_eq!(summary.failed, 1);
    assert!(summary.documents[1]
        .error
        .as_ref()
        .unwrap()
        .contains("U+E000"));
    let en = &summary.documents[0];
    assert!(en.files.len() > 1);
    assert_eq!(en.files[0], "en_1-p001.png");
    for f in &en.files {
        let img = image::open(dir.path().join(f)).unwrap();
        assert_eq!(img.width(), 640);
    }
    let report = std::fs::read_to_string(dir.path().join("report.jsonl")).unwrap();
    assert_eq!(report.lines().count(), 3);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty());
}

#[test]
fn colours_and_rgb_output() {
    let cfg = RenderConfig::preset(Preset::Tiny)
        .with_font_size(40.0)
        .with_colors([200, 0, 0], [250, 250, 210]);
    let out = Renderer::new(cfg).unwrap().render("Colour").unwrap();
    let rgb = out.pages[0].to_rgb();
    assert_eq!(rgb.get_pixel(0, 0).0, [250, 250, 210]);
    let darkest = rgb.pixels().map(|p| p.0).min_by_key(|p| p[1]).unwrap();
    assert_eq!(
        darkest,
        [200, 0, 0],
        "fully covered pixels take the text colour"
    );
    assert!(!out.pages[0].is_grayscale());
}
