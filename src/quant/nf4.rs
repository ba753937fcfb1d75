//! NF4 4-bit quantisation, bit-compatible with bitsandbytes (Dettmers et al., 2023, QLoRA,
//! <https://arxiv.org/abs/2305.14314>), including double quantisation of the block scales.
//!
//! Quantisation follows what bitsandbytes 0.50.2 runs on the CPU, operation for operation, so
//! the whole quantisation state is byte-identical to its CPU output (`tests/nf4_bnb.rs`):
//! - NF4 (`quantize_4bit`, bitsandbytes' torch "default" kernel): per block of `blocksize`
//!   elements `absmax = max |x|`; a full block is scaled by `x * (1 / max(absmax, 1e-38))`,
//!   the partial last block by `x / max(absmax, 1e-38)` (and stores that clamped absmax, so an
//!   all-zero partial block stores 1e-38); the code is the number of the 15 f32 midpoints
//!   between NF4 values that the scaled value exceeds (`torch.bucketize`: ties to the lower
//!   code). Element `2i` goes in the high nibble, `2i + 1` in the low one; an odd count pads
//!   with nibble 7 (0.0); an all-zero block is `0x77`.
//! - Double quantisation: `offset = absmax.mean()` in float32, in torch's order of additions
//!   ([`super::torch_reduce`]; from 32,768 blocks on that order depends on torch's thread
//!   count), then `absmax - offset` quantised per 256 by bitsandbytes' C++
//!   `quantize_cpu`: per block `m = max |x|` (codes 0 when `m = 0`), and each code read from a
//!   65,536-entry table at `trunc(fma((clamp(x * (1 / m), -1, 1) + 1) / 2, 65535, 0.5))`
//!   ([`quantize_blockwise`]).
//!
//! bitsandbytes on CUDA quantises with its own kernels: the same NF4 codes for a full block with
//! a non-zero scale (its threshold tree uses the same f32 midpoints), but `0x00` for an all-zero
//! block, the partial last block multiplied by `1 / absmax` without the clamp, torch's CUDA
//! reduction for the mean and a nearest-value binary search for the 8-bit codes (~1% of them
//! differ from the CPU table). DeepSynth has no CUDA quantisation path and does not reproduce
//! those.
//!
//! Dequantise: `absmax[b] = f32(f32(map[q[b]] * nested[b / 256]) + offset)`,
//! `w = f32(NF4[code] * absmax[j / blocksize])`, rounded to bf16/f16 when the original dtype was.

use half::{bf16, f16};
use serde::{Deserialize, Serialize};

/// The 16 NF4 values (bitsandbytes' table, as the f32 bit patterns of the spec).
pub const NF4_CODE: [f32; 16] = [
    f32::from_bits(0xbf80_0000), // -1.0
    f32::from_bits(0xbf32_39b1), // -0.6961928009986877
    f32::from_bits(0xbf06_6b30), // -0.5250730514526367
    f32::from_bits(0xbeca_32a0), // -0.39491748809814453
    f32::from_bits(0xbe91_a24d), // -0.28444138169288635
    f32::from_bits(0xbe3d_353f), // -0.18477343022823334
    f32::from_bits(0xbdba_7871), // -0.09105003625154495
    0.0,
    f32::from_bits(0x3da2_faff), // 0.07958029955625534
    f32::from_bits(0x3e24_cae3), // 0.16093020141124725
    f32::from_bits(0x3e7c_04dd), // 0.24611230194568634
    f32::from_bits(0x3ead_033a), // 0.33791524171829224
    f32::from_bits(0x3ee1_a4b8), // 0.44070982933044434
    f32::from_bits(0x3f10_07ab), // 0.5626170039176941
    f32::from_bits(0x3f39_13b3), // 0.7229568362236023
    1.0,
];

