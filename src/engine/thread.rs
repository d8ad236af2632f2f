//! Core threads: one per core, pinned, each running its own runtime.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::thread::JoinHandle;

use super::runtime::{block_on, RuntimeConfig};

/// CPUs this process may run on, in order.
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain old data; sched_getaffinity fills it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: pointer and size describe `set`.
    let ok =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) }
            == 0;
    let cpus: Vec<usize> = if ok {
        // SAFETY: CPU_ISSET reads the set we own.
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
            .collect()
    } else {
        Vec::new()
    };
    if cpus.is_empty() {
        (0..std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1))
            .collect()
    } else {
        cpus
    }
}

/// Pins the calling thread to `cpu`; failure only costs locality, so it is reported, not fatal.
pub fn pin_to_cpu(cpu: usize) -> io::Result<()> {
    // SAFETY: cpu_set_t is plain old data; CPU_SET writes into our set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: pointer and size describe `set`.
    if unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Starts `n` core threads; thread `i` is pinned to the i-th allowed CPU (wrapping) and runs
/// `main(i, cpu)` on its own runtime until it returns.
pub fn start_cores<F, Fut>(
    n: usize,
    cfg: RuntimeConfig,
    name: &str,
    main: F,
) -> io::Result<Vec<JoinHandle<io::Result<()>>>>
where
    F: Fn(usize, usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + 'static,
{
    start_threads(n, cfg, name, true, main)
}

/// As [`start_cores`], but pinning is optional: a client that shares the machine with the server
/// it measures should let the scheduler place it (pinned, it can land on the very core that serves
/// it while another core idles).
pub fn start_threads<F, Fut>(
    n: usize,
    cfg: RuntimeConfig,
    name: &str,
    pin: bool,
    main: F,
) -> io::Result<Vec<JoinHandle<io::Result<()>>>>
where
    F: Fn(usize, usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let cpus = allowed_cpus();
    let main = Arc::new(main);
    let mut handles = Vec::with_capacity(n);
    for i in 0..n {
        let cpu = cpus[i % cpus.len()];
        let main = main.clone();
        let cfg = cfg.clone();
        let h = std::thread::Builder::new()
            .name(format!("{name}-{i}"))
            .spawn(move || {
                if pin {
                    if let Err(e) = pin_to_cpu(cpu) {
                        tracing::warn!(core = i, cpu, error = %e, "could not pin core thread");
                    }
                }
                let res = block_on(i, &cfg, main(i, cpu));
                if let Err(e) = &res {
                    // The caller may never join this thread: say why the core is not serving.
                    tracing::error!(core = i, error = %e, "core thread could not run its runtime");
                }
                res
            })?;
        handles.push(h);
    }
    Ok(handles)
}
