//! `mlfs-studio`: the studio window with no arguments, the headless engine with a subcommand.

fn main() {
    keep_freed_memory();
    quiet_on_closed_stdout();
    if let Err(err) = mlfs_studio::cli::main_entry() {
        eprintln!("error: {err:#}");
        std::process::exit(1);
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
