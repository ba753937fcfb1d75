//! Pillow-exact image resampling and padding, so page images reach the model with the same
//! pixels as the reference pipeline (`PIL.Image.resize(..., BICUBIC)` and `ImageOps.pad`).
//!
//! Pillow's `ImagingResample` for 8-bit images: per axis, Keys cubic weights (a = -0.5) with the
//! support widened by the downscale factor, normalised, converted to fixed point with 22
//! fractional bits; the horizontal pass runs first into an 8-bit intermediate (only over the
//! rows the vertical pass needs), then the vertical pass; each output is rounded and clamped.

use image::{Rgb, RgbImage};

const PRECISION_BITS: u32 = 32 - 8 - 2;

fn bicubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// Fixed-point coefficients for one axis: per output index `(first input, weights)`.
struct Coeffs {
    bounds: Vec<(usize, usize)>,
    ksize: usize,
    k: Vec<i32>,
}

fn precompute(in_size: usize, out_size: usize) -> Coeffs {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = 2.0 * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let mut bounds = Vec::with_capacity(out_size);
    let mut k = vec![0i32; out_size * ksize];
    let ss = 1.0 / filterscale;
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize - xmin;
        let mut w: Vec<f64> = (0..xmax)
            .map(|x| bicubic((x as f64 + xmin as f64 - center + 0.5) * ss))
            .collect();
        let ww: f64 = w.iter().sum();
        if ww != 0.0 {
            w.iter_mut().for_each(|v| *v /= ww);
        }
        for (x, v) in w.iter().enumerate() {
            let f = v * (1u32 << PRECISION_BITS) as f64;
            k[xx * ksize + x] = if *v < 0.0 {
                (-0.5 + f) as i32
            } else {
                (0.5 + f) as i32
            };
        }
        bounds.push((xmin, xmax));
    }
    Coeffs { bounds, ksize, k }
}

fn clip8(ss: i64) -> u8 {
    (ss >> PRECISION_BITS).clamp(0, 255) as u8
}

/// `image.resize((width, height), Image.BICUBIC)`, byte for byte.
pub fn resize_bicubic(img: &RgbImage, width: u32, height: u32) -> RgbImage {
    let (w0, h0) = (img.width() as usize, img.height() as usize);
    let (w1, h1) = (width as usize, height as usize);
    if (w0, h0) == (w1, h1) {
        return img.clone();
    }
    let horiz = precompute(w0, w1);
    let vert = precompute(h0, h1);
    let need_h = w1 != w0;
    let need_v = h1 != h0;
    let src = img.as_raw();
    // Horizontal pass over the rows the vertical pass reads.
    let (first, last) = if need_v {
        let (b0, _) = vert.bounds[0];
        let (bl, sl) = vert.bounds[h1 - 1];
        (b0, bl + sl)
    } else {
        (0, h0)
    };
    let mut tmp: Vec<u8>;
    let (tmp_w, tmp_rows, tmp_first) = if need_h {
        tmp = vec![0u8; (last - first) * w1 * 3];
        for y in first..last {
            let row = &src[y * w0 * 3..(y + 1) * w0 * 3];
            let out = &mut tmp[(y - first) * w1 * 3..(y - first + 1) * w1 * 3];
            for (xx, &(xmin, xmax)) in horiz.bounds.iter().enumerate() {
                let k = &horiz.k[xx * horiz.ksize..xx * horiz.ksize + xmax];
                for c in 0..3 {
                    let mut ss: i64 = 1 << (PRECISION_BITS - 1);
                    for (x, kv) in k.iter().enumerate() {
                        ss += row[(xmin + x) * 3 + c] as i64 * *kv as i64;
                    }
                    out[xx * 3 + c] = clip8(ss);
                }
            }
        }
        (w1, last - first, first)
    } else {
        tmp = src.clone();
        (w0, h0, 0)
    };
    let _ = tmp_rows;
    if !need_v {
        return RgbImage::from_raw(w1 as u32, h1 as u32, tmp).expect("buffer size");
    }
    let mut out = vec![0u8; w1 * h1 * 3];
    for (yy, &(ymin, ymax)) in vert.bounds.iter().enumerate() {
        let k = &vert.k[yy * vert.ksize..yy * vert.ksize + ymax];
        let ymin = ymin - tmp_first;
        for x in 0..tmp_w * 3 {
            let mut ss: i64 = 1 << (PRECISION_BITS - 1);
            for (y, kv) in k.iter().enumerate() {
                ss += tmp[(ymin + y) * tmp_w * 3 + x] as i64 * *kv as i64;
            }
            out[yy * w1 * 3 + x] = clip8(ss);
        }
    }
    RgbImage::from_raw(w1 as u32, h1 as u32, out).expect("buffer size")
}

/// Python's `round()` of a non-negative float: half to even.
fn py_round(v: f64) -> i64 {
    let f = v.floor();
    let d = v - f;
    if d > 0.5 || (d == 0.5 && (f as i64) % 2 != 0) {
        f as i64 + 1
    } else {
        f as i64
    }
}

/// `ImageOps.contain(image, size, BICUBIC)`: the largest aspect-preserving resize that fits.
pub fn contain(img: &RgbImage, width: u32, height: u32) -> RgbImage {
    let im_ratio = img.width() as f64 / img.height() as f64;
    let dest_ratio = width as f64 / height as f64;
    let (mut w, mut h) = (width, height);
    if im_ratio != dest_ratio {
        if im_ratio > dest_ratio {
            let nh = py_round(img.height() as f64 / img.width() as f64 * width as f64) as u32;
            if nh != height {
                h = nh;
            }
        } else {
            let nw = py_round(img.width() as f64 / img.height() as f64 * height as f64) as u32;
            if nw != width {
                w = nw;
            }
        }
    }
    resize_bicubic(img, w.max(1), h.max(1))
}

/// `ImageOps.pad(image, size, BICUBIC, color, centering=(0.5, 0.5))`: contain, then centre on a
/// canvas of `color` (offsets with Python's rounding).
pub fn pad(img: &RgbImage, width: u32, height: u32, color: [u8; 3]) -> RgbImage {
    let resized = contain(img, width, height);
    if resized.dimensions() == (width, height) {
        return resized;
    }
    let mut out = RgbImage::from_pixel(width, height, Rgb(color));
    let (x, y) = if resized.width() != width {
        (py_round((width - resized.width()) as f64 * 0.5) as i64, 0)
    } else {
        (0, py_round((height - resized.height()) as f64 * 0.5) as i64)
    };
    image::imageops::replace(&mut out, &resized, x, y);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_rounding_is_half_even() {
        assert_eq!(py_round(0.5), 0);
        assert_eq!(py_round(1.5), 2);
        assert_eq!(py_round(2.5), 2);
        assert_eq!(py_round(2.4999), 2);
    }

    #[test]
    fn constant_images_stay_constant_and_pad_centres() {
        let img = RgbImage::from_pixel(30, 10, Rgb([200, 10, 99]));
        let r = resize_bicubic(&img, 17, 41);
        assert!(r.pixels().all(|p| p.0 == [200, 10, 99]));
        let p = pad(&img, 20, 20, [127, 127, 127]);
        // 30x10 -> contain 20x7 (round(10/30*20) = 7), centred at y = round(13 * 0.5) = 6.
        assert_eq!(p.get_pixel(0, 5).0, [127, 127, 127]);
        assert_eq!(p.get_pixel(0, 6).0, [200, 10, 99]);
        assert_eq!(p.get_pixel(19, 12).0, [200, 10, 99]);
        assert_eq!(p.get_pixel(0, 13).0, [127, 127, 127]);
    }
}
