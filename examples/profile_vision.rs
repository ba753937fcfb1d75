use candle_core::{DType, Device, Tensor};
use deepsynth::model::{Config, VisionEncoder};
use deepsynth::weights::Weights;
fn main() {
    let dir = std::path::PathBuf::from(std::env::args().nth(1).unwrap());
    let cfg = Config::from_file(dir.join("config.json")).unwrap();
    let w = Weights::from_dir(&dir, DType::F32, &Device::Cpu).unwrap();
    let v = VisionEncoder::new(&cfg, &w.pp("model")).unwrap();
    let x = Tensor::rand(-1f32, 1f32, (1, 3, 1024, 1024), &Device::Cpu).unwrap();
    for _ in 0..2 {
        let t = std::time::Instant::now();
        let o = v.encode_views(&x).unwrap();
        eprintln!("total {:.3}s {:?}", t.elapsed().as_secs_f64(), o.dims());
    }
}
