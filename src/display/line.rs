//! Line charts (training curves: loss, ROUGE against step) drawn with plotters into PNG.

use plotters::prelude::*;

use super::chart::{draw_err, register_fonts, rgb_png};
use super::emit_png;
use crate::render::RenderError;

/// One named series of `(x, y)` points; non-finite points are left out.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// Legend label.
    pub label: String,
    /// Points in x order.
    pub points: Vec<(f64, f64)>,
}

impl Series {
    /// A series from a label and points.
    pub fn new(label: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Self {
            label: label.into(),
            points,
        }
    }
}

#[cfg(feature = "frames")]
impl Series {
    /// One series per run of a [`crate::track::Runs::load`] frame (`run, step, tag, value`
    /// columns), of the rows whose tag is `tag`, in step order; runs in frame order.
    pub fn from_runs(
        df: &polars::prelude::DataFrame,
        tag: &str,
    ) -> Result<Vec<Series>, RenderError> {
        let bad = |e: polars::prelude::PolarsError| RenderError::Png {
            width: 0,
            height: 0,
            reason: format!("not a runs frame: {e}"),
        };
        let col = |name: &str| df.column(name).map_err(bad);
        let runs = col("run")?.str().map_err(bad)?.clone();
        let tags = col("tag")?.str().map_err(bad)?.clone();
        let steps = col("step")?
            .cast(&polars::prelude::DataType::Float64)
            .map_err(bad)?;
        let steps = steps.f64().map_err(bad)?.clone();
        let values = col("value")?.f64().map_err(bad)?.clone();
        let mut out: Vec<Series> = Vec::new();
        for i in 0..df.height() {
            let (Some(run), Some(t), Some(x), Some(y)) =
                (runs.get(i), tags.get(i), steps.get(i), values.get(i))
            else {
                continue;
            };
            if t != tag {
                continue;
            }
            match out.iter_mut().find(|s| s.label == run) {
                Some(s) => s.points.push((x, y)),
                None => out.push(Series::new(run, vec![(x, y)])),
            }
        }
        for s in &mut out {
            s.points.sort_by(|a, b| a.0.total_cmp(&b.0));
        }
        Ok(out)
    }
}

/// The colours of series 0, 1, 2, ... (cycled).
pub const SERIES_COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// A line chart of one or more series with a legend; series of a single point are drawn as a
/// dot.
#[derive(Clone, Debug, PartialEq)]
pub struct LineChart {
    /// Title.
    pub title: String,
    /// X axis label.
    pub x_label: String,
    /// Y axis label.
    pub y_label: String,
    /// The series, drawn in order.
    pub series: Vec<Series>,
    /// Image size in pixels.
    pub size: (u32, u32),
}

impl LineChart {
    /// A 720x400 chart.
    pub fn new(
        title: impl Into<String>,
        x_label: impl Into<String>,
        y_label: impl Into<String>,
        series: Vec<Series>,
    ) -> Self {
        Self {
            title: title.into(),
            x_label: x_label.into(),
            y_label: y_label.into(),
            series,
            size: (720, 400),
        }
    }

