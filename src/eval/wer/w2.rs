//! [`W2`]: two u64 words operated on lane by lane; one SSE2 register on x86-64 (part of the
//! x86-64 baseline, so always present there), a pair of words elsewhere.

use std::ops::{BitAnd, BitOr, BitXor, Not};

#[cfg(target_arch = "x86_64")]
mod imp {
    // SSE2 intrinsics are safe to call on x86-64 from Rust 1.87; older compilers need the
    // blocks.
    #![allow(unused_unsafe)]
    use std::arch::x86_64::*;

    /// Two u64 words in one SSE2 register.
    #[derive(Clone, Copy, Debug)]
    #[repr(transparent)]
    pub(in super::super) struct W2(__m128i);

    impl W2 {
        /// Lanes `[a, b]`.
        #[inline(always)]
        pub(in super::super) fn new(a: u64, b: u64) -> Self {
            Self(unsafe { _mm_set_epi64x(b as i64, a as i64) })
        }

        #[inline(always)]
        pub(in super::super) fn lanes(self) -> [u64; 2] {
            let mut out = [0u64; 2];
            // SAFETY: an unaligned 16-byte store into a 16-byte array.
            unsafe { _mm_storeu_si128(out.as_mut_ptr().cast(), self.0) };
            out
        }

        #[inline(always)]
        pub(in super::super) fn wrapping_add(self, o: Self) -> Self {
            Self(unsafe { _mm_add_epi64(self.0, o.0) })
        }

        #[inline(always)]
        pub(in super::super) fn shl1(self) -> Self {
            Self(unsafe { _mm_slli_epi64::<1>(self.0) })
        }

        #[inline(always)]
        pub(in super::super) fn shr63(self) -> Self {
            Self(unsafe { _mm_srli_epi64::<63>(self.0) })
        }

        #[inline(always)]
        pub(super) fn and(self, o: Self) -> Self {
            Self(unsafe { _mm_and_si128(self.0, o.0) })
        }

        #[inline(always)]
        pub(super) fn or(self, o: Self) -> Self {
            Self(unsafe { _mm_or_si128(self.0, o.0) })
        }

        #[inline(always)]
        pub(super) fn xor(self, o: Self) -> Self {
            Self(unsafe { _mm_xor_si128(self.0, o.0) })
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod imp {
    /// Two u64 words.
    #[derive(Clone, Copy, Debug)]
    pub(in super::super) struct W2([u64; 2]);

    impl W2 {
        /// Lanes `[a, b]`.
        #[inline(always)]
        pub(in super::super) fn new(a: u64, b: u64) -> Self {
            Self([a, b])
        }

        #[inline(always)]
        pub(in super::super) fn lanes(self) -> [u64; 2] {
            self.0
        }

        #[inline(always)]
        pub(in super::super) fn wrapping_add(self, o: Self) -> Self {
            Self([
                self.0[0].wrapping_add(o.0[0]),
                self.0[1].wrapping_add(o.0[1]),
            ])
        }

        #[inline(always)]
        pub(in super::super) fn shl1(self) -> Self {
            Self([self.0[0] << 1, self.0[1] << 1])
        }

        #[inline(always)]
        pub(in super::super) fn shr63(self) -> Self {
            Self([self.0[0] >> 63, self.0[1] >> 63])
        }

        #[inline(always)]
        pub(super) fn and(self, o: Self) -> Self {
            Self([self.0[0] & o.0[0], self.0[1] & o.0[1]])
        }

        #[inline(always)]
        pub(super) fn or(self, o: Self) -> Self {
            Self([self.0[0] | o.0[0], self.0[1] | o.0[1]])
        }

        #[inline(always)]
        pub(super) fn xor(self, o: Self) -> Self {
            Self([self.0[0] ^ o.0[0], self.0[1] ^ o.0[1]])
        }
    }
}

pub(super) use imp::W2;

impl W2 {
    /// Both lanes `v`.
    #[inline(always)]
    pub(super) fn splat(v: u64) -> Self {
        Self::new(v, v)
    }

    /// Lane `k`.
    #[inline(always)]
    pub(super) fn get(self, k: usize) -> u64 {
        self.lanes()[k]
    }

    /// This with lane `k` set to `v`.
    #[inline(always)]
    pub(super) fn with(self, k: usize, v: u64) -> Self {
        let mut l = self.lanes();
        l[k] = v;
        Self::new(l[0], l[1])
    }
}

impl Default for W2 {
    fn default() -> Self {
        Self::splat(0)
    }
}

impl PartialEq for W2 {
    fn eq(&self, o: &Self) -> bool {
        self.lanes() == o.lanes()
    }
}

impl BitAnd for W2 {
    type Output = W2;
    #[inline(always)]
    fn bitand(self, o: W2) -> W2 {
        self.and(o)
    }
}

impl BitOr for W2 {
    type Output = W2;
    #[inline(always)]
    fn bitor(self, o: W2) -> W2 {
        self.or(o)
    }
}

impl BitXor for W2 {
    type Output = W2;
    #[inline(always)]
    fn bitxor(self, o: W2) -> W2 {
        self.xor(o)
    }
}

impl Not for W2 {
    type Output = W2;
    #[inline(always)]
    fn not(self) -> W2 {
        self.xor(W2::splat(!0))
    }
}

#[cfg(test)]
mod tests {
    use super::W2;

    #[test]
    fn lanes_are_independent_u64_words() {
        let a = W2::new(u64::MAX, 1 << 63);
        let b = W2::new(1, 1 << 63);
        assert_eq!(a.wrapping_add(b).lanes(), [0, 0]);
        assert_eq!(a.shl1().lanes(), [u64::MAX - 1, 0]);
        assert_eq!(a.shr63().lanes(), [1, 1]);
        assert_eq!((a & b).lanes(), [1, 1 << 63]);
        assert_eq!((a | W2::new(0, 2)).lanes(), [u64::MAX, (1 << 63) | 2]);
        assert_eq!((a ^ b).lanes(), [u64::MAX - 1, 0]);
        assert_eq!((!b).lanes(), [!1, !(1 << 63)]);
        assert_eq!(b.with(1, 7).lanes(), [1, 7]);
        assert_eq!(W2::splat(5).get(1), 5);
    }
}
