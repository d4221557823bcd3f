//! File dialogs behind a trait: rfd as background jobs in the app, scripted answers in tests.

use super::jobs::{Job, Jobs};
use std::path::PathBuf;

/// What a dialog is for (the answer comes back tagged with it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialogPurpose {
    /// An empty folder for an exported subnet.
    ExportFolder,
    /// A new `.gguf` file for a decoder export.
    ExportGguf,
    /// A GGUF teacher file.
    TeacherFile,
    /// A preset to load.
    OpenPreset,
    /// Where to save the current configuration.
    SavePreset,
    /// A Hugging Face teacher folder.
    TeacherFolder,
    /// A run folder to open.
    RunFolder,
    /// The training data file.
    TrainFile,
    /// The dev (validation) data file.
    DevFile,
    /// The test data file.
    TestFile,
    /// Where to save the palette table as CSV.
    SavePaletteCsv,
    /// Where to save the training curves as CSV.
    SaveCurvesCsv,
    /// Where to save a Pareto chart (size or latency axis) as PNG (`false`) or SVG (`true`).
    SaveChart(super::palette_view::Cost, bool),
    /// Where to save the training-loss chart as PNG (`false`) or SVG (`true`).
    SaveLossChart(bool),
}

/// A finished dialog: the chosen path (`None` when cancelled), or why the dialog failed.
pub type DialogAnswer = Result<Option<PathBuf>, String>;

/// Opens dialogs without blocking the UI thread; answers are polled once per frame.
pub trait Dialogs: Send {
    /// Starts a dialog; its answer arrives through [`Dialogs::poll`].
    fn open(&mut self, purpose: DialogPurpose);
    /// Starts a save dialog with `file_name` filled in.
    fn open_named(&mut self, purpose: DialogPurpose, file_name: &str);
    /// A finished dialog's answer, if any.
    fn poll(&mut self) -> Option<(DialogPurpose, DialogAnswer)>;
}

/// Native dialogs through rfd, each a background job (rfd's blocking call would freeze a frame).
#[derive(Default)]
pub struct RfdDialogs {
    jobs: Jobs,
    pending: Vec<(DialogPurpose, Job<Option<PathBuf>>)>,
}

impl RfdDialogs {
    /// Dialogs whose answers wake the window through `jobs`.
    pub fn new(jobs: Jobs) -> Self {
        Self {
            jobs,
            pending: Vec::new(),
        }
    }
}

/// The working folder, where dialogs start (not the toolkit's "Recent" view).
fn here() -> PathBuf {
    std::env::current_dir().unwrap_or_default()
}

/// A save dialog for one file type, opening in the working folder with `file_name` filled in.
fn save_as(title: &str, ext: &str, file_name: &str) -> Option<PathBuf> {
    rfd::FileDialog::new()
        .set_title(title)
        .set_directory(here())
        .add_filter(ext.to_uppercase(), &[ext])
        .set_file_name(file_name)
        .save_file()
}

/// Shows the native dialog for `purpose` and waits for the user (call off the UI thread);
/// `file_name` fills a save dialog's name.
fn ask(purpose: DialogPurpose, file_name: Option<&str>) -> Option<PathBuf> {
    let ron = ["ron"];
    let data = ["jsonl", "csv", "tsv"];
    match purpose {
        // A save dialog: it opens in the working folder and takes a new folder's name as typed
        // (a folder picker opens on "Recent" and ignores names of folders not yet made).
        DialogPurpose::ExportFolder => rfd::FileDialog::new()
            .set_title("Export subnet: name a new folder (or choose an empty one)")
            .set_directory(here())
            .set_file_name("exported-subnet")
            .save_file(),
        DialogPurpose::RunFolder => rfd::FileDialog::new()
            .set_title("Open a run folder")
            .set_directory(here())
            .pick_folder(),
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
        DialogPurpose::SavePreset => save_as(
            "Save the settings as a preset",
            "ron",
            file_name.unwrap_or("preset.ron"),
        ),
        DialogPurpose::SavePaletteCsv => {
            save_as("Save the palette table as CSV", "csv", "palette.csv")
        }
        DialogPurpose::SaveCurvesCsv => {
            save_as("Save the training curves as CSV", "csv", "curves.csv")
        }
        DialogPurpose::SaveChart(cost, svg) => {
            let ext = if svg { "svg" } else { "png" };
            let axis = match cost {
                super::palette_view::Cost::Size => "size",
                super::palette_view::Cost::Latency => "latency",
            };
            let title = format!("Save the {axis} chart as {}", ext.to_uppercase());
            save_as(&title, ext, &format!("pareto-{axis}.{ext}"))
        }
        DialogPurpose::SaveLossChart(svg) => {
            let ext = if svg { "svg" } else { "png" };
            let title = format!("Save the loss chart as {}", ext.to_uppercase());
            save_as(&title, ext, &format!("training-loss.{ext}"))
        }
        DialogPurpose::TrainFile | DialogPurpose::DevFile | DialogPurpose::TestFile => {
            rfd::FileDialog::new().add_filter("Data", &data).pick_file()
        }
    }
}

impl Dialogs for RfdDialogs {
    fn open(&mut self, purpose: DialogPurpose) {
        let job = self
            .jobs
            .spawn("file dialog", move || Ok(ask(purpose, None)));
        self.pending.push((purpose, job));
    }

    fn open_named(&mut self, purpose: DialogPurpose, file_name: &str) {
        let name = file_name.to_string();
        let job = self
            .jobs
            .spawn("file dialog", move || Ok(ask(purpose, Some(&name))));
        self.pending.push((purpose, job));
    }

    fn poll(&mut self) -> Option<(DialogPurpose, DialogAnswer)> {
        let done = self
            .pending
            .iter_mut()
            .enumerate()
            .find_map(|(i, (_, job))| job.try_take().map(|answer| (i, answer)));
        let (i, answer) = done?;
        let (purpose, _) = self.pending.remove(i);
        Some((purpose, answer.map_err(|e| format!("{e:#}"))))
    }
}

/// Test double: answers each dialog with the next scripted path (or cancels when none is left).
#[derive(Default)]
pub struct ScriptedDialogs {
    /// Answers for the next dialogs, in order (`None` cancels).
    pub answers: std::collections::VecDeque<Option<PathBuf>>,
    ready: Vec<(DialogPurpose, Option<PathBuf>)>,
    /// Every dialog opened so far, in order.
    pub opened: Vec<DialogPurpose>,
    /// The file names save dialogs were opened with, in order.
    pub suggested: Vec<String>,
}

impl Dialogs for ScriptedDialogs {
    fn open(&mut self, purpose: DialogPurpose) {
        self.opened.push(purpose);
        let answer = self.answers.pop_front().flatten();
        self.ready.push((purpose, answer));
    }

    fn open_named(&mut self, purpose: DialogPurpose, file_name: &str) {
        self.suggested.push(file_name.to_string());
        self.open(purpose);
    }

    fn poll(&mut self) -> Option<(DialogPurpose, DialogAnswer)> {
        if self.ready.is_empty() {
            None
        } else {
            let (purpose, answer) = self.ready.remove(0);
            Some((purpose, Ok(answer)))
        }
    }
}