    /// The data range `(x0, x1, y0, y1)`, padded so flat or single-point data still has area.
    fn bounds(&self) -> (f64, f64, f64, f64) {
        let pts = self
            .series
            .iter()
            .flat_map(|s| s.points.iter())
            .filter(|(x, y)| x.is_finite() && y.is_finite());
        let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
        for &(x, y) in pts {
            (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
        }
        if x0 > x1 {
            return (0.0, 1.0, 0.0, 1.0);
        }
        if x1 - x0 < 1e-12 {
            (x0, x1) = (x0 - 0.5, x1 + 0.5);
        }
        let pad = ((y1 - y0) * 0.08).max(1e-6 * y1.abs().max(1.0));
        (x0, x1, y0 - pad, y1 + pad)
    }

    /// Raw RGB pixels of the chart.
    pub fn to_rgb(&self) -> Result<Vec<u8>, RenderError> {
        register_fonts();
        let (w, h) = self.size;
        let mut buf = vec![255u8; w as usize * h as usize * 3];
        {
            let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
            root.fill(&WHITE).map_err(draw_err)?;
            let (x0, x1, y0, y1) = self.bounds();
            let mut chart = ChartBuilder::on(&root)
                .caption(&self.title, ("sans-serif", 20))
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(60)
                .build_cartesian_2d(x0..x1, y0..y1)
                .map_err(draw_err)?;
            chart
                .configure_mesh()
                .x_desc(&self.x_label)
                .y_desc(&self.y_label)
                .label_style(("sans-serif", 13))
                .draw()
                .map_err(draw_err)?;
            for (i, s) in self.series.iter().enumerate() {
                let color = SERIES_COLORS[i % SERIES_COLORS.len()];
                let pts: Vec<(f64, f64)> = s
                    .points
                    .iter()
                    .copied()
                    .filter(|(x, y)| x.is_finite() && y.is_finite())
                    .collect();
                chart
                    .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
                    .map_err(draw_err)?
                    .label(s.label.clone())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(3))
                    });
                if pts.len() <= 24 {
                    chart
                        .draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled())))
                        .map_err(draw_err)?;
                }
            }
            if !self.series.is_empty() {
                chart
                    .configure_series_labels()
                    .background_style(WHITE.mix(0.85))
                    .border_style(BLACK)
                    .label_font(("sans-serif", 13))
                    .draw()
                    .map_err(draw_err)?;
            }
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
        let text = format!(
            "LineChart({}, {} series: {})",
            self.title,
            self.series.len(),
            self.series
                .iter()
                .map(|s| format!("{} ({} points)", s.label, s.points.len()))
                .collect::<Vec<_>>()
                .join(", ")
        );
        emit_png(self.to_png(), &text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pixels_of(rgb: &[u8], c: RGBColor) -> Vec<(u32, u32)> {
        let w = 720u32;
        rgb.chunks(3)
            .enumerate()
            .filter(|(_, p)| p == &[c.0, c.1, c.2])
            .map(|(i, _)| (i as u32 % w, i as u32 / w))
            .collect()
    }

    #[test]
    fn a_falling_series_is_drawn_falling_and_a_rising_one_rising() {
        let down = Series::new(
            "loss",
            (0..50).map(|i| (i as f64, 50.0 - i as f64)).collect(),
        );
        let up = Series::new("rougeL", vec![(0.0, 0.0), (49.0, 50.0)]);
        let rgb = LineChart::new("curves", "step", "value", vec![down, up])
            .to_rgb()
            .unwrap();
        for (color, falling) in [(SERIES_COLORS[0], true), (SERIES_COLORS[1], false)] {
            // Leave out the legend (top right corner): only the plotted line.
            let px: Vec<(u32, u32)> = pixels_of(&rgb, color)
                .into_iter()
                .filter(|&(x, y)| !(x > 560 && y < 120))
                .collect();
            assert!(px.len() > 200, "{} line pixels", px.len());
            let left = px.iter().filter(|p| p.0 < 250).map(|p| p.1 as f64);
            let right = px.iter().filter(|p| p.0 > 500).map(|p| p.1 as f64);
            let mean = |it: Box<dyn Iterator<Item = f64>>| {
                let v: Vec<f64> = it.collect();
                v.iter().sum::<f64>() / v.len() as f64
            };
            let (l, r) = (mean(Box::new(left)), mean(Box::new(right)));
            // Image rows grow downwards: a falling curve ends lower on screen (larger row).
            assert_eq!(r > l + 50.0, falling, "left row {l}, right row {r}");
        }
    }

    #[cfg(feature = "frames")]
    #[test]
    fn runs_frames_become_one_series_per_run() {
        use polars::prelude::*;
        let df = df!(
            "run" => ["a", "a", "b", "a", "b"],
            "step" => [2u64, 1, 1, 1, 2],
            "tag" => ["eval/loss", "eval/loss", "eval/loss", "train/loss", "eval/loss"],
            "value" => [3.0, 4.0, 5.0, 9.0, 2.5]
        )
        .unwrap();
        let s = super::Series::from_runs(&df, "eval/loss").unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(
            (s[0].label.as_str(), s[0].points.clone()),
            ("a", vec![(1.0, 4.0), (2.0, 3.0)])
        );
        assert_eq!(s[1].points, vec![(1.0, 5.0), (2.0, 2.5)]);
        assert!(super::Series::from_runs(&df, "absent").unwrap().is_empty());
        assert!(super::Series::from_runs(&df.drop("tag").unwrap(), "eval/loss").is_err());
    }

    #[test]
    fn empty_flat_and_non_finite_data_still_draw() {
        for series in [
            vec![],
            vec![Series::new("flat", vec![(1.0, 2.0), (2.0, 2.0)])],
            vec![Series::new("one", vec![(3.0, f64::NAN), (3.0, 1.0)])],
        ] {
            let png = LineChart::new("t", "x", "y", series).to_png().unwrap();
            assert!(png.starts_with(b"\x89PNG"));
        }
    }
}