const DYNAMIC_MAP_BITS: [u32; 256] = [
    0xbf7e3333, 0xbf7a999a, 0xbf770000, 0xbf736666, 0xbf6fcccd, 0xbf6c3333, 0xbf68999a, 0xbf650000,
    0xbf616666, 0xbf5dcccd, 0xbf5a3333, 0xbf56999a, 0xbf530000, 0xbf4f6666, 0xbf4bcccd, 0xbf483333,
    0xbf44999a, 0xbf410000, 0xbf3d6666, 0xbf39cccd, 0xbf363334, 0xbf32999a, 0xbf2f0000, 0xbf2b6666,
    0xbf27cccd, 0xbf243334, 0xbf20999a, 0xbf1d0000, 0xbf196666, 0xbf15cccd, 0xbf123334, 0xbf0e999a,
    0xbf0b0000, 0xbf076666, 0xbf03cccc, 0xbf003333, 0xbef93332, 0xbef20000, 0xbeeacccc, 0xbee3999a,
    0xbedc6666, 0xbed53333, 0xbece0000, 0xbec6cccc, 0xbebf999a, 0xbeb86666, 0xbeb13333, 0xbeaa0000,
    0xbea2cccc, 0xbe9b999a, 0xbe946666, 0xbe8d3334, 0xbe860000, 0xbe7d9999, 0xbe6f3333, 0xbe60cccd,
    0xbe526666, 0xbe440000, 0xbe35999a, 0xbe273333, 0xbe18cccd, 0xbe0a6666, 0xbdf80000, 0xbddb3334,
    0xbdc9eb85, 0xbdc428f7, 0xbdbe6667, 0xbdb8a3d7, 0xbdb2e148, 0xbdad1eb8, 0xbda75c2a, 0xbda1999a,
    0xbd9bd70a, 0xbd96147b, 0xbd9051eb, 0xbd8a8f5d, 0xbd84cccd, 0xbd7e147b, 0xbd728f5d, 0xbd670a3d,
    0xbd5b851f, 0xbd500000, 0xbd447ae1, 0xbd38f5c3, 0xbd2d70a3, 0xbd21eb85, 0xbd166667, 0xbd0ae148,
    0xbcfeb852, 0xbce7ae15, 0xbcd0a3d7, 0xbcb9999a, 0xbca28f5d, 0xbc8b851f, 0xbc68f5c3, 0xbc3ae148,
    0xbc1f3b64, 0xbc160418, 0xbc0ccccd, 0xbc039581, 0xbbf4bc6a, 0xbbe24dd3, 0xbbcfdf3b, 0xbbbd70a4,
    0xbbab020d, 0xbb989374, 0xbb8624dd, 0xbb676c8a, 0xbb428f5c, 0xbb1db22d, 0xbaf1a9fc, 0xbaa7ef9d,
    0xba7765ff, 0xba59e83e, 0xba3c6a80, 0xba1eecc1, 0xba016f01, 0xb9c7e283, 0xb98ce705, 0xb923d70b,
    0xb8ba1f4b, 0xb88aefb3, 0xb8378034, 0xb7b24206, 0xb70205ff, 0xb65a1a94, 0xb513a3b7, 0x00000000,
    0x3513a3b7, 0x365a1a94, 0x370205ff, 0x37b24206, 0x38378034, 0x388aefb3, 0x38ba1f4b, 0x3923d70b,
    0x398ce705, 0x39c7e283, 0x3a016f01, 0x3a1eecc1, 0x3a3c6a80, 0x3a59e83e, 0x3a7765ff, 0x3aa7ef9d,
    0x3af1a9fc, 0x3b1db22d, 0x3b428f5c, 0x3b676c8a, 0x3b8624dd, 0x3b989374, 0x3bab020d, 0x3bbd70a4,
    0x3bcfdf3b, 0x3be24dd3, 0x3bf4bc6a, 0x3c039581, 0x3c0ccccd, 0x3c160418, 0x3c1f3b64, 0x3c3ae148,
    0x3c68f5c3, 0x3c8b851f, 0x3ca28f5d, 0x3cb9999a, 0x3cd0a3d7, 0x3ce7ae15, 0x3cfeb852, 0x3d0ae148,
    0x3d166667, 0x3d21eb85, 0x3d2d70a3, 0x3d38f5c3, 0x3d447ae1, 0x3d500000, 0x3d5b851f, 0x3d670a3d,
    0x3d728f5d, 0x3d7e147b, 0x3d84cccd, 0x3d8a8f5d, 0x3d9051eb, 0x3d96147b, 0x3d9bd70a, 0x3da1999a,
    0x3da75c2a, 0x3dad1eb8, 0x3db2e148, 0x3db8a3d7, 0x3dbe6667, 0x3dc428f7, 0x3dc9eb85, 0x3ddb3334,
    0x3df80000, 0x3e0a6666, 0x3e18cccd, 0x3e273333, 0x3e35999a, 0x3e440000, 0x3e526666, 0x3e60cccd,
    0x3e6f3333, 0x3e7d9999, 0x3e860000, 0x3e8d3334, 0x3e946666, 0x3e9b999a, 0x3ea2cccc, 0x3eaa0000,
    0x3eb13333, 0x3eb86666, 0x3ebf999a, 0x3ec6cccc, 0x3ece0000, 0x3ed53333, 0x3edc6666, 0x3ee3999a,
    0x3eeacccc, 0x3ef20000, 0x3ef93332, 0x3f003333, 0x3f03cccc, 0x3f076666, 0x3f0b0000, 0x3f0e999a,
    0x3f123334, 0x3f15cccd, 0x3f196666, 0x3f1d0000, 0x3f20999a, 0x3f243334, 0x3f27cccd, 0x3f2b6666,
    0x3f2f0000, 0x3f32999a, 0x3f363334, 0x3f39cccd, 0x3f3d6666, 0x3f410000, 0x3f44999a, 0x3f483333,
    0x3f4bcccd, 0x3f4f6666, 0x3f530000, 0x3f56999a, 0x3f5a3333, 0x3f5dcccd, 0x3f616666, 0x3f650000,
    0x3f68999a, 0x3f6c3333, 0x3f6fcccd, 0x3f736666, 0x3f770000, 0x3f7a999a, 0x3f7e3333, 0x3f800000,
];

