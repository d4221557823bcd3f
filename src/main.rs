//! `mlfs-studio`: the studio window with no arguments, the headless engine with a subcommand.

fn main() {
    keep_freed_memory();
    one_elementwise_pool();
    thread_count_read_once();
    // After the thread settings: the BLAS reads them when it opens.
    mlfs_studio::model::blas::init();
    quiet_on_closed_stdout();
    let next = mlfs_studio::cli::main_entry().and_then(|next| match next {
        mlfs_studio::cli::Next::Studio(run) => mlfs_studio::ui::run_studio(run),
        mlfs_studio::cli::Next::Done => Ok(()),
    });
    if let Err(err) = next {
        // Every control character escaped, newlines too: a path in the message holding one
        // must not forge a line of output.
        let text = format!("{err:#}");
        mlfs_studio::note!(
            "error: {}",
            mlfs_studio::files::shown::escape_controls(&text)
        );
        std::process::exit(1);
    }
    // Every file is written by now; only then say that the output was cut short.
    match mlfs_studio::cli::out::stdout_failure() {
        None => {}
        // Closed by the reader (`| head`): end as a shell tool killed by SIGPIPE would.
        Some(std::io::ErrorKind::BrokenPipe) => std::process::exit(141),
        Some(kind) => {
            mlfs_studio::note!("error: cannot write standard output: {kind}");
            std::process::exit(1);
        }
    }
}

// candle allocates a fresh buffer per op; glibc's malloc hands large ones back to the kernel
// each time (page faults dominated step time), mimalloc keeps them.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Tells mimalloc never to purge freed pages: each training step reallocates the same buffers,
/// and handing them back to the kernel made page faults a third of the step time.
fn keep_freed_memory() {
    // `mi_option_purge_delay` is entry 15 of mimalloc v3's `mi_option_t` (mimalloc.h);
    // the -sys crate names no constant for it.
    const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    // A user's MIMALLOC_PURGE_DELAY wins (e.g. to trade speed for a smaller footprint).
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // SAFETY: setting an option is a plain store into mimalloc's option table.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
}

/// Runs candle's element-wise ops on the calling thread instead of its own spinning pool.
///
/// candle keeps a pool of (threads − 1) spinning workers for element-wise ops beside rayon's
/// pool, which runs the matrix products; on 2 cores the two pools took turns on the same cores
/// and the idle worker's spinning was 22 % of a training step's CPU time (perf). Without it
/// (2-core AMD EPYC): stage-0 step 0.21-0.24 → 0.20 s, stage-1/2 0.59-0.62 → 0.55 s.
fn one_elementwise_pool() {
    default_env("CANDLE_NUM_THREADS", || "1".into());
}

/// Fixes the product thread count once, in `RAYON_NUM_THREADS`.
///
/// Unset, candle works out its default (the physical cores) on every CPU matrix product by
/// parsing `/proc/cpuinfo` (perf: `show_cpuinfo`, `vsnprintf`); a batch-1 minnet latency spent
/// 30 % of its time there (2-core AMD EPYC: 0.38 → 0.27 ms with the variable set).
fn thread_count_read_once() {
    // The same count candle would pick; computed once here instead of per product.
    default_env("RAYON_NUM_THREADS", || {
        candle_core::utils::get_num_threads().to_string()
    });
}

/// Sets environment variable `name` to `value()` unless the user set it (theirs wins).
fn default_env(name: &str, value: impl FnOnce() -> String) {
    if std::env::var_os(name).is_some() {
        return;
    }
    // SAFETY: only called first thing in `main`, before any other thread exists.
    unsafe { std::env::set_var(name, value()) };
}

/// `mlfs-studio eval … | head` closes our stdout early: end quietly, as a shell tool killed by
/// SIGPIPE would (status 141), instead of a panic message about a broken pipe.
fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let text = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("");
        if text.contains("failed printing to stdout") && text.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info)
    }));
}
