//! NF4 weights resident on a device: the packed codes and the (double-quantised) block scales
//! live there as `u8`/`f32` tensors, 4.127 bits per parameter with bitsandbytes' defaults
//! (blocksize 64, double quantisation), and one custom op dequantises them there into the
//! compute dtype, per layer and per product, as bitsandbytes' `dequantize_4bit` does on a GPU.
//!
//! On CUDA the op is a kernel compiled at first use with NVRTC (no FMA contraction, no flush to
//! zero), so its values are bit-identical to the CPU dequantisation of
//! [`Nf4Tensor::dequantize_into_as`]: `NF4[code] * scale` with
//! `scale = map[c] * nested[b / 256] + offset`, each product and sum rounded once in f32, then
//! rounded through the requested dtypes with round-to-nearest-even. The CPU implementation of the same op is the reference
//! its tests hold bit for bit against [`Nf4Tensor`]; the CUDA one is held against it by the
//! device suite in the GPU check.

use candle_core::{CpuStorage, CustomOp3, DType, Device, Layout, Shape, Tensor};

use super::nf4::{Absmax, Nf4Tensor, QuantDtype, NF4_CODE};

/// Where the scales' tables start in the op's `table` input: the 16 NF4 values, then (double
/// quantisation) the offset, the 256-entry nested map and the nested scales.
const OFFSET_AT: usize = 16;
const MAP_AT: usize = 17;
const NESTED_AT: usize = 17 + 256;

/// An NF4 `[rows, cols]` matrix whose codes and scales are tensors on one device.
#[derive(Clone, Debug)]
pub struct Nf4Resident {
    codes: Tensor,
    scales: Tensor,
    table: Tensor,
    op: Nf4Dequant,
}

/// The dequantisation op: inputs `codes` (u8, two per byte, high nibble first), `scales` (u8
/// codes of double-quantised scales, or f32 scales) and `table` (f32, see [`OFFSET_AT`]).
#[derive(Clone, Copy, Debug)]
struct Nf4Dequant {
    len: usize,
    rows: usize,
    cols: usize,
    blocksize: usize,
    nested_blocksize: usize,
    double: bool,
    /// Rounding applied to each value before it is converted to `out`.
    round: QuantDtype,
    /// The output dtype (f32, bf16 or f16).
    out: DType,
}

impl Nf4Resident {
    /// Copies `q`'s codes and scales to `device`.
    pub fn upload(q: &Nf4Tensor, device: &Device) -> candle_core::Result<Self> {
        let [rows, cols] = q.shape[..] else {
            candle_core::bail!("an NF4 matrix must be 2-D, got {:?}", q.shape)
        };
        let mut table = NF4_CODE.to_vec();
        let (scales, double, nested_blocksize) = match &q.absmax {
            Absmax::Single(v) => (Tensor::from_slice(v, v.len(), device)?, false, 1),
            Absmax::Double {
                codes,
                nested_absmax,
                nested_map,
                offset,
                nested_blocksize,
            } => {
                if nested_map.len() != 256 {
                    candle_core::bail!("NF4 nested map has {} entries, not 256", nested_map.len())
                }
                table.push(*offset);
                table.extend_from_slice(nested_map);
                table.extend_from_slice(nested_absmax);
                (
                    Tensor::from_slice(codes, codes.len(), device)?,
                    true,
                    *nested_blocksize,
                )
            }
        };
        Ok(Self {
            codes: Tensor::from_slice(&q.codes, q.codes.len(), device)?,
            scales,
            table: Tensor::from_slice(&table, table.len(), device)?,
            op: Nf4Dequant {
                len: q.len(),
                rows,
                cols,
                blocksize: q.blocksize,
                nested_blocksize,
                double,
                round: QuantDtype::F32,
                out: DType::F32,
            },
        })
    }

    /// The device the codes and scales live on.
    pub fn device(&self) -> &Device {
        self.codes.device()
    }

    /// Bytes the codes, scales and tables take on the device.
    pub fn storage_bytes(&self) -> usize {
        [&self.codes, &self.scales, &self.table]
            .iter()
            .map(|t| t.elem_count() * t.dtype().size_in_bytes())
            .sum()
    }

    /// The matrix dequantised on its device as a `[rows, cols]` tensor of `out` (f32, bf16 or
    /// f16), each value rounded through `round` first (a bf16 checkpoint's values for
    /// bitsandbytes' backward, [`QuantDtype::F32`] for none).
    pub fn dequantize(&self, round: QuantDtype, out: DType) -> candle_core::Result<Tensor> {
        if !matches!(out, DType::F32 | DType::BF16 | DType::F16) {
            candle_core::bail!("NF4 dequantises to f32, bf16 or f16, not {out:?}")
        }
        let op = Nf4Dequant {
            round,
            out,
            ..self.op
        };
        self.codes.apply_op3_no_bwd(&self.scales, &self.table, &op)
    }
}

fn contiguous<'a, T>(v: &'a [T], l: &Layout, what: &str) -> candle_core::Result<&'a [T]> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&v[a..b]),
        None => candle_core::bail!("NF4 {what} must be contiguous"),
    }
}

impl Nf4Dequant {
    /// The f32 scale of block `b`, as [`Absmax::get`] computes it.
    #[inline]
    fn scale(&self, codes: &[u8], f: &[f32], table: &[f32], b: usize) -> f32 {
        if self.double {
            table[MAP_AT + codes[b] as usize] * table[NESTED_AT + b / self.nested_blocksize]
                + table[OFFSET_AT]
        } else {
            f[b]
        }
    }
}