/// bitsandbytes' signed 8-bit dynamic map (`create_dynamic_map(signed=True)`), used for the
/// block scales in double quantisation.
pub fn dynamic_map() -> [f32; 256] {
    DYNAMIC_MAP_BITS.map(f32::from_bits)
}

/// The dtype a quantised tensor dequantises to (`quant_state.dtype`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QuantDtype {
    /// `float32`.
    #[serde(rename = "float32")]
    F32,
    /// `bfloat16`.
    #[serde(rename = "bfloat16")]
    Bf16,
    /// `float16`.
    #[serde(rename = "float16")]
    F16,
}

impl QuantDtype {
    /// Rounds an f32 product as bitsandbytes' output dtype does (round to nearest even).
    #[inline]
    pub fn round(self, v: f32) -> f32 {
        match self {
            QuantDtype::F32 => v,
            QuantDtype::Bf16 => bf16::from_f32(v).to_f32(),
            QuantDtype::F16 => f16::from_f32(v).to_f32(),
        }
    }
}

/// The block scales: plain f32, or double-quantised.
#[derive(Clone, Debug, PartialEq)]
pub enum Absmax {
    /// One f32 per block.
    Single(Vec<f32>),
    /// 8-bit codes of `absmax - offset` per block, scaled per `nested_blocksize` blocks.
    Double {
        /// One code per block.
        codes: Vec<u8>,
        /// One f32 per `nested_blocksize` blocks.
        nested_absmax: Vec<f32>,
        /// The 256-value code book (the dynamic map).
        nested_map: Vec<f32>,
        /// The mean that was subtracted.
        offset: f32,
        /// Blocks per nested scale (256).
        nested_blocksize: usize,
    },
}

impl Absmax {
    /// Number of blocks.
    pub fn blocks(&self) -> usize {
        match self {
            Absmax::Single(v) => v.len(),
            Absmax::Double { codes, .. } => codes.len(),
        }
    }

    /// The f32 scale of block `b`.
    #[inline]
    pub fn get(&self, b: usize) -> f32 {
        match self {
            Absmax::Single(v) => v[b],
            Absmax::Double {
                codes,
                nested_absmax,
                nested_map,
                offset,
                nested_blocksize,
            } => nested_map[codes[b] as usize] * nested_absmax[b / nested_blocksize] + offset,
        }
    }

    /// Bytes of storage.
    pub fn storage_bytes(&self) -> usize {
        match self {
            Absmax::Single(v) => 4 * v.len(),
            Absmax::Double {
                codes,
                nested_absmax,
                nested_map,
                ..
            } => codes.len() + 4 * nested_absmax.len() + 4 * nested_map.len() + 4,
        }
    }
}

