//! CPU time (user + system) for the floor and ceiling examples, which each count only what they
//! measure: the whole process (`libc::RUSAGE_SELF`) or the calling thread (`libc::RUSAGE_THREAD`).

/// Seconds of CPU used so far by `who`, a `getrusage(2)` target.
pub fn cpu_seconds(who: libc::c_int) -> f64 {
    // SAFETY: rusage is plain old data; getrusage fills it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to `ru`.
    unsafe { libc::getrusage(who, &mut ru) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(ru.ru_utime) + t(ru.ru_stime)
}
