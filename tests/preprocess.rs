//! Image preprocessing and position-table resampling against goldens made with Pillow 13.0.0
//! and torch 2.15.0 (`tests/fixtures/preprocess/make_goldens.py`): byte-exact pixels, and
//! interpolation within 1e-5.

use std::path::PathBuf;

use candle_core::Device;
use deepsynth::data::preprocess::dynamic_tiles;
use deepsynth::data::resample::{pad, resize_bicubic};
use deepsynth::data::{prepare_image, ImageMode};
use deepsynth::model::interp::{bicubic_antialias, linear_1d};
use image::RgbImage;
use sha2::{Digest, Sha256};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/preprocess")
}

fn source(name: &str) -> RgbImage {
    image::open(dir().join(format!("src_{name}.png")))
        .unwrap()
        .to_rgb8()
}

fn digest(img: &RgbImage) -> String {
    let d = Sha256::digest(img.as_raw());
    d.iter().map(|b| format!("{b:02x}")).collect()
}

fn check(case: &serde_json::Value, img: &RgbImage, what: &str) {
    let size = case["size"].as_array().unwrap();
    assert_eq!(
        (img.width() as u64, img.height() as u64),
        (size[0].as_u64().unwrap(), size[1].as_u64().unwrap()),
        "{what}: size"
    );
    if let Some(png) = case.get("png").and_then(|p| p.as_str()) {
        let want = image::open(dir().join(png)).unwrap().to_rgb8();
        let diffs = img
            .as_raw()
            .iter()
            .zip(want.as_raw())
            .filter(|(a, b)| a != b)
            .count();
        assert_eq!(diffs, 0, "{what}: {diffs} bytes differ from Pillow");
    }
    assert_eq!(
        digest(img),
        case["sha256"].as_str().unwrap(),
        "{what}: pixels differ from Pillow"
    );
}

#[test]
fn resize_pad_and_tiles_match_pillow_byte_for_byte() {
    let cases: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(dir().join("cases.json")).unwrap()).unwrap();
    let mut checked = 0;
    for case in &cases {
        let src = source(case["src"].as_str().unwrap());
        match case["op"].as_str().unwrap() {
            "resize" => {
                let (w, h) = (
                    case["w"].as_u64().unwrap() as u32,
                    case["h"].as_u64().unwrap() as u32,
                );
                check(
                    case,
                    &resize_bicubic(&src, w, h),
                    &format!("resize {w}x{h}"),
                );
            }
            "pad" => {
                let s = case["target"].as_u64().unwrap() as u32;
                check(case, &pad(&src, s, s, [127, 127, 127]), &format!("pad {s}"));
            }
            "tiles" => {
                let (tiles, grid) = dynamic_tiles(&src, &ImageMode::GUNDAM);
                let want = case["grid"].as_array().unwrap();
                assert_eq!(
                    (grid.0 as u64, grid.1 as u64),
                    (want[0].as_u64().unwrap(), want[1].as_u64().unwrap())
                );
                let wt = case["tiles"].as_array().unwrap();
                assert_eq!(tiles.len(), wt.len());
                for (i, (t, w)) in tiles.iter().zip(wt).enumerate() {
                    check(w, t, &format!("tile {i}"));
                }
            }
            other => panic!("unknown case {other}"),
        }
        checked += 1;
    }
    assert_eq!(checked, 11);
}

#[test]
fn gundam_mode_prepares_global_view_and_tiles() {
    let src = source("c"); // 1300x900 -> 3x2 tiles
    let p = prepare_image(&src, &ImageMode::GUNDAM, &Device::Cpu).unwrap();
    assert_eq!(p.grid, (3, 2));
    assert_eq!(p.global.dims(), &[3, 1024, 1024]);
    let (tiles, grid) = p.tiles.unwrap();
    assert_eq!(grid, (3, 2));
    assert_eq!(tiles.dims(), &[6, 3, 640, 640]);
    assert_eq!(p.positions, 273 + (10 * 3 + 1) * (10 * 2));
    // A small page in crop mode has no tiles.
    let small = prepare_image(&source("a"), &ImageMode::GUNDAM, &Device::Cpu).unwrap();
    assert!(small.tiles.is_none());
    assert_eq!(small.positions, 273);
}

#[test]
fn interpolation_matches_torch() {
    let t = candle_core::safetensors::load(dir().join("interp.safetensors"), &Device::Cpu).unwrap();
    for i in 0..5 {
        let x = &t[&format!("bicubic{i}.in")];
        let y = &t[&format!("bicubic{i}.out")];
        let (c, hi, wi) = x.dims3().unwrap();
        let (_, ho, wo) = y.dims3().unwrap();
        let got = bicubic_antialias(
            &x.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            c,
            (hi, wi),
            (ho, wo),
        );
        let want = y.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let max = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(max < 1e-5, "bicubic case {i}: max diff {max}");
    }
    for i in 0..4 {
        let x = &t[&format!("linear{i}.in")];
        let y = &t[&format!("linear{i}.out")];
        let (c, li) = x.dims2().unwrap();
        let lo = y.dims2().unwrap().1;
        let got = linear_1d(
            &x.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            c,
            li,
            lo,
        );
        let want = y.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let max = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(max < 1e-6, "linear case {i}: max diff {max}");
    }
}