/// An NF4-quantised tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct Nf4Tensor {
    /// Packed codes, two per byte (`(n + 1) / 2` bytes).
    pub codes: Vec<u8>,
    /// Block scales.
    pub absmax: Absmax,
    /// Elements per block.
    pub blocksize: usize,
    /// Shape of the original tensor.
    pub shape: Vec<usize>,
    /// The original dtype.
    pub dtype: QuantDtype,
}

/// `[NF4[byte >> 4], NF4[byte & 15]]` for every byte.
fn pair_table() -> &'static [[f32; 2]; 256] {
    static TABLE: std::sync::OnceLock<[[f32; 2]; 256]> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| std::array::from_fn(|b| [NF4_CODE[b >> 4], NF4_CODE[b & 0x0f]]))
}

/// The nearest NF4 code of a value in [-1, 1].
#[inline]
fn nf4_code(v: f32) -> u8 {
    // Midpoints between consecutive codes; the code is how many of them `v` exceeds.
    let mut c = 0u8;
    for i in 0..15 {
        let mid = (NF4_CODE[i] + NF4_CODE[i + 1]) * 0.5;
        if v > mid {
            c += 1;
        }
    }
    c
}

/// The float32 scale below which bitsandbytes clamps a block's absmax before dividing by it.
const MIN_ABSMAX: f32 = 1e-38;

/// Entries of bitsandbytes' CPU lookup table from a scaled value to its 8-bit code.
const LUT_SIZE: usize = 65536;

/// bitsandbytes' `build_quantize_lut`: entry `i` stands for `2i / 65535 - 1` (float32) and
/// holds the number of midpoints `(code[j] + code[j + 1]) / 2` below it.
fn build_quantize_lut(code: &[f32]) -> Vec<u8> {
    let mids: Vec<f32> = code.windows(2).map(|w| 0.5 * (w[0] + w[1])).collect();
    let mut idx = 0usize;
    (0..LUT_SIZE)
        .map(|i| {
            let val = (2.0 * i as f32) / (LUT_SIZE - 1) as f32 - 1.0;
            while idx < mids.len() && mids[idx] < val {
                idx += 1;
            }
            idx as u8
        })
        .collect()
}

/// bitsandbytes' `norm_to_lut_index`: `(clamp(v, -1, 1) + 1) * 0.5 * 65535 + 0.5` truncated to
/// 16 bits, with the multiply-add fused as its x86-64 build compiles it (`vfmadd213ss`). (For
/// these operands the fused and the unfused form truncate alike: `(v + 1) * 0.5` is a multiple
/// of 2^-25, so the product never falls in the sliver where their roundings part.)
#[inline]
fn lut_index(v: f32) -> usize {
    let t = (v.clamp(-1.0, 1.0) + 1.0) * 0.5;
    // `as i32` truncates like `cvttss2si` (and maps NaN to 0, which its low 16 bits also are).
    t.mul_add((LUT_SIZE - 1) as f32, 0.5) as i32 as u16 as usize
}

/// Blockwise 8-bit quantisation with `code` as bitsandbytes' CPU `quantize_blockwise` does it
/// (`quantize_cpu`): per block `absmax = max |x|`; an all-zero block gets codes 0, the others
/// `lut[lut_index(x * (1 / absmax))]` through the 65,536-entry table of `code` (which is not
/// always the nearest code: its CUDA kernel searches the nearest and differs in ~1% of codes).
pub fn quantize_blockwise(x: &[f32], code: &[f32], blocksize: usize) -> (Vec<u8>, Vec<f32>) {
    let lut = build_quantize_lut(code);
    let mut q = Vec::with_capacity(x.len());
    let mut absmax = Vec::with_capacity(x.len().div_ceil(blocksize));
    for block in x.chunks(blocksize) {
        let m = block.iter().fold(0f32, |a, v| a.max(v.abs()));
        absmax.push(m);
        if m == 0.0 {
            q.extend(std::iter::repeat_n(0u8, block.len()));
            continue;
        }
        let inv = 1.0f32 / m;
        q.extend(block.iter().map(|&v| lut[lut_index(v * inv)]));
    }
    (q, absmax)
}

