//! What a speed figure was measured on: the processor, the BLAS behind the products, and the
//! thread counts. Printed with every benchmark and latency measurement, because figures from
//! one processor say little about another (the README's speed table, per processor).

/// The processor's model name as the kernel reports it (`/proc/cpuinfo`), or "unknown".
pub fn processor() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, name)| name.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// One line: processor, logical CPUs, BLAS library (build, core, threads), rayon's and candle's
/// element-wise thread counts.
pub fn describe() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let elementwise = std::env::var("CANDLE_NUM_THREADS").unwrap_or_else(|_| "default".into());
    format!(
        "processor: {} ({cpus} logical CPUs); BLAS: {}; rayon threads: {}; candle element-wise threads: {elementwise}",
        processor(),
        crate::model::blas::describe(),
        rayon::current_num_threads(),
    )
}
