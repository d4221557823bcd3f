//! A search as the studio and the command line start it: the run folder opened (either kind)
//! for writing, its search subject built, the search run with the caller's events and stop.

use crate::search::classifier::ClassifierSubject;
use crate::search::decoder::DecoderSubject;
use crate::search::driver::{self, SearchEvent, SearchOptions, SearchResult};
use crate::search::subject::Subject;
use crate::train::kind::is_decoder_run;
use crate::train::run::Placement;
use crate::train::{ClassifierRun, DecoderRun};
use anyhow::Result;
use std::path::Path;

/// Opens the trained run in `run_dir` (either kind) for writing and hands its search subject
/// to `f`, with the notes of opening it.
pub fn with_subject<T>(
    run_dir: &Path,
    placement: Placement,
    f: impl FnOnce(&dyn Subject, Vec<String>) -> Result<T>,
) -> Result<T> {
    if is_decoder_run(run_dir) {
        let mut run = DecoderRun::open_trained_on(run_dir, placement)?;
        run.lock_for_writing()?;
        let notes = run.reader_notes();
        f(&DecoderSubject { run: &run }, notes)
    } else {
        let mut run = ClassifierRun::open_trained_on(run_dir, placement)?;
        run.lock_for_writing()?;
        let notes = run.reader_notes();
        f(&ClassifierSubject { run: &run }, notes)
    }
}

/// Runs (or resumes) a search of the run in `run_dir` on its own device, events to `send`.
pub fn run_search(
    run_dir: &Path,
    options: &SearchOptions,
    send: impl Fn(SearchEvent),
    keep_going: impl Fn() -> bool,
) -> Result<SearchResult> {
    with_subject(run_dir, Placement::default(), |subject, notes| {
        for n in notes {
            send(SearchEvent::Note(format!("warning: {n}")));
        }
        driver::search(subject, options, &mut |e| send(e), &keep_going)
    })
}