/// Double quantisation of the block scales as bitsandbytes does it on the CPU:
/// `offset = absmax.mean()` (torch's float32 mean with `torch_threads` threads, see
/// [`super::torch_reduce`]), then [`quantize_blockwise`] of `absmax - offset` with the dynamic
/// map in blocks of 256.
pub fn double_quantize(absmax: &[f32], torch_threads: usize) -> Absmax {
    let offset = super::torch_reduce::mean_f32(absmax, torch_threads);
    let centred: Vec<f32> = absmax.iter().map(|&v| v - offset).collect();
    let map = dynamic_map();
    let (codes, nested_absmax) = quantize_blockwise(&centred, &map, 256);
    Absmax::Double {
        codes,
        nested_absmax,
        nested_map: map.to_vec(),
        offset,
        nested_blocksize: 256,
    }
}

impl Nf4Tensor {
    /// Quantises `data` of `shape` with `blocksize` (32..=4096, a power of two), as
    /// bitsandbytes' CPU `quantize_4bit` does; the double-quantisation offset is summed as torch
    /// does with its default thread count ([`super::torch_reduce::default_threads`]), which
    /// matters from 32,768 blocks on (see [`Nf4Tensor::quantize_with_threads`]).
    ///
    /// # Panics
    /// If `blocksize` is odd (callers validate it; `QLinear::load` refuses bad sizes).
    pub fn quantize(
        data: &[f32],
        shape: &[usize],
        blocksize: usize,
        double_quant: bool,
        dtype: QuantDtype,
    ) -> Self {
        let threads = super::torch_reduce::default_threads();
        Self::quantize_with_threads(data, shape, blocksize, double_quant, dtype, threads)
    }

