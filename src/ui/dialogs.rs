//! File dialogs behind a trait: rfd on a helper thread in the app, scripted answers in tests.

use crossbeam_channel::{unbounded, Receiver, Sender};
use std::path::PathBuf;

/// What a dialog is for (the answer comes back tagged with it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialogPurpose {
    ExportFolder,
    /// A new `.gguf` file for a decoder export.
    ExportGguf,
    /// A GGUF teacher file.
    TeacherFile,
    OpenPreset,
    SavePreset,
    TeacherFolder,
    RunFolder,
    TrainFile,
    DevFile,
    TestFile,
}

/// Opens dialogs without blocking the UI thread; answers are polled once per frame.
pub trait Dialogs: Send {
    /// Starts a dialog; its answer (None when cancelled) arrives through [`Dialogs::poll`].
    fn open(&mut self, purpose: DialogPurpose);
    /// A finished dialog's answer, if any.
    fn poll(&mut self) -> Option<(DialogPurpose, Option<PathBuf>)>;
}

/// Native dialogs through rfd, each on its own thread (rfd's blocking call would freeze a frame).
pub struct RfdDialogs {
    tx: Sender<(DialogPurpose, Option<PathBuf>)>,
    rx: Receiver<(DialogPurpose, Option<PathBuf>)>,
    /// Called when an answer is ready, so the window repaints.
    pub wake: Option<std::sync::Arc<dyn Fn() + Send + Sync>>,
}

impl Default for RfdDialogs {
    fn default() -> Self {
        let (tx, rx) = unbounded();
        Self { tx, rx, wake: None }
    }
}

impl Dialogs for RfdDialogs {
    fn open(&mut self, purpose: DialogPurpose) {
        let tx = self.tx.clone();
        let wake = self.wake.clone();
        std::thread::spawn(move || {
            let ron = ["ron"];
            let data = ["jsonl", "csv", "tsv"];
            let answer = match purpose {
                DialogPurpose::ExportFolder => rfd::FileDialog::new()
                    .set_title("Export subnet into an empty folder")
                    .pick_folder(),
                DialogPurpose::RunFolder => {
                    rfd::FileDialog::new().set_title("Run folder").pick_folder()
                }
                DialogPurpose::ExportGguf => rfd::FileDialog::new()
                    .set_title("Export subnet as GGUF")
                    .add_filter("GGUF", &["gguf"])
                    .set_file_name("subnet.gguf")
                    .save_file(),
                DialogPurpose::TeacherFile => rfd::FileDialog::new()
                    .set_title("Teacher GGUF file")
                    .add_filter("GGUF", &["gguf"])
                    .pick_file(),
                DialogPurpose::TeacherFolder => rfd::FileDialog::new()
                    .set_title("Teacher model folder")
                    .pick_folder(),
                DialogPurpose::OpenPreset => rfd::FileDialog::new()
                    .add_filter("RON preset", &ron)
                    .pick_file(),
                DialogPurpose::SavePreset => rfd::FileDialog::new()
                    .add_filter("RON preset", &ron)
                    .set_file_name("preset.ron")
                    .save_file(),
                DialogPurpose::TrainFile | DialogPurpose::DevFile | DialogPurpose::TestFile => {
                    rfd::FileDialog::new().add_filter("Data", &data).pick_file()
                }
            };
            let _ = tx.send((purpose, answer));
            if let Some(w) = wake {
                w();
            }
        });
    }

    fn poll(&mut self) -> Option<(DialogPurpose, Option<PathBuf>)> {
        self.rx.try_recv().ok()
    }
}

/// Test double: answers each dialog with the next scripted path (or cancels when none is left).
#[derive(Default)]
pub struct ScriptedDialogs {
    pub answers: std::collections::VecDeque<Option<PathBuf>>,
    ready: Vec<(DialogPurpose, Option<PathBuf>)>,
    /// Every dialog opened so far, in order.
    pub opened: Vec<DialogPurpose>,
}

impl Dialogs for ScriptedDialogs {
    fn open(&mut self, purpose: DialogPurpose) {
        self.opened.push(purpose);
        let answer = self.answers.pop_front().flatten();
        self.ready.push((purpose, answer));
    }

    fn poll(&mut self) -> Option<(DialogPurpose, Option<PathBuf>)> {
        if self.ready.is_empty() {
            None
        } else {
            Some(self.ready.remove(0))
        }
    }
}
