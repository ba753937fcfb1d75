//! The CUDA kernel of [`super::nf4_device`]'s dequantisation, compiled with NVRTC at first use.
//!
//! It mirrors the op's CPU implementation value for value: products and sums with `__fmul_rn` /
//! `__fadd_rn` (never contracted into an FMA, which would round once instead of twice), bf16 by
//! the `half` crate's round-to-nearest-even on the bits, f16 by PTX's `cvt.rn.f16.f32`.

use std::sync::OnceLock;

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{
    CudaSlice, DeviceRepr, LaunchConfig, PushKernelArg,
};
use candle_core::cuda_backend::{CudaDevice, WrapErr};
use candle_core::{CudaStorage, DType, Layout, Shape};

/// The kernel's source.
const SOURCE: &str = r#"
__device__ __forceinline__ unsigned short f32_to_bf16(float v) {
    unsigned int x = __float_as_uint(v);
    if ((x & 0x7fffffffu) > 0x7f800000u) {
        return (unsigned short)((x >> 16) | 0x0040u);
    }
    unsigned int round_bit = 0x00008000u;
    if ((x & round_bit) != 0u && (x & (3u * round_bit - 1u)) != 0u) {
        return (unsigned short)((x >> 16) + 1u);
    }
    return (unsigned short)(x >> 16);
}

__device__ __forceinline__ float bf16_to_f32(unsigned short b) {
    return __uint_as_float(((unsigned int)b) << 16);
}

__device__ __forceinline__ unsigned short f32_to_f16(float v) {
    unsigned short h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(v));
    return h;
}

__device__ __forceinline__ float f16_to_f32(unsigned short h) {
    float v;
    asm("cvt.f32.f16 %0, %1;" : "=f"(v) : "h"(h));
    return v;
}

// table: NF4[16], then (double) offset, map[256], nested scales.
extern "C" __global__ void deepsynth_nf4_dequant(
    const unsigned char* codes, const void* scales, const float* table,
    unsigned long long n, unsigned long long bs, unsigned long long nbs, int double_q,
    int round, int out_kind, void* out)
{
    unsigned long long stride = (unsigned long long)gridDim.x * blockDim.x;
    for (unsigned long long j = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x;
         j < n; j += stride) {
        unsigned long long b = j / bs;
        float scale;
        if (double_q) {
            unsigned char c = ((const unsigned char*)scales)[b];
            scale = __fadd_rn(__fmul_rn(table[17 + c], table[273 + b / nbs]), table[16]);
        } else {
            scale = ((const float*)scales)[b];
        }
        unsigned char byte = codes[j >> 1];
        unsigned int nib = (j & 1ull) ? (byte & 15u) : (byte >> 4);
        float v = __fmul_rn(table[nib], scale);
        if (round == 1) {
            v = bf16_to_f32(f32_to_bf16(v));
        } else if (round == 2) {
            v = f16_to_f32(f32_to_f16(v));
        }
        if (out_kind == 0) {
            ((float*)out)[j] = v;
        } else if (out_kind == 1) {
            ((unsigned short*)out)[j] = f32_to_bf16(v);
        } else {
            ((unsigned short*)out)[j] = f32_to_f16(v);
        }
    }
}
"#;

const FUNCTION: &str = "deepsynth_nf4_dequant";
const MODULE: &str = "deepsynth_nf4";

/// What the kernel needs besides its three inputs.
#[derive(Clone, Debug)]
pub(super) struct Args {
    pub len: usize,
    pub blocksize: usize,
    pub nested_blocksize: usize,
    pub double: bool,
    /// 0: none, 1: bf16, 2: f16.
    pub round: i32,
    pub out: DType,
    pub shape: Shape,
}

