//! The C math functions this binary's code calls (`metrics`' summaries and
//! histogram upkeep, `indicatif`'s rates), defined here from
//! the pure-Rust `libm` crate. With every one of them defined, the linker
//! leaves glibc's `libm.so.6` out of the binary: loading it (its symbol
//! tables searched for every import, its code faulted in 64 KB at a time)
//! kept 512–608 kB resident in every worker for nine small functions.
//!
//! A function the binary starts calling later and that is missing here
//! brings `libm.so.6` back without any error: `tests/binary.rs` fails then,
//! as it reads a running worker's mappings.
//!
//! Only the binary defines them: the library's own tests link glibc's.

#[unsafe(no_mangle)]
extern "C" fn exp(x: f64) -> f64 {
    libm::exp(x)
}

#[unsafe(no_mangle)]
extern "C" fn log(x: f64) -> f64 {
    libm::log(x)
}

#[unsafe(no_mangle)]
extern "C" fn log1p(x: f64) -> f64 {
    libm::log1p(x)
}

#[unsafe(no_mangle)]
extern "C" fn log2(x: f64) -> f64 {
    libm::log2(x)
}

#[unsafe(no_mangle)]
extern "C" fn log10(x: f64) -> f64 {
    libm::log10(x)
}

#[unsafe(no_mangle)]
extern "C" fn pow(x: f64, y: f64) -> f64 {
    libm::pow(x, y)
}

#[unsafe(no_mangle)]
extern "C" fn sin(x: f64) -> f64 {
    libm::sin(x)
}

#[unsafe(no_mangle)]
extern "C" fn cos(x: f64) -> f64 {
    libm::cos(x)
}

#[unsafe(no_mangle)]
extern "C" fn tan(x: f64) -> f64 {
    libm::tan(x)
}
