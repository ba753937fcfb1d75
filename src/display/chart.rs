//! Bar and line charts drawn with plotters into PNG, for inline notebook plots.
//!
//! plotters' text goes through ab_glyph with no system fonts; the bundled DejaVu Sans is
//! registered on every draw (evcxr runs each cell in a fresh library, so a registration from an
//! earlier cell cannot be relied on).

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{register_font, FontStyle};

use super::emit_png;
use crate::render::{encode_png, PngCompression, RenderError, DEJAVU_SANS};

/// One bar: label, value and an optional (low, high) interval.
#[derive(Clone, Debug, PartialEq)]
pub struct Bar {
    /// Label under the bar.
    pub label: String,
    /// Height.
    pub value: f64,
    /// Error bar.
    pub interval: Option<(f64, f64)>,
}

/// A bar chart with optional error bars.
#[derive(Clone, Debug, PartialEq)]
pub struct BarChart {
    /// Title.
    pub title: String,
    /// Y axis label.
    pub y_label: String,
    /// Bars, left to right.
    pub bars: Vec<Bar>,
    /// Image size in pixels.
    pub size: (u32, u32),
}

/// Failures while drawing (reported as text in notebooks, never a panic).
pub(super) fn draw_err(e: impl std::fmt::Display) -> RenderError {
    RenderError::Png {
        width: 0,
        height: 0,
        reason: format!("chart drawing failed: {e}"),
    }
}

/// PNG bytes of an RGB chart buffer of `size` pixels.
pub(super) fn rgb_png(rgb: &[u8], size: (u32, u32)) -> Result<Vec<u8>, RenderError> {
    encode_png(
        rgb,
        size.0,
        size.1,
        image::ExtendedColorType::Rgb8,
        PngCompression::Fast,
    )
}

pub(super) fn register_fonts() {
    // Registration only fails for an unparsable font; the bundled one is tested.
    let _ = register_font("sans-serif", FontStyle::Normal, DEJAVU_SANS);
}

impl BarChart {
    /// A chart with a title and y label, 720x400 px.
    pub fn new(title: impl Into<String>, y_label: impl Into<String>, bars: Vec<Bar>) -> Self {
        Self {
            title: title.into(),
            y_label: y_label.into(),
            bars,
            size: (720, 400),
        }
    }

    /// Raw RGB pixels of the chart.
    pub fn to_rgb(&self) -> Result<Vec<u8>, RenderError> {
        register_fonts();
        let (w, h) = self.size;
        let mut buf = vec![255u8; w as usize * h as usize * 3];
        {
            let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
            root.fill(&WHITE).map_err(draw_err)?;
            let top = self
                .bars
                .iter()
                .map(|b| b.interval.map_or(b.value, |i| i.1.max(b.value)))
                .fold(0.0f64, f64::max);
            let top = if top > 0.0 { top * 1.15 } else { 1.0 };
            let n = self.bars.len().max(1);
            let mut chart = ChartBuilder::on(&root)
                .caption(&self.title, ("sans-serif", 20))
                .margin(12)
                .x_label_area_size(36)
                .y_label_area_size(56)
                .build_cartesian_2d((0..n - 1).into_segmented(), 0.0..top)
                .map_err(draw_err)?;
            let labels: Vec<String> = self.bars.iter().map(|b| b.label.clone()).collect();
            chart
                .configure_mesh()
                .disable_x_mesh()
                .y_desc(&self.y_label)
                .x_label_formatter(&|x| match x {
                    SegmentValue::CenterOf(i) => labels.get(*i).cloned().unwrap_or_default(),
                    _ => String::new(),
                })
                .label_style(("sans-serif", 13))
                .draw()
                .map_err(draw_err)?;
            let color = RGBColor(70, 110, 180);
            chart
                .draw_series(self.bars.iter().enumerate().map(|(i, b)| {
                    let mut r = Rectangle::new(
                        [
                            (SegmentValue::Exact(i), 0.0),
                            (SegmentValue::Exact(i + 1), b.value),
                        ],
                        color.filled(),
                    );
                    r.set_margin(0, 0, 8, 8);
                    r
                }))
                .map_err(draw_err)?;
            chart
                .draw_series(self.bars.iter().enumerate().filter_map(|(i, b)| {
                    let (lo, hi) = b.interval?;
                    Some(PathElement::new(
                        vec![
                            (SegmentValue::CenterOf(i), lo),
                            (SegmentValue::CenterOf(i), hi),
                        ],
                        BLACK.stroke_width(2),
                    ))
                }))
                .map_err(draw_err)?;
            let label_style = TextStyle::from(("sans-serif", 12).into_font())
                .pos(Pos::new(HPos::Center, VPos::Bottom));
            chart
                .draw_series(self.bars.iter().enumerate().map(|(i, b)| {
                    let y = b.interval.map_or(b.value, |(_, hi)| hi.max(b.value));
                    Text::new(
                        format!("{:.1}", b.value),
                        (SegmentValue::CenterOf(i), y),
                        label_style.clone(),
                    )
                }))
                .map_err(draw_err)?;
            root.present().map_err(draw_err)?;
        }
        Ok(buf)
    }

    /// PNG bytes of the chart.
    pub fn to_png(&self) -> Result<Vec<u8>, RenderError> {
        rgb_png(&self.to_rgb()?, self.size)
    }

    /// evcxr hook: the chart as an inline PNG.
    pub fn evcxr_display(&self) {
        let text = format!("BarChart({}, {} bars)", self.title, self.bars.len());
        emit_png(self.to_png(), &text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_are_drawn_in_proportion() {
        let chart = BarChart::new(
            "scores",
            "%",
            vec![
                Bar {
                    label: "a".into(),
                    value: 80.0,
                    interval: Some((70.0, 90.0)),
                },
                Bar {
                    label: "b".into(),
                    value: 40.0,
                    interval: None,
                },
            ],
        );
        let rgb = chart.to_rgb().unwrap();
        let (w, h) = chart.size;
        let is_bar = |x: u32, y: u32| {
            let i = (y * w + x) as usize * 3;
            rgb[i..i + 3] == [70, 110, 180]
        };
        let height_of = |x: u32| (0..h).filter(|&y| is_bar(x, y)).count();
        // Find a column inside each bar: bar a fills the left half of the plot, bar b the right.
        let col_a = (0..w / 2).max_by_key(|&x| height_of(x)).unwrap();
        let col_b = (w * 5 / 8..w).max_by_key(|&x| height_of(x)).unwrap();
        let (ha, hb) = (height_of(col_a) as f64, height_of(col_b) as f64);
        assert!(ha > 100.0, "bar a is {ha} px");
        assert!(
            (ha / hb - 2.0).abs() < 0.05,
            "bars {ha} and {hb} px are not 2:1"
        );
        assert!(chart.to_png().unwrap().starts_with(b"\x89PNG"));
    }
}
