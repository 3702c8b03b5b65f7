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

/// Defines each C function as a call of the `libm` function of its name.
macro_rules! from_libm {
    ($($name:ident($($arg:ident),+);)+) => {$(
        #[unsafe(no_mangle)]
        extern "C" fn $name($($arg: f64),+) -> f64 {
            libm::$name($($arg),+)
        }
    )+};
}

from_libm! {
    exp(x);
    log(x);
    log1p(x);
    log2(x);
    log10(x);
    pow(x, y);
    sin(x);
    cos(x);
    tan(x);
}