/// The PTX, compiled once per process.
fn ptx() -> candle_core::Result<&'static str> {
    static PTX: OnceLock<Result<String, String>> = OnceLock::new();
    let r = PTX.get_or_init(|| {
        use candle_core::cuda_backend::cudarc::nvrtc::{compile_ptx_with_opts, CompileOptions};
        let opts = CompileOptions {
            fmad: Some(false),
            ftz: Some(false),
            ..Default::default()
        };
        compile_ptx_with_opts(SOURCE, opts)
            .map(|p| p.to_src())
            .map_err(|e| format!("NVRTC could not compile the NF4 kernel: {e:?}"))
    });
    r.as_deref().map_err(|e| candle_core::Error::Msg(e.clone()))
}

fn contiguous_start(l: &Layout, what: &str) -> candle_core::Result<usize> {
    l.contiguous_offsets()
        .map(|(a, _)| a)
        .ok_or_else(|| candle_core::Error::Msg(format!("NF4 {what} must be contiguous")))
}

fn launch<T: DeviceRepr>(
    dev: &CudaDevice,
    a: &Args,
    (codes, scales, table): (&CudaStorage, &CudaStorage, &CudaStorage),
    starts: [usize; 3],
    out_kind: i32,
) -> candle_core::Result<CudaSlice<T>> {
    let func = dev.get_or_load_custom_func(FUNCTION, MODULE, ptx()?)?;
    let codes = codes.as_cuda_slice::<u8>()?.slice(starts[0]..);
    let table = table.as_cuda_slice::<f32>()?.slice(starts[2]..);
    // SAFETY: every element is written by the kernel below before the slice is read.
    let out = unsafe { dev.alloc::<T>(a.len)? };
    let (n, bs, nbs) = (a.len as u64, a.blocksize as u64, a.nested_blocksize as u64);
    let double = i32::from(a.double);
    let threads = 256u32;
    let blocks = (a.len.div_ceil(threads as usize)).clamp(1, 1 << 20) as u32;
    let cfg = LaunchConfig {
        grid_dim: (blocks, 1, 1),
        block_dim: (threads, 1, 1),
        shared_mem_bytes: 0,
    };
    let mut b = func.builder();
    b.arg(&codes);
    let (scales_u8, scales_f32);
    if a.double {
        scales_u8 = scales.as_cuda_slice::<u8>()?.slice(starts[1]..);
        b.arg(&scales_u8);
    } else {
        scales_f32 = scales.as_cuda_slice::<f32>()?.slice(starts[1]..);
        b.arg(&scales_f32);
    }
    b.arg(&table);
    b.arg(&n);
    b.arg(&bs);
    b.arg(&nbs);
    b.arg(&double);
    b.arg(&a.round);
    b.arg(&out_kind);
    b.arg(&out);
    // SAFETY: the kernel reads `n` codes' bytes, one scale per block and the table, which the
    // op's inputs hold (checked when the resident matrix was uploaded), and writes `n` outputs.
    unsafe { b.launch(cfg) }.w()?;
    Ok(out)
}

/// Runs the kernel on the op's three inputs.
pub(super) fn dequantize(
    a: Args,
    (s1, l1): (&CudaStorage, &Layout),
    (s2, l2): (&CudaStorage, &Layout),
    (s3, l3): (&CudaStorage, &Layout),
) -> candle_core::Result<(CudaStorage, Shape)> {
    let dev = s1.device().clone();
    let starts = [
        contiguous_start(l1, "codes")?,
        contiguous_start(l2, "scales")?,
        contiguous_start(l3, "table")?,
    ];
    let inputs = (s1, s2, s3);
    let storage = match a.out {
        DType::F32 => {
            CudaStorage::wrap_cuda_slice(launch::<f32>(&dev, &a, inputs, starts, 0)?, dev)
        }
        DType::BF16 => {
            CudaStorage::wrap_cuda_slice(launch::<::half::bf16>(&dev, &a, inputs, starts, 1)?, dev)
        }
        DType::F16 => {
            CudaStorage::wrap_cuda_slice(launch::<::half::f16>(&dev, &a, inputs, starts, 2)?, dev)
        }
        other => candle_core::bail!("NF4 dequantises to f32, bf16 or f16, not {other:?}"),
    };
    Ok((storage, a.shape))
}
