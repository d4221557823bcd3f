//! What panels ask the window to do; `StudioApp::handle` is the only interpreter.

use super::dialogs::DialogPurpose;
use std::path::PathBuf;

/// Actions the panels ask for; they change state shared by several panels, or start work.
#[derive(Debug, Clone, PartialEq)]
pub enum UiCommand {
    /// Start a new run with the current configuration.
    Start,
    /// Pause a running run, or resume a paused one.
    PauseOrResume,
    /// Stop the run at the next step (its checkpoint is kept).
    Stop,
    /// Continue an unfinished run from its folder.
    ResumeRun(PathBuf),
    /// Measure the palette (or a decoder run's subnets) again (asks first when there is one).
    EvaluatePalette,
    /// Measure again: the user confirmed replacing the measured rows.
    EvaluatePaletteConfirmed,
    /// Keep the palette as it is (the confirmation was declined).
    CancelEvaluatePalette,
    /// Select a subnet everywhere (charts, tables, "Try it", export), or clear the selection.
    Select(Option<String>),
    /// Export the selected subnet (asks for a target first).
    Export,
    /// Show a run's own settings in the panel, scrolled to the stages (after a divergence).
    OpenRunSettings(PathBuf),
    /// Write the panel's settings into a stopped run's `config.ron`, then resume it.
    ResumeWithSettings(PathBuf),
    /// Show a run folder (curves, palette, Try it, export), as after `--run`.
    OpenRun(PathBuf),
    /// Draw (or stop drawing) a run of the runs folder over the current one's curves.
    Overlay(String, bool),
    /// Move a run folder to the runs folder's trash (the user confirmed).
    DeleteRun(PathBuf),
    /// Keep the run whose deletion was asked for.
    CancelDeleteRun,
    /// Give a run folder a new name.
    RenameRun(PathBuf, String),
    /// Replace the configuration with a preset file (asks first when the settings were edited).
    LoadPreset(PathBuf),
    /// Replace the configuration with a preset file: the user agreed to drop the edits.
    LoadPresetConfirmed(PathBuf),
    /// Keep the edited settings (the preset's loading was declined).
    CancelLoadPreset,
    /// Open a file dialog.
    Open(DialogPurpose),
}
