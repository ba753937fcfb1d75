//! 2-D convolution without gradients on the CPU: the input unrolled into a `[in * k * k,
//! out_h * out_w]` column matrix (zero padding written in place), then one product with the
//! weight `[out, in * k * k]` per image, which lands directly in NCHW order.
//!
//! Used for the frozen vision encoder (SAM's patch embedding, neck and downsampling convs),
//! where candle's general convolution spent several times the product's own cost; inputs that
//! track gradients keep candle's `conv2d`, which has a backward.

use candle_core::{CpuStorage, CustomOp2, Layout, Shape};
use rayon::prelude::*;

/// Square kernel, equal stride and padding on both axes, groups 1, dilation 1.
pub(crate) struct FrozenConv {
    /// Step between output pixels.
    pub(crate) stride: usize,
    /// Zeros added on every side.
    pub(crate) padding: usize,
}

impl FrozenConv {
    fn out_size(&self, size: usize, k: usize) -> Option<usize> {
        (size + 2 * self.padding)
            .checked_sub(k)
            .map(|s| s / self.stride + 1)
    }

    /// Unrolls one image `[cin, h, w]` into `cols` `[cin * k * k, oh * ow]`.
    fn unroll(&self, img: &[f32], (h, w): (usize, usize), k: usize, cols: &mut [f32]) {
        let (oh, ow) = (self.out_size(h, k).unwrap(), self.out_size(w, k).unwrap());
        let (s, p) = (self.stride, self.padding);
        cols.par_chunks_mut(k * k * oh * ow)
            .enumerate()
            .for_each(|(c, block)| {
                let plane = &img[c * h * w..(c + 1) * h * w];
                for (kk, row) in block.chunks_exact_mut(oh * ow).enumerate() {
                    let (ky, kx) = (kk / k, kk % k);
                    for (oy, out) in row.chunks_exact_mut(ow).enumerate() {
                        let iy = (oy * s + ky) as isize - p as isize;
                        if iy < 0 || iy >= h as isize {
                            out.fill(0.0);
                            continue;
                        }
                        let src = &plane[iy as usize * w..(iy as usize + 1) * w];
                        for (ox, o) in out.iter_mut().enumerate() {
                            let ix = (ox * s + kx) as isize - p as isize;
                            *o = if ix >= 0 && ix < w as isize {
                                src[ix as usize]
                            } else {
                                0.0
                            };
                        }
                    }
                }
            });
    }
}

impl CustomOp2 for FrozenConv {
    fn name(&self) -> &'static str {
        "deepsynth-frozen-conv2d"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (CpuStorage::F32(x), CpuStorage::F32(wt)) = (s1, s2) else {
            candle_core::bail!("{}: wants f32 input and weight", self.name());
        };
        let (Some((xa, xb)), Some((wa, wb))) = (l1.contiguous_offsets(), l2.contiguous_offsets())
        else {
            candle_core::bail!("{}: wants contiguous input and weight", self.name());
        };
        let (b, cin, h, w) = l1.shape().dims4()?;
        let (cout, wcin, k, k2) = l2.shape().dims4()?;
        let (Some(oh), Some(ow)) = (self.out_size(h, k), self.out_size(w, k)) else {
            candle_core::bail!(
                "{}: {k}x{k} kernel larger than the padded {h}x{w} input",
                self.name()
            );
        };
        if wcin != cin || k != k2 || self.stride == 0 {
            candle_core::bail!(
                "{}: weight {:?} for {cin} input channels (stride {})",
                self.name(),
                l2.shape(),
                self.stride
            );
        }
        let (x, wt) = (&x[xa..xb], &wt[wa..wb]);
        let (kdim, pixels) = (cin * k * k, oh * ow);
        let mut cols = vec![0f32; kdim * pixels];
        let mut out = vec![0f32; b * cout * pixels];
        for (img, dst) in x
            .chunks_exact(cin * h * w)
            .zip(out.chunks_exact_mut(cout * pixels))
        {
            self.unroll(img, (h, w), k, &mut cols);
            // SAFETY: `dst` is `[cout, pixels]`, `wt` `[cout, kdim]` and `cols` `[kdim,
            // pixels]`, all row-major and inside their slices; `dst` overlaps neither input.
            unsafe {
                crate::quant::kernel::gemm_f32(
                    cout,
                    pixels,
                    kdim,
                    dst.as_mut_ptr(),
                    pixels as isize,
                    wt.as_ptr(),
                    kdim as isize,
                    cols.as_ptr(),
                    1,
                    pixels as isize,
                    gemm::Parallelism::Rayon(rayon::current_num_threads()),
                )
            }
        }
        Ok((CpuStorage::F32(out), Shape::from((b, cout, oh, ow))))
    }
}