impl CustomOp3 for Nf4Dequant {
    fn name(&self) -> &'static str {
        "deepsynth-nf4-dequantize"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (CpuStorage::U8(codes), CpuStorage::F32(table)) = (s1, s3) else {
            candle_core::bail!("NF4 dequantisation takes u8 codes and an f32 table")
        };
        let codes = contiguous(codes, l1, "codes")?;
        let table = contiguous(table, l3, "table")?;
        let (scale_codes, scale_f32): (&[u8], &[f32]) = match (s2, self.double) {
            (CpuStorage::U8(v), true) => (contiguous(v, l2, "scales")?, &[]),
            (CpuStorage::F32(v), false) => (&[], contiguous(v, l2, "scales")?),
            _ => candle_core::bail!("NF4 scales: u8 codes (double) or f32 values (single)"),
        };
        let mut out = vec![0f32; self.len];
        for (j, o) in out.iter_mut().enumerate() {
            let s = self.scale(scale_codes, scale_f32, table, j / self.blocksize);
            let byte = codes[j / 2];
            let nib = if j % 2 == 0 { byte >> 4 } else { byte & 0x0f };
            *o = self.round.round(table[nib as usize] * s);
        }
        let storage = match self.out {
            DType::F32 => CpuStorage::F32(out),
            DType::BF16 => CpuStorage::BF16(out.into_iter().map(::half::bf16::from_f32).collect()),
            DType::F16 => CpuStorage::F16(out.into_iter().map(::half::f16::from_f32).collect()),
            other => candle_core::bail!("NF4 dequantises to f32, bf16 or f16, not {other:?}"),
        };
        Ok((storage, Shape::from((self.rows, self.cols))))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
        s3: &candle_core::CudaStorage,
        l3: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        super::nf4_cuda::dequantize(self.cuda_args(), (s1, l1), (s2, l2), (s3, l3))
    }
}

#[cfg(feature = "cuda")]
impl Nf4Dequant {
    fn cuda_args(&self) -> super::nf4_cuda::Args {
        super::nf4_cuda::Args {
            len: self.len,
            blocksize: self.blocksize,
            nested_blocksize: self.nested_blocksize,
            double: self.double,
            round: match self.round {
                QuantDtype::F32 => 0,
                QuantDtype::Bf16 => 1,
                QuantDtype::F16 => 2,
            },
            out: self.out,
            shape: Shape::from((self.rows, self.cols)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    fn matrix(rows: usize, cols: usize, seed: u64) -> Vec<f32> {
        let mut rng = Rng::new(seed);
        (0..rows * cols)
            .map(|_| rng.normal() as f32 * 0.02)
            .collect()
    }

    /// The op's values equal the CPU dequantisation bit for bit: single and double scales,
    /// odd lengths and blocks that straddle a byte, every rounding and output dtype.
    #[test]
    fn resident_dequantisation_is_bit_identical_to_the_host_one() {
        for (rows, cols, bs, double, dtype) in [
            (3, 67, 64, true, QuantDtype::Bf16),
            (5, 33, 32, false, QuantDtype::F32),
            (64, 80, 64, true, QuantDtype::F16),
            (7, 9, 128, true, QuantDtype::F32),
        ] {
            let q = Nf4Tensor::quantize(
                &matrix(rows, cols, rows as u64),
                &[rows, cols],
                bs,
                double,
                dtype,
            );
            let r = Nf4Resident::upload(&q, &Device::Cpu).unwrap();
            for (round, out) in [
                (QuantDtype::F32, DType::F32),
                (dtype, DType::F32),
                (QuantDtype::F32, DType::BF16),
                (dtype, DType::BF16),
                (QuantDtype::F32, DType::F16),
            ] {
                let chain = [round, super::super::frozen_ops::compute_round(out)];
                let mut want = vec![0f32; q.len()];
                q.dequantize_into_as(0, &mut want, &chain);
                let got = r.dequantize(round, out).unwrap();
                assert_eq!(got.dims(), [rows, cols]);
                assert_eq!(got.dtype(), out);
                let got: Vec<f32> = got
                    .to_dtype(DType::F32)
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1()
                    .unwrap();
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(
                    bits(&got),
                    bits(&want),
                    "{rows}x{cols} bs {bs} double {double} {dtype:?} -> {round:?}/{out:?}"
                );
            }
        }
    }

    /// bitsandbytes' defaults (blocksize 64, double quantisation with 256 blocks per nested
    /// scale) keep 4 + 8/64 + 32/(64*256) bits per parameter, plus the 273 f32 of the tables.
    #[test]
    fn resident_storage_is_4_127_bits_per_parameter() {
        let (rows, cols) = (256, 1024);
        let q = Nf4Tensor::quantize(
            &matrix(rows, cols, 1),
            &[rows, cols],
            64,
            true,
            QuantDtype::Bf16,
        );
        let r = Nf4Resident::upload(&q, &Device::Cpu).unwrap();
        let n = rows * cols;
        let blocks = n / 64;
        let nested = blocks.div_ceil(256);
        assert_eq!(
            r.storage_bytes(),
            n / 2 + blocks + 4 * (16 + 1 + 256 + nested)
        );
        let bits = 8.0 * (n / 2 + blocks + 4 * nested) as f64 / n as f64;
        assert!((bits - 4.127).abs() < 1e-3, "{bits}");
    }
}
