//! Instruction sets: what the CPU has, and which one the kernels use.
//!
//! The choice is made once per process: the widest set the CPU supports,
//! unless the environment variable `PATCHWISE_FORCE_ISA` names another
//! (`scalar`, `avx2`, `avx512`), so that the whole test suite can run once
//! per kernel path on one machine. A forced set the CPU lacks falls back to
//! the widest one it has (with a warning on stderr); an unknown value too.

use std::sync::OnceLock;

/// An instruction set with fused multiply-add.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Isa {
    /// Portable code (whatever the compiler makes of it).
    Scalar,
    /// 256-bit vectors with FMA (x86-64 AVX2 + FMA).
    Avx2Fma,
    /// 512-bit vectors (x86-64 AVX-512F).
    Avx512,
}

impl Isa {
    /// The widest set this CPU supports.
    pub fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx512f") {
                return Isa::Avx512;
            }
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                return Isa::Avx2Fma;
            }
        }
        Isa::Scalar
    }

    /// Every set this CPU supports, narrowest first.
    pub fn supported() -> Vec<Isa> {
        [Isa::Scalar, Isa::Avx2Fma, Isa::Avx512]
            .into_iter()
            .filter(|&i| i <= Self::detect())
            .collect()
    }

    /// f32 lanes per vector.
    pub fn f32_lanes(self) -> usize {
        match self {
            Isa::Avx512 => 16,
            Isa::Avx2Fma => 8,
            Isa::Scalar => 1,
        }
    }

    /// The name `PATCHWISE_FORCE_ISA` takes.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2Fma => "avx2",
            Isa::Avx512 => "avx512",
        }
    }
}

/// The set the kernels use in this process (see the module docs).
pub fn selected() -> Isa {
    static SELECTED: OnceLock<Isa> = OnceLock::new();
    *SELECTED.get_or_init(|| {
        let best = Isa::detect();
        let Ok(forced) = std::env::var("PATCHWISE_FORCE_ISA") else {
            return best;
        };
        match [Isa::Scalar, Isa::Avx2Fma, Isa::Avx512]
            .into_iter()
            .find(|i| i.name() == forced)
        {
            Some(isa) if isa <= best => isa,
            _ => {
                eprintln!(
                    "patchwise: PATCHWISE_FORCE_ISA={forced:?} is not one of this CPU's {:?}; using {}",
                    Isa::supported().iter().map(|i| i.name()).collect::<Vec<_>>(),
                    best.name()
                );
                best
            }
        }
    })
}

/// Whether this CPU's 512-bit FMAs retire at about twice the rate of its
/// 256-bit ones: two full-width FMA units, as on Intel's server cores,
/// where a micro-kernel's step takes half the cycles and so has half the
/// time to wait on its loads; Zen 4 splits each 512-bit FMA into two
/// 256-bit halves (same rate). Measured once per process (best of a few
/// runs of some 10 µs each way); false where the CPU lacks AVX-512. It
/// only steers the choice between routes that give the same bits.
pub(crate) fn wide_fma512() -> bool {
    static WIDE: OnceLock<bool> = OnceLock::new();
    *WIDE.get_or_init(|| {
        if Isa::detect() < Isa::Avx512 {
            return false;
        }
        let best_rate = |isa| {
            (0..9)
                .map(|_| {
                    let start = std::time::Instant::now();
                    let flops = crate::probe::fma_flops(isa, 4096);
                    flops / start.elapsed().as_secs_f64().max(1e-9)
                })
                .fold(0.0, f64::max)
        };
        // Warm up first: a core may run its first 512-bit instructions
        // slowly while it powers up the upper lanes.
        best_rate(Isa::Avx512);
        best_rate(Isa::Avx512) > 1.5 * best_rate(Isa::Avx2Fma)
    })
}

/// Defines `fn $name<generics>(args) -> ret` whose body is compiled once per
/// instruction set, each copy under `#[target_feature]`, and runs the copy
/// for the set [`selected`] picks: plain loops are then auto-vectorised with
/// AVX2 or AVX-512 where the CPU has them, and the forced-ISA test runs
/// cover every copy.
macro_rules! multiversion {
    ($(#[$meta:meta])* $vis:vis fn $name:ident<$($g:ident: $b:path),+>($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$meta])*
        $vis fn $name<$($g: $b),+>($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn body<$($g: $b),+>($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma")]
            unsafe fn avx2<$($g: $b),+>($($arg: $ty),*) $(-> $ret)? {
                body::<$($g),+>($($arg),*)
            }
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f")]
            unsafe fn avx512<$($g: $b),+>($($arg: $ty),*) $(-> $ret)? {
                body::<$($g),+>($($arg),*)
            }
            match $crate::isa::selected() {
                // SAFETY: `selected` only returns sets the CPU supports.
                #[cfg(target_arch = "x86_64")]
                $crate::isa::Isa::Avx512 => unsafe { avx512::<$($g),+>($($arg),*) },
                // SAFETY: as above.
                #[cfg(target_arch = "x86_64")]
                $crate::isa::Isa::Avx2Fma => unsafe { avx2::<$($g),+>($($arg),*) },
                _ => body::<$($g),+>($($arg),*),
            }
        }
    };
}
pub(crate) use multiversion;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wide_fma512_needs_avx512_and_is_decided_once() {
        let wide = wide_fma512();
        eprintln!("wide_fma512: {wide}");
        if Isa::detect() < Isa::Avx512 {
            assert!(!wide, "no AVX-512, yet wide 512-bit FMAs");
        }
        assert_eq!(wide, wide_fma512(), "decided once per process");
    }
}
