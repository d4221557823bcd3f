//! Finished runs from the runs folder, drawn over the current run's curves for comparison.

use super::run_view::RunView;
use std::path::{Path, PathBuf};

/// One run folder that may be overlaid.
pub struct OverlayRun {
    pub name: String,
    pub dir: PathBuf,
    pub shown: bool,
    /// A decoder run (compared only with decoder runs); `None` when its settings do not say.
    pub decoder: Option<bool>,
    /// Loaded when first shown; an unreadable run keeps its error.
    pub view: Option<Result<RunView, String>>,
}

/// The runs offered for comparison.
#[derive(Default)]
pub struct Overlays {
    pub runs: Vec<OverlayRun>,
}

impl Overlays {
    /// Lists the run folders under `root` (those with a `metrics.jsonl`), keeping what was shown.
    pub fn scan(&mut self, root: &Path) {
        let dirs = super::runs_browser::run_dirs(root);
        let old = std::mem::take(&mut self.runs);
        for dir in dirs {
            let name = dir
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            let previous = old.iter().find(|r| r.dir == dir);
            self.runs.push(OverlayRun {
                name,
                shown: previous.is_some_and(|r| r.shown),
                decoder: run_kind(&dir),
                // Reloaded on demand: a run may have grown since.
                view: None,
                dir,
            });
        }
        for run in self.runs.iter_mut().filter(|r| r.shown) {
            run.load();
        }
    }

    /// Shows or hides a run by folder name; loads it when shown.
    pub fn set_shown(&mut self, name: &str, shown: bool) {
        if let Some(run) = self.runs.iter_mut().find(|r| r.name == name) {
            run.shown = shown;
            if shown && run.view.is_none() {
                run.load();
            }
        }
    }

    /// The shown runs that loaded, with their names, skipping `current` (drawn anyway).
    pub fn shown<'a>(
        &'a self,
        current: Option<&'a Path>,
    ) -> impl Iterator<Item = (&'a str, &'a RunView)> {
        self.runs
            .iter()
            .filter(move |r| r.shown && current != Some(r.dir.as_path()))
            .filter_map(|r| match &r.view {
                Some(Ok(v)) => Some((r.name.as_str(), v)),
                _ => None,
            })
    }
}

impl Overlays {
    /// Folds a watcher's new events of `dir` into its overlay, when shown (read whole again
    /// where the view cannot follow).
    pub fn follow(
        &mut self,
        dir: &Path,
        from: u64,
        events: &[(u64, crate::train::protocol::TrainEvent)],
    ) {
        for run in self.runs.iter_mut().filter(|r| r.dir == dir) {
            if let Some(Ok(view)) = &mut run.view {
                if !view.follow(from, events) {
                    run.load();
                }
            }
        }
    }

    /// Adds a run folder that appeared (the runs watcher saw it) to the runs offered.
    pub fn offer(&mut self, dir: &Path) {
        if self.runs.iter().any(|r| r.dir == dir) {
            return;
        }
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        self.runs.push(OverlayRun {
            name,
            dir: dir.to_path_buf(),
            shown: false,
            decoder: run_kind(dir),
            view: None,
        });
        self.runs.sort_by(|a, b| a.dir.cmp(&b.dir));
    }
}

/// Whether a run folder's settings make it a decoder run (`None`: no readable settings).
fn run_kind(dir: &Path) -> Option<bool> {
    crate::train::config::RunConfig::load(&dir.join("config.ron"))
        .ok()
        .map(|c| c.is_decoder())
}

/// True when `dir` is the run shown as the current one (however its path is spelled).
pub fn is_current(dir: &Path, current: Option<&Path>) -> bool {
    let Some(current) = current else {
        return false;
    };
    dir == current
        || matches!(
            (dir.canonicalize(), current.canonicalize()),
            (Ok(a), Ok(b)) if a == b
        )
}

impl OverlayRun {
    fn load(&mut self) {
        self.view = Some(RunView::from_run_dir(&self.dir).map_err(|e| format!("{e:#}")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_lists_runs_and_loads_shown_ones() {
        let root = tempfile::tempdir().unwrap();
        for (name, loss) in [("a-run", 2.5), ("b-run", 3.5)] {
            let dir = root.path().join(name);
            std::fs::create_dir(&dir).unwrap();
            let line = format!(
                "{{\"event\":\"lm_eval\",\"stage\":0,\"global_step\":10,\"results\":[{{\"role\":\"student\",\"subnet\":\"s\",\"loss\":{loss},\"perplexity\":1.0,\"top1_accuracy\":0.5}}]}}\n"
            );
            std::fs::write(dir.join("metrics.jsonl"), line).unwrap();
        }
        std::fs::create_dir(root.path().join("not-a-run")).unwrap();
        let mut o = Overlays::default();
        o.scan(root.path());
        let names: Vec<&str> = o.runs.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["a-run", "b-run"]);
        assert_eq!(o.shown(None).count(), 0);
        o.set_shown("b-run", true);
        let shown: Vec<(&str, f64)> = o
            .shown(None)
            .map(|(n, v)| (n, v.val_loss["student"][0][1]))
            .collect();
        assert_eq!(shown, vec![("b-run", 3.5)]);
        // The current run is not drawn twice.
        assert_eq!(o.shown(Some(&root.path().join("b-run"))).count(), 0);
    }
}
