//! `mlfs-studio`: the studio window with no arguments, the headless engine with a subcommand.

fn main() {
    if let Err(err) = mlfs_studio::cli::main_entry() {
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}