    /// [`Nf4Tensor::quantize`] with the double-quantisation offset summed as torch does on
    /// `torch_threads` threads (`torch.get_num_threads()` of the bitsandbytes run to match).
    ///
    /// # Panics
    /// If `blocksize` is odd.
    pub fn quantize_with_threads(
        data: &[f32],
        shape: &[usize],
        blocksize: usize,
        double_quant: bool,
        dtype: QuantDtype,
        torch_threads: usize,
    ) -> Self {
        use rayon::prelude::*;
        let n = data.len();
        assert!(
            blocksize >= 2 && blocksize % 2 == 0,
            "NF4 blocksize must be even"
        );
        let mut codes = vec![0u8; n.div_ceil(2)];
        // Blocks are independent and start on byte boundaries (even blocksize): quantise them in
        // parallel, each writing its own bytes.
        let absmax: Vec<f32> = codes
            .par_chunks_mut(blocksize / 2)
            .zip(data.par_chunks(blocksize))
            .map(|(out, block)| {
                let m = block.iter().fold(0f32, |a, v| a.max(v.abs()));
                let clamped = m.max(MIN_ABSMAX);
                // bitsandbytes scales full blocks by the reciprocal and divides the partial
                // last block, whose stored scale is the clamped one.
                let partial = block.len() < blocksize;
                let inv = 1.0f32 / clamped;
                for (k, &v) in block.iter().enumerate() {
                    let c = nf4_code(if partial { v / clamped } else { v * inv });
                    if k % 2 == 0 {
                        out[k / 2] = c << 4;
                    } else {
                        out[k / 2] |= c;
                    }
                }
                if block.len() % 2 == 1 {
                    out[block.len() / 2] |= 7;
                }
                if partial {
                    clamped
                } else {
                    m
                }
            })
            .collect();
        let absmax = if double_quant {
            double_quantize(&absmax, torch_threads)
        } else {
            Absmax::Single(absmax)
        };
        Self {
            codes,
            absmax,
            blocksize,
            shape: shape.to_vec(),
            dtype,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether the tensor has no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The code of element `j`.
    #[inline]
    pub fn code(&self, j: usize) -> u8 {
        let b = self.codes[j / 2];
        if j % 2 == 0 {
            b >> 4
        } else {
            b & 0x0f
        }
    }

    /// Dequantises elements `start..start + out.len()` into `out` (f32, rounded through the
    /// original dtype, as bitsandbytes' `dequantize_4bit(A, quant_state)` returns them).
    pub fn dequantize_into(&self, start: usize, out: &mut [f32]) {
        self.dequantize_into_as(start, out, &[self.dtype])
    }

    /// Dequantises elements `start..start + out.len()` into `out`, rounded through each dtype of
    /// `round` in turn: bitsandbytes' `gemm_4bit` dequantises to the *compute* dtype, so an f32
    /// matmul sees the unrounded f32 products even for a bf16 checkpoint.
    pub fn dequantize_into_as(&self, start: usize, out: &mut [f32], round: &[QuantDtype]) {
        let steps: Vec<QuantDtype> = round
            .iter()
            .copied()
            .filter(|d| *d != QuantDtype::F32)
            .collect();
        match steps.as_slice() {
            [] => self.dequant_with(start, out, |v| v),
            [QuantDtype::Bf16] => self.dequant_with(start, out, |v| QuantDtype::Bf16.round(v)),
            [QuantDtype::F16] => self.dequant_with(start, out, |v| QuantDtype::F16.round(v)),
            many => self.dequant_with(start, out, |v| many.iter().fold(v, |v, d| d.round(v))),
        }
    }

    /// The dequantisation loop, monomorphised over the rounding so the common f32 case has
    /// none: per block one scale, then two codes per byte through a 256-entry pair table.
    fn dequant_with(&self, start: usize, out: &mut [f32], r: impl Fn(f32) -> f32) {
        let pairs_table = pair_table();
        let bs = self.blocksize;
        let mut j = start;
        let end = start + out.len();
        let mut o = 0;
        while j < end {
            let b = j / bs;
            let scale = self.absmax.get(b);
            let block_end = ((b + 1) * bs).min(end);
            if j % 2 == 1 && j < block_end {
                out[o] = r(NF4_CODE[self.code(j) as usize] * scale);
                j += 1;
                o += 1;
            }
            let pairs = (block_end - j) / 2;
            let bytes = &self.codes[j / 2..j / 2 + pairs];
            let dst = &mut out[o..o + 2 * pairs];
            for (d, &byte) in dst.chunks_exact_mut(2).zip(bytes) {
                let [hi, lo] = pairs_table[byte as usize];
                d[0] = r(hi * scale);
                d[1] = r(lo * scale);
            }
            j += 2 * pairs;
            o += 2 * pairs;
            if j < block_end {
                out[o] = r(NF4_CODE[self.code(j) as usize] * scale);
                j += 1;
                o += 1;
            }
        }
    }

    /// The whole tensor dequantised (f32 values, rounded through the original dtype).
    pub fn dequantize(&self) -> Vec<f32> {
        let mut out = vec![0f32; self.len()];
        self.dequantize_into(0, &mut out);
        out
    }

    /// Bytes of storage (codes + scales).
    pub fn storage_bytes(&self) -> usize {
        self.codes.len() + self.absmax.storage_bytes()
    }

    /// Storage bits per element, as QLoRA counts them: codes, per-block scales and nested
    /// scales, without the 256-value code book (a constant; bitsandbytes' HF layout stores a
    /// 1 KiB copy per layer, which [`Nf4Tensor::storage_bytes`] includes).
    pub fn bits_per_param(&self) -> f64 {
        let book = match &self.absmax {
            Absmax::Single(_) => 0,
            Absmax::Double { nested_map, .. } => 4 * nested_map.len(),
        };
        (self.storage_bytes() - book) as f64 * 8.0 / self.len() as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_table_round_trips_and_zero_blocks_are_0x77() {
        for (i, &v) in NF4_CODE.iter().enumerate() {
            assert_eq!(nf4_code(v) as usize, i);
        }
        let q = Nf4Tensor::quantize(&[0.0; 64], &[64], 64, false, QuantDtype::F32);
        assert!(q.codes.iter().all(|&b| b == 0x77));
        assert!(q.dequantize().iter().all(|&v| v == 0.0));
    }

    #[test]
    fn partial_ranges_equal_the_full_dequantisation() {
        let data: Vec<f32> = (0..301)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.013)
            .collect();
        let q = Nf4Tensor::quantize(&data, &[301], 64, true, QuantDtype::F32);
        let full = q.dequantize();
        for (s, l) in [(0, 301), (1, 64), (63, 2), (64, 65), (127, 100), (300, 1)] {
            let mut out = vec![0f32; l];
            q.dequantize_into(s, &mut out);
            assert_eq!(out, full[s..s + l], "range {s}+{l}");
        }
        // 151 code bytes + 5 scale codes + 1 nested scale + the offset over 301 elements.
        let want = (151 + 5 + 4 + 4) as f64 * 8.0 / 301.0;
        assert!(
            (q.bits_per_param() - want).abs() < 1e-12,
            "{}",
            q.bits_per_param()
        );
    }
}
