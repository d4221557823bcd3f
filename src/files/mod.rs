//! Every file the studio writes or reads from a user's folders goes through here: atomic writes
//! through unpredictable temporary names, appends that never follow a link, the run folder's
//! lock, regular-file reads, and paths made safe to print.

pub mod append;
pub mod atomic;
pub mod lock;
pub mod read;
pub mod shown;

pub use atomic::{temp_beside, write_atomic};
pub use read::{read_text, require_regular};
pub use shown::shown;
