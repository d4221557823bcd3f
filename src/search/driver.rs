//! The search under a budget: NSGA-II over the per-layer space on (estimated quality, predicted
//! cost) with the budget as its constraint, every uniform subnet of the grid in the first
//! population; state written after every generation so a killed search resumes to the same
//! result; then the top candidates and the best uniform ones measured as palette rows, and the
//! answer taken by measurement.

use super::budget::{Budget, Costs};
use super::genome::Coding;
use super::latency_table::{self, LatencyTable, Origin};
use super::nsga2::{self, Genome, Scored};
use super::subject::{Estimate, Measured, Subject};
use crate::model::SubnetSpec;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The state file in the run folder.
pub const STATE_FILE: &str = "search-state.json";
/// Every evaluated candidate.
pub const CANDIDATES_FILE: &str = "search.csv";
/// The answer.
pub const RESULT_FILE: &str = "search.json";
/// Quality estimates by subnet, shared by every search of the run.
pub const CACHE_FILE: &str = "search-cache.csv";

/// How a search runs.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchOptions {
    pub budget: Budget,
    /// Candidates estimated, the first population included.
    pub evaluations: usize,
    /// Searched candidates measured at the end.
    pub top_k: usize,
    pub seed: u64,
    /// A latency table timed elsewhere (else the run folder's, timed when missing).
    pub latency_table: Option<PathBuf>,
    /// Stop after this long (the search's own time, verification apart).
    pub time_limit: Option<Duration>,
    /// Candidates kept from one generation to the next (at least the grid's size).
    pub population: usize,
}

impl SearchOptions {
    /// The command line's defaults for `budget`.
    pub fn new(budget: Budget) -> Self {
        Self {
            budget,
            evaluations: 300,
            top_k: 8,
            seed: 0,
            latency_table: None,
            time_limit: None,
            population: 32,
        }
    }
}

/// One evaluated candidate (a row of `search.csv`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    pub generation: usize,
    pub subnet: String,
    /// A subnet of the uniform grid.
    pub uniform: bool,
    pub predicted_latency_ms: f64,
    pub params: usize,
    pub size_bytes: usize,
    /// The estimate as shown (dev accuracy on the subset, or validation loss on the blocks).
    pub estimate: f64,
    /// Higher is better.
    pub merit: f64,
    pub within_budget: bool,
}

/// What a search tells as it goes.
#[derive(Debug, Clone, PartialEq)]
pub enum SearchEvent {
    Note(String),
    /// A candidate estimated (also those of a resumed state, once).
    Evaluated(Candidate),
    /// A generation done: its number, evaluations so far, the best within budget so far.
    Generation {
        generation: usize,
        evaluations: usize,
        best: Option<Candidate>,
    },
    /// A verified subnet: measured, with its prediction.
    Verified {
        measured: Measured,
        predicted_latency_ms: f64,
        over_budget: bool,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct State {
    seed: u64,
    budget: String,
    /// The latency table's rows as predicted with (another table starts the search again).
    #[serde(default)]
    table: String,
    /// The factor the table's times were scaled by for this machine as it ran when the
    /// search started (1 for a table timed elsewhere); a resumed search keeps it.
    #[serde(default = "unscaled")]
    calibration: f64,
    evaluations: usize,
    population_size: usize,
    /// The next generation to breed.
    generation: usize,
    population: Vec<Scored>,
    candidates: Vec<Candidate>,
}

/// One verified subnet in `search.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerifiedRow {
    pub role: String,
    pub subnet: String,
    pub uniform: bool,
    pub predicted_latency_ms: f64,
    pub latency_median_ms: f64,
    pub latency_p90_ms: f64,
    pub params: usize,
    pub size_bytes: usize,
    /// The whole split's dev accuracy or validation loss.
    pub measured: f64,
    pub estimate: f64,
    pub over_budget: bool,
}

/// The answer (`search.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchResult {
    pub budget: String,
    pub quality: String,
    pub evaluations: usize,
    pub generations: usize,
    pub search_seconds: f64,
    pub latency_table: String,
    pub best_searched: Option<VerifiedRow>,
    pub best_uniform: Option<VerifiedRow>,
    /// `searched`, `uniform` or `none` (nothing measured within budget).
    pub best_is: String,
    /// Mean absolute percentage error of the predicted latency over the verified subnets.
    pub predictor_mape_pct: f64,
    /// The largest (predicted − measured) / measured, and the smallest (most under).
    pub worst_over_prediction_pct: f64,
    pub worst_under_prediction_pct: f64,
    /// How much slower (+) or faster (−) this machine ran the maxnet and the smallest subnet,
    /// timed beside the verified subnets, than the latency table predicts them: the machine's
    /// drift since the table was timed (or the gap to the machine it was timed on), part of
    /// the predictor's error.
    #[serde(default)]
    pub table_drift_pct: f64,
    /// The factor the table's times were scaled by to this machine's speed when the search
    /// started (1: a table of another machine, or a budget that is not latency).
    #[serde(default = "unscaled")]
    pub table_calibration: f64,
    /// The same factor timed again right before the verification: the verified subnets were
    /// chosen, and their latency predicted, with it.
    #[serde(default = "unscaled")]
    pub table_calibration_verified: f64,
    pub verified: Vec<VerifiedRow>,
}

impl SearchResult {
    /// The comparison line the command line ends with.
    pub fn summary(&self) -> String {
        let show = |r: &Option<VerifiedRow>| {
            r.as_ref().map_or("none within budget".to_string(), |r| {
                format!(
                    "{} {:.4} at {:.3} ms (predicted {:.3}), {:.2} M parameters",
                    r.subnet,
                    r.measured,
                    r.latency_median_ms,
                    r.predicted_latency_ms,
                    r.params as f64 / 1e6
                )
            })
        };
        format!(
            "within {}: best searched {}; best uniform {}; the best by measurement is {} ({}); latency predictor error {:.1} % mean, {:+.1} % .. {:+.1} %; the table's reference subnets ran {:+.1} % against it",
            self.budget,
            show(&self.best_searched),
            show(&self.best_uniform),
            self.best_is,
            self.quality,
            self.predictor_mape_pct,
            self.worst_under_prediction_pct,
            self.worst_over_prediction_pct,
            self.table_drift_pct
        )
    }
}

/// The run's latency table: `file` when given (refused when it is for another teacher or lacks
/// a choice of the space), else the run folder's, timed now when it is missing or incomplete.
pub fn latency_table_of(
    subject: &dyn Subject,
    file: Option<&Path>,
    on: &mut dyn FnMut(SearchEvent),
) -> Result<LatencyTable> {
    let space = subject.space();
    let covers = |t: &LatencyTable| -> Result<()> {
        for spec in space.all() {
            t.predict(&spec, &space.teacher)?;
        }
        Ok(())
    };
    let read = |path: &Path| -> Result<LatencyTable> {
        let table = LatencyTable::read(path)?;
        table.check_teacher(&space.teacher, path)?;
        Ok(table)
    };
    let chosen = match file {
        // A table named on the command line must serve the whole space.
        Some(path) => {
            let table = read(path)?;
            covers(&table).with_context(|| format!("{}", path.display()))?;
            Some((path.to_path_buf(), table))
        }
        // The run folder's is timed again when the space has outgrown it.
        None => {
            let path = subject.run_dir().join(latency_table::FILE);
            if path.is_file() {
                Some(read(&path)?)
                    .filter(|t| covers(t).is_ok())
                    .map(|t| (path, t))
            } else {
                None
            }
        }
    };
    if let Some((path, table)) = chosen {
        on(SearchEvent::Note(format!(
            "latency table {}: {}",
            path.display(),
            table.origin_line()
        )));
        return Ok(table);
    }
    time_table(subject, on)
}

/// Times the run's latency table and writes it into the run folder.
pub fn time_table(subject: &dyn Subject, on: &mut dyn FnMut(SearchEvent)) -> Result<LatencyTable> {
    let path = subject.run_dir().join(latency_table::FILE);
    let processor = crate::eval::machine::processor();
    let device = subject.device_name();
    let origin = Origin {
        processor: &processor,
        device: &device,
        seq_len: subject.seq_len(),
    };
    on(SearchEvent::Note(format!(
        "timing the latency table on {processor} ({device})"
    )));
    let mut time = |spec: &SubnetSpec| subject.time(spec);
    let mut progress = |line: &str| on(SearchEvent::Note(format!("latency table: {line}")));
    let table = LatencyTable::measure(subject.space(), &origin, &mut time, &mut progress)?;
    table.write(&path)?;
    Ok(table)
}

/// A few subnets (the maxnet, the smallest subnet, two per-layer ones drawn with `seed`)
/// timed as the palette times them, beside the table's prediction: (subnet, predicted ms,
/// measured median ms). What `latency-table` and `bench --run` print.
pub fn check_table(
    subject: &dyn Subject,
    table: &LatencyTable,
    seed: u64,
) -> Result<Vec<(String, f64, f64)>> {
    let space = subject.space();
    let coding = Coding::new(space);
    let choices = coding.choices();
    // The space's smallest subnet is its stage-2 minnet (least depth, heads, FFN and hidden).
    let mut specs = vec![space.maxnet(), space.minnet(2)];
    let mut rng = nsga2::generation_rng(seed, usize::MAX);
    for g in random_unseen(&coding, &choices, 2, &mut rng, &HashSet::new(), &[]) {
        specs.push(coding.decode(&g));
    }
    let mut time = |spec: &SubnetSpec| subject.time(spec);
    let measured = latency_table::time_interleaved(&mut time, &specs)?;
    specs
        .into_iter()
        .zip(measured)
        .map(|(spec, measured)| {
            let predicted = table.predict(&spec, &space.teacher)?;
            Ok((spec.to_string(), predicted, measured.median_ms))
        })
        .collect()
}

/// Estimates cached by subnet (`search-cache.csv`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct CachedEstimate {
    subnet: String,
    merit: f64,
    value: f64,
}

fn read_cache(path: &Path) -> Result<HashMap<String, Estimate>> {
    if !path.is_file() {
        return Ok(HashMap::new());
    }
    let rows: Vec<CachedEstimate> = crate::eval::csv_table::read_rows(path)?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let e = Estimate {
                merit: r.merit,
                value: r.value,
            };
            (r.subnet, e)
        })
        .collect())
}

fn write_cache(path: &Path, cache: &HashMap<String, Estimate>) -> Result<()> {
    let mut rows: Vec<CachedEstimate> = cache
        .iter()
        .map(|(s, e)| CachedEstimate {
            subnet: s.clone(),
            merit: e.merit,
            value: e.value,
        })
        .collect();
    rows.sort_by(|a, b| a.subnet.cmp(&b.subnet));
    crate::eval::csv_table::write_rows(path, &rows)
}

/// The predicted costs of a subnet.
fn costs_of(subject: &dyn Subject, table: &LatencyTable, spec: &SubnetSpec) -> Result<Costs> {
    let (params, size_bytes) = subject.params_and_size(spec);
    Ok(Costs {
        latency_ms: table.predict(spec, &subject.space().teacher)?,
        params,
        size_bytes,
    })
}

/// Refuses a budget that not even the smallest subnet of the space fits, naming its cost.
fn check_reachable(subject: &dyn Subject, table: &LatencyTable, budget: &Budget) -> Result<()> {
    let space = subject.space();
    let smallest = space.minnet(2);
    let cost = budget.cost(&costs_of(subject, table, &smallest)?);
    if cost > budget.limit() {
        bail!(
            "budget {budget} is below the smallest subnet of the space: {smallest} takes {cost:.3} {} (predicted on this latency table)",
            budget.unit()
        );
    }
    Ok(())
}

/// Runs (or resumes) a search on `subject`; `keep_going` false stops it at the next
/// generation, verification included.
pub fn search(
    subject: &dyn Subject,
    options: &SearchOptions,
    on: &mut dyn FnMut(SearchEvent),
    keep_going: &dyn Fn() -> bool,
) -> Result<SearchResult> {
    let started = Instant::now();
    let dir = subject.run_dir();
    let timed_table = latency_table_of(subject, options.latency_table.as_deref(), on)?;
    let budget = options.budget;
    let coding = Coding::new(subject.space());
    let choices = coding.choices();
    let grid = coding.grid();
    let population_size = options.population.max(grid.len()).max(4);
    let state_path = dir.join(STATE_FILE);
    let cache_path = dir.join(CACHE_FILE);
    let mut cache = read_cache(&cache_path)?;
    let fresh = State {
        seed: options.seed,
        budget: budget.to_string(),
        table: table_fingerprint(&timed_table),
        calibration: 1.0,
        evaluations: options.evaluations,
        population_size,
        generation: 0,
        population: Vec::new(),
        candidates: Vec::new(),
    };
    let mut state = match read_state(&state_path)? {
        Some(s)
            if s.seed == fresh.seed
                && s.budget == fresh.budget
                && s.table == fresh.table
                && s.population_size == population_size =>
        {
            on(SearchEvent::Note(format!(
                "resuming the search from generation {} ({} candidates evaluated)",
                s.generation,
                s.candidates.len()
            )));
            for c in &s.candidates {
                on(SearchEvent::Evaluated(c.clone()));
            }
            State {
                evaluations: options.evaluations,
                ..s
            }
        }
        // Only a latency budget depends on the machine's speed now.
        _ if matches!(budget, Budget::LatencyMs(_)) => State {
            calibration: calibration(subject, &timed_table, on)?,
            ..fresh
        },
        _ => fresh,
    };
    let table = timed_table.scaled(state.calibration);
    check_reachable(subject, &table, &budget)?;
    let mut seen: HashSet<Genome> = state.population.iter().map(|s| s.genome.clone()).collect();
    for c in &state.candidates {
        if let Some(g) = genome_of(&coding, &c.subnet) {
            seen.insert(g);
        }
    }
    let evaluate = |genomes: Vec<Genome>,
                    generation: usize,
                    state: &mut State,
                    cache: &mut HashMap<String, Estimate>,
                    on: &mut dyn FnMut(SearchEvent)|
     -> Result<Vec<Scored>> {
        let mut out = Vec::new();
        for g in genomes {
            let spec = coding.decode(&g);
            let name = spec.to_string();
            let estimate = match cache.get(&name) {
                Some(e) => *e,
                None => {
                    let e = subject.estimate(&spec)?;
                    cache.insert(name.clone(), e);
                    e
                }
            };
            let costs = costs_of(subject, &table, &spec)?;
            let candidate = Candidate {
                generation,
                subnet: name,
                uniform: grid.contains(&g),
                predicted_latency_ms: costs.latency_ms,
                params: costs.params,
                size_bytes: costs.size_bytes,
                estimate: estimate.value,
                merit: estimate.merit,
                within_budget: budget.violation(&costs) == 0.0,
            };
            on(SearchEvent::Evaluated(candidate.clone()));
            state.candidates.push(candidate);
            out.push(Scored {
                genome: g,
                objectives: vec![-estimate.merit, budget.cost(&costs)],
                violation: budget.violation(&costs),
            });
        }
        Ok(out)
    };
    let mut stopped = false;
    while state.candidates.len() < state.evaluations {
        if !keep_going() {
            stopped = true;
            break;
        }
        if options.time_limit.is_some_and(|t| started.elapsed() >= t) {
            on(SearchEvent::Note("the search's time is up".into()));
            break;
        }
        let generation = state.generation;
        let room = state.evaluations - state.candidates.len();
        let mut rng = nsga2::generation_rng(state.seed, generation);
        let genomes: Vec<Genome> = if generation == 0 {
            // Every uniform subnet first, then random per-layer ones up to the population.
            let mut first: Vec<Genome> = grid
                .iter()
                .filter(|g| !seen.contains(*g))
                .cloned()
                .collect();
            let wanted = population_size.saturating_sub(grid.len());
            first.extend(random_unseen(
                &coding, &choices, wanted, &mut rng, &seen, &first,
            ));
            first
        } else {
            let canonical = |g: Genome| coding.canonical(g);
            let wanted = population_size.min(room);
            let mut children = nsga2::offspring(
                &state.population,
                &choices,
                wanted,
                &mut rng,
                &seen,
                &canonical,
            );
            // Where breeding finds too few new candidates (a small or nearly searched space),
            // random ones fill the generation.
            let missing = wanted - children.len();
            let immigrants = random_unseen(&coding, &choices, missing, &mut rng, &seen, &children);
            children.extend(immigrants);
            children
        };
        let genomes: Vec<Genome> = genomes.into_iter().take(room.max(grid.len())).collect();
        if genomes.is_empty() && generation > 0 {
            on(SearchEvent::Note(
                "no new candidates left to breed: the space is searched".into(),
            ));
            break;
        }
        for g in &genomes {
            seen.insert(g.clone());
        }
        let scored = evaluate(genomes, generation, &mut state, &mut cache, on)?;
        let mut pool = std::mem::take(&mut state.population);
        pool.extend(scored);
        state.population = nsga2::survivors(&pool, population_size);
        state.generation += 1;
        write_cache(&cache_path, &cache)?;
        write_candidates(&dir.join(CANDIDATES_FILE), &state.candidates)?;
        write_state(&state_path, &state)?;
        on(SearchEvent::Generation {
            generation,
            evaluations: state.candidates.len(),
            best: best_estimated(&state.candidates),
        });
    }
    let search_seconds = started.elapsed().as_secs_f64();
    if stopped {
        bail!(
            "search stopped after {} candidates; run it again to continue from {}",
            state.candidates.len(),
            state_path.display()
        );
    }
    // The machine's speed drifts while the search runs: the table is scaled again to its speed
    // now, and the candidates to measure are chosen (and their latency predicted) with it.
    let mut verified_calibration = state.calibration;
    let (table, candidates) = if matches!(budget, Budget::LatencyMs(_)) {
        let now = calibration(subject, &timed_table, on)?;
        verified_calibration = now;
        let rescaled: Vec<Candidate> = state
            .candidates
            .iter()
            .map(|c| {
                let predicted_latency_ms = c.predicted_latency_ms * now / state.calibration;
                let costs = Costs {
                    latency_ms: predicted_latency_ms,
                    params: c.params,
                    size_bytes: c.size_bytes,
                };
                Candidate {
                    predicted_latency_ms,
                    within_budget: budget.violation(&costs) == 0.0,
                    ..c.clone()
                }
            })
            .collect();
        (timed_table.scaled(now), rescaled)
    } else {
        (table, state.candidates.clone())
    };
    let (verified, table_drift_pct) =
        verify(subject, &table, options, &candidates, on, keep_going)?;
    let mut result = conclude(
        subject,
        &budget,
        &state,
        verified,
        search_seconds,
        table.origin_line(),
    );
    result.table_drift_pct = table_drift_pct;
    result.table_calibration_verified = verified_calibration;
    let text = serde_json::to_string_pretty(&result).context("cannot write search.json")?;
    crate::files::write_atomic(&dir.join(RESULT_FILE), text.as_bytes())?;
    Ok(result)
}

/// Up to `n` random genomes of the space, canonical, neither in `seen` nor in `taken`.
fn random_unseen(
    coding: &Coding<'_>,
    choices: &[usize],
    n: usize,
    rng: &mut rand::rngs::StdRng,
    seen: &HashSet<Genome>,
    taken: &[Genome],
) -> Vec<Genome> {
    let mut out: Vec<Genome> = Vec::new();
    let mut tries = 0;
    while out.len() < n && tries < 100 * n.max(1) {
        tries += 1;
        let g = coding.canonical(
            choices
                .iter()
                .map(|&k| rand::Rng::random_range(rng, 0..k.max(1)))
                .collect(),
        );
        if !seen.contains(&g) && !taken.contains(&g) && !out.contains(&g) {
            out.push(g);
        }
    }
    out
}

/// The genome of a subnet written in a candidate row (None when it is not of this space).
fn genome_of(coding: &Coding<'_>, subnet: &str) -> Option<Genome> {
    let spec: SubnetSpec = subnet.parse().ok()?;
    let s = coding.space;
    let index = |list: &[usize], v: usize| list.iter().position(|&x| x == v);
    let depth = index(&s.depths, spec.layers.len())?;
    let hidden = index(&s.hidden, spec.hidden_or(s.teacher.hidden))?;
    let mut g = coding.uniform(depth, 0, 0, hidden);
    let slots = (g.len() - 2) / 2;
    for i in 0..spec.layers.len() {
        let (h, f) = spec.layer_widths(i);
        g[2 + i] = index(&s.heads, h)?;
        g[2 + slots + i] = index(&s.ffn, f)?;
    }
    Some(coding.canonical(g))
}

/// What identifies a latency table's predictions: its timed parts.
fn table_fingerprint(table: &LatencyTable) -> String {
    table
        .rows
        .iter()
        .map(|r| {
            format!(
                "{}:{}:{}:{}:{}:{}",
                r.part, r.hidden, r.heads, r.ffn, r.depth, r.median_ms
            )
        })
        .collect::<Vec<_>>()
        .join(";")
}

fn unscaled() -> f64 {
    1.0
}

/// The factor that brings a table of this machine to its speed now: the maxnet and the
/// smallest subnet timed in interleaved rounds against the table's prediction of them (a
/// shared machine's speed drifts by a fifth within minutes; the table's shape, what a layer
/// costs against another, holds). A table timed on another processor or device is the
/// target's, and is left as it is.
fn calibration(
    subject: &dyn Subject,
    table: &LatencyTable,
    on: &mut dyn FnMut(SearchEvent),
) -> Result<f64> {
    let processor = crate::eval::machine::processor();
    if !table.is_of(&processor, &subject.device_name()) {
        return Ok(1.0);
    }
    let references = reference_subnets(subject.space());
    let mut time = |spec: &SubnetSpec| subject.time(spec);
    let now = latency_table::time_interleaved(&mut time, &references)?;
    let factor = reference_ratio(subject.space(), table, &now)?;
    on(SearchEvent::Note(format!(
        "this machine runs the maxnet and the smallest subnet {:+.1} % against the latency table: its times are scaled by {factor:.3}",
        100.0 * (factor - 1.0)
    )));
    Ok(factor)
}

/// The subnets a table's drift is read on: the maxnet and the space's smallest subnet.
fn reference_subnets(space: &crate::mlfs::space::SearchSpace) -> [SubnetSpec; 2] {
    [space.maxnet(), space.minnet(2)]
}

/// How the machine ran the reference subnets (`now`, timed in this order) against the table's
/// prediction of them: the mean of their ratios (1 when none can be compared).
fn reference_ratio(
    space: &crate::mlfs::space::SearchSpace,
    table: &LatencyTable,
    now: &[crate::eval::latency::Latency],
) -> Result<f64> {
    let mut ratios = Vec::new();
    for (spec, now) in reference_subnets(space).iter().zip(now) {
        let predicted = table.predict(spec, &space.teacher)?;
        if predicted > 0.0 && now.median_ms > 0.0 {
            ratios.push(now.median_ms / predicted);
        }
    }
    Ok(if ratios.is_empty() {
        1.0
    } else {
        ratios.iter().sum::<f64>() / ratios.len() as f64
    })
}

fn read_state(path: &Path) -> Result<Option<State>> {
    if !path.is_file() {
        return Ok(None);
    }
    let text = crate::files::read_text(path, "search state")?;
    // A state from another build or a torn write starts the search again (the cache keeps
    // the estimates): it is never an error that stops the user.
    Ok(serde_json::from_str(&text).ok())
}

fn write_state(path: &Path, state: &State) -> Result<()> {
    let text = serde_json::to_string(state).context("cannot write the search state")?;
    crate::files::write_atomic(path, text.as_bytes())
}

fn write_candidates(path: &Path, candidates: &[Candidate]) -> Result<()> {
    crate::eval::csv_table::write_rows(path, candidates)
}

/// The best candidate within budget by its estimate.
pub fn best_estimated(candidates: &[Candidate]) -> Option<Candidate> {
    candidates
        .iter()
        .filter(|c| c.within_budget)
        .max_by(|a, b| a.merit.total_cmp(&b.merit))
        .cloned()
}

/// The top `k` candidates within budget by estimate, uniform ones or not.
fn top(candidates: &[Candidate], uniform: bool, k: usize) -> Vec<Candidate> {
    let mut within: Vec<Candidate> = candidates
        .iter()
        .filter(|c| c.within_budget && c.uniform == uniform)
        .cloned()
        .collect();
    within.sort_by(|a, b| b.merit.total_cmp(&a.merit));
    within.dedup_by(|a, b| a.subnet == b.subnet);
    within.truncate(k);
    within
}

/// Measures the top searched candidates (role `searched`) and the best uniform ones beside
/// them (their palette roles) as palette rows; returns them and the table's drift (percent,
/// positive when slower now than the table says). Under a latency budget, a kind (searched or uniform)
/// whose every measured subnet came out over the budget gets a second round: its best
/// candidates whose prediction, scaled by how the measured ones ran against theirs, fits.
/// The best candidates sit at the budget's edge, where a few percent of drift puts them all
/// over it; the answer must be measured within it.
fn verify(
    subject: &dyn Subject,
    table: &LatencyTable,
    options: &SearchOptions,
    candidates: &[Candidate],
    on: &mut dyn FnMut(SearchEvent),
    keep_going: &dyn Fn() -> bool,
) -> Result<(Vec<(Candidate, Measured)>, f64)> {
    let uniform_k = options.top_k.div_ceil(2).max(3);
    let searched = top(candidates, false, options.top_k);
    let uniform = top(candidates, true, uniform_k);
    let chosen: Vec<Candidate> = searched.into_iter().chain(uniform).collect();
    let (mut out, drift) =
        measure_chosen(subject, table, &options.budget, &chosen, on, keep_going)?;
    let Budget::LatencyMs(limit) = options.budget else {
        return Ok((out, drift));
    };
    let mut ratios: Vec<f64> = out
        .iter()
        .filter(|(c, _)| c.predicted_latency_ms > 0.0)
        .map(|(c, m)| m.latency_median_ms / c.predicted_latency_ms)
        .collect();
    ratios.sort_by(f64::total_cmp);
    let Some(&ratio) = ratios.get(ratios.len() / 2) else {
        return Ok((out, drift));
    };
    let mut again = Vec::new();
    for (uniform, k) in [(false, options.top_k), (true, uniform_k)] {
        let fits = out
            .iter()
            .any(|(c, m)| c.uniform == uniform && !over_budget(&options.budget, m));
        if fits || out.iter().all(|(c, _)| c.uniform != uniform) {
            continue;
        }
        let mut next: Vec<Candidate> = candidates
            .iter()
            .filter(|c| c.uniform == uniform && c.within_budget)
            .filter(|c| c.predicted_latency_ms * ratio <= limit)
            .filter(|c| out.iter().all(|(m, _)| m.subnet != c.subnet))
            .cloned()
            .collect();
        next.sort_by(|a, b| b.merit.total_cmp(&a.merit));
        next.dedup_by(|a, b| a.subnet == b.subnet);
        next.truncate(k.div_ceil(2));
        again.extend(next);
    }
    if !again.is_empty() && keep_going() {
        on(SearchEvent::Note(format!(
            "measured over the budget: {} more candidates whose prediction fits at the measured pace (×{ratio:.3})",
            again.len()
        )));
        let (more, _) = measure_chosen(subject, table, &options.budget, &again, on, keep_going)?;
        out.extend(more);
    }
    Ok((out, drift))
}

/// Measures `chosen` as palette rows, their latencies timed in interleaved rounds together
/// with the maxnet and the smallest subnet; returns them and the table's drift on those two.
fn measure_chosen(
    subject: &dyn Subject,
    table: &LatencyTable,
    budget: &Budget,
    chosen: &[Candidate],
    on: &mut dyn FnMut(SearchEvent),
    keep_going: &dyn Fn() -> bool,
) -> Result<(Vec<(Candidate, Measured)>, f64)> {
    let subjects: Vec<(String, SubnetSpec)> = chosen
        .iter()
        .map(|c| {
            let role = if c.uniform { "" } else { "searched" };
            c.subnet.parse().map(|s| (role.to_string(), s))
        })
        .collect::<Result<_>>()?;
    on(SearchEvent::Note(format!(
        "measuring {} subnets as palette rows (the whole {} split)",
        subjects.len(),
        if subject.quality_name().contains("accuracy") {
            "dev"
        } else {
            "validation"
        }
    )));
    let references = reference_subnets(subject.space());
    let specs: Vec<SubnetSpec> = subjects
        .iter()
        .map(|(_, s)| s.clone())
        .chain(references.iter().cloned())
        .collect();
    let mut time = |spec: &SubnetSpec| subject.time(spec);
    let mut latencies = latency_table::time_interleaved(&mut time, &specs)?;
    let reference_times = latencies.split_off(subjects.len());
    let drift = 100.0 * (reference_ratio(subject.space(), table, &reference_times)? - 1.0);
    on(SearchEvent::Note(format!(
        "the maxnet and the smallest subnet ran {drift:+.1} % against the latency table{}",
        if drift.abs() > 10.0 {
            ": the machine is not as it was when the table was timed; `latency-table` times it again"
        } else {
            ""
        }
    )));
    let measured = subject.measure(&subjects, &latencies, keep_going)?;
    let mut out = Vec::new();
    for m in measured {
        if let Some(c) = chosen.iter().find(|c| c.subnet == m.subnet) {
            let over = over_budget(budget, &m);
            on(SearchEvent::Verified {
                measured: m.clone(),
                predicted_latency_ms: c.predicted_latency_ms,
                over_budget: over,
            });
            out.push((c.clone(), m));
        }
    }
    Ok((out, drift))
}

/// Whether a measured subnet exceeds the budget.
fn over_budget(budget: &Budget, m: &Measured) -> bool {
    let costs = Costs {
        latency_ms: m.latency_median_ms,
        params: m.params,
        size_bytes: m.size_bytes,
    };
    budget.violation(&costs) > 0.0
}

fn conclude(
    subject: &dyn Subject,
    budget: &Budget,
    state: &State,
    verified: Vec<(Candidate, Measured)>,
    search_seconds: f64,
    latency_table: String,
) -> SearchResult {
    let rows: Vec<(VerifiedRow, f64)> = verified
        .iter()
        .map(|(c, m)| {
            let row = VerifiedRow {
                role: m.role.clone(),
                subnet: m.subnet.clone(),
                uniform: c.uniform,
                predicted_latency_ms: c.predicted_latency_ms,
                latency_median_ms: m.latency_median_ms,
                latency_p90_ms: m.latency_p90_ms,
                params: m.params,
                size_bytes: m.size_bytes,
                measured: m.value,
                estimate: c.estimate,
                over_budget: over_budget(budget, m),
            };
            (row, m.merit)
        })
        .collect();
    let best = |uniform: bool| {
        rows.iter()
            .filter(|(r, _)| r.uniform == uniform && !r.over_budget)
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .cloned()
    };
    let (searched, uniform) = (best(false), best(true));
    let best_is = match (&searched, &uniform) {
        (Some(s), Some(u)) if s.1 > u.1 => "searched",
        (Some(_), Some(_)) => "uniform",
        (Some(_), None) => "searched",
        (None, Some(_)) => "uniform",
        (None, None) => "none",
    };
    let errors: Vec<f64> = rows
        .iter()
        .filter(|(r, _)| r.latency_median_ms > 0.0)
        .map(|(r, _)| 100.0 * (r.predicted_latency_ms - r.latency_median_ms) / r.latency_median_ms)
        .collect();
    let mape = errors.iter().map(|e| e.abs()).sum::<f64>() / errors.len().max(1) as f64;
    let fold = |f: fn(f64, f64) -> f64, start: f64| {
        if errors.is_empty() {
            0.0
        } else {
            errors.iter().copied().fold(start, f)
        }
    };
    SearchResult {
        budget: budget.to_string(),
        quality: subject.quality_name().to_string(),
        evaluations: state.candidates.len(),
        generations: state.generation,
        search_seconds,
        latency_table,
        best_searched: searched.map(|s| s.0),
        best_uniform: uniform.map(|u| u.0),
        best_is: best_is.to_string(),
        predictor_mape_pct: mape,
        worst_over_prediction_pct: fold(f64::max, f64::NEG_INFINITY),
        worst_under_prediction_pct: fold(f64::min, f64::INFINITY),
        table_drift_pct: 0.0,
        table_calibration: state.calibration,
        table_calibration_verified: state.calibration,
        verified: rows.into_iter().map(|(r, _)| r).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::latency::Latency;
    use crate::mlfs::config::SpaceConfig;
    use crate::mlfs::space::SearchSpace;
    use crate::model::TeacherShape;
    use std::cell::Cell;

    /// A run whose quality and costs are formulas of the subnet: a layer's quality grows with
    /// its widths with diminishing returns, its time linearly, so per-layer mixes matter.
    struct Synthetic {
        dir: tempfile::TempDir,
        space: SearchSpace,
        estimates: Cell<usize>,
        /// How much slower than at first the machine runs now.
        slowdown: Cell<f64>,
    }

    fn synthetic() -> Synthetic {
        let teacher = TeacherShape::MINILM_L3;
        let config = SpaceConfig {
            depths: vec![1, 3],
            heads: vec![3, 12],
            ffn: vec![384, 1536],
            widths: crate::mlfs::config::WidthMode::PerLayer,
            ..SpaceConfig::default()
        };
        Synthetic {
            dir: tempfile::tempdir().unwrap(),
            space: SearchSpace::new(teacher, &config).unwrap(),
            estimates: Cell::new(0),
            slowdown: Cell::new(1.0),
        }
    }

    fn layer_time(heads: usize, ffn: usize) -> f64 {
        0.1 * heads as f64 + 0.001 * ffn as f64
    }

    impl Subject for Synthetic {
        fn run_dir(&self) -> &Path {
            self.dir.path()
        }
        fn space(&self) -> &SearchSpace {
            &self.space
        }
        fn quality_name(&self) -> &'static str {
            "dev accuracy"
        }
        fn estimate(&self, spec: &SubnetSpec) -> Result<Estimate> {
            self.estimates.set(self.estimates.get() + 1);
            let q: f64 = (0..spec.layers.len())
                .map(|i| {
                    let (h, f) = spec.layer_widths(i);
                    // Position matters: the first kept layer gains most from width.
                    let weight = 1.0 / (1.0 + i as f64);
                    weight * ((h as f64).ln() + 0.5 * (f as f64).ln())
                })
                .sum();
            Ok(Estimate { merit: q, value: q })
        }
        fn params_and_size(&self, spec: &SubnetSpec) -> (usize, usize) {
            let p: usize = (0..spec.layers.len())
                .map(|i| {
                    let (h, f) = spec.layer_widths(i);
                    h * 1000 + f * 100
                })
                .sum();
            (p, 4 * p)
        }
        fn time(&self, spec: &SubnetSpec) -> Result<Latency> {
            let t: f64 = 1.0
                + (0..spec.layers.len())
                    .map(|i| {
                        let (h, f) = spec.layer_widths(i);
                        layer_time(h, f)
                    })
                    .sum::<f64>();
            let t = t * self.slowdown.get();
            Ok(Latency {
                median_ms: t,
                p90_ms: t,
            })
        }
        fn seq_len(&self) -> usize {
            32
        }
        fn device_name(&self) -> String {
            "synthetic".into()
        }
        fn measure(
            &self,
            subjects: &[(String, SubnetSpec)],
            latencies: &[Latency],
            _keep_going: &dyn Fn() -> bool,
        ) -> Result<Vec<Measured>> {
            subjects
                .iter()
                .zip(latencies)
                .map(|((role, spec), latency)| {
                    let t = latency.median_ms;
                    let q = self.estimate(spec)?;
                    let (params, size_bytes) = self.params_and_size(spec);
                    Ok(Measured {
                        role: if role.is_empty() {
                            "subnet".into()
                        } else {
                            role.clone()
                        },
                        subnet: spec.to_string(),
                        latency_median_ms: t,
                        latency_p90_ms: t,
                        params,
                        size_bytes,
                        merit: q.merit,
                        value: q.value,
                    })
                })
                .collect()
        }
    }

    /// Every subnet of the per-layer space: each depth, every heads and FFN choice per layer.
    fn every_subnet(space: &SearchSpace) -> Vec<SubnetSpec> {
        let coding = Coding::new(space);
        let choices = coding.choices();
        let mut all: Vec<Genome> = vec![vec![]];
        for &k in &choices {
            all = all
                .into_iter()
                .flat_map(|g| {
                    (0..k).map(move |c| {
                        let mut g = g.clone();
                        g.push(c);
                        g
                    })
                })
                .collect();
        }
        let mut specs: Vec<SubnetSpec> = all.into_iter().map(|g| coding.decode(&g)).collect();
        specs.sort_by_key(|s| s.to_string());
        specs.dedup();
        specs
    }

    fn run(
        s: &Synthetic,
        options: &SearchOptions,
        stop_after: Option<usize>,
    ) -> Result<SearchResult> {
        let generations = Cell::new(0usize);
        let mut on = |e: SearchEvent| {
            if let SearchEvent::Generation { .. } = e {
                generations.set(generations.get() + 1);
            }
        };
        let keep_going = || stop_after.is_none_or(|n| generations.get() < n);
        search(s, options, &mut on, &keep_going)
    }

    #[test]
    fn the_search_finds_the_brute_force_front_of_a_small_space() {
        let s = synthetic();
        let all = every_subnet(&s.space);
        assert_eq!(all.len(), 4 + 64, "1-layer and 3-layer per-layer subnets");
        let mut options = SearchOptions::new(Budget::LatencyMs(4.0));
        options.evaluations = 500;
        let result = run(&s, &options, None).unwrap();
        // With room for the whole space it evaluates each subnet once, and stops.
        assert_eq!(result.evaluations, all.len());
        assert_eq!(s.estimates.get(), all.len() + result.verified.len());
        // The feasible front of its candidates is the brute-force front of the whole space.
        let rows: Vec<Candidate> =
            crate::eval::csv_table::read_rows(&s.dir.path().join(CANDIDATES_FILE)).unwrap();
        let front = |points: Vec<(String, f64, f64)>| {
            let mut f: Vec<String> = points
                .iter()
                .filter(|(_, c, q)| {
                    !points
                        .iter()
                        .any(|(_, c2, q2)| c2 <= c && q2 >= q && (c2 < c || q2 > q))
                })
                .map(|(n, _, _)| n.clone())
                .collect();
            f.sort();
            f
        };
        let found = front(
            rows.iter()
                .filter(|c| c.within_budget)
                .map(|c| (c.subnet.clone(), c.predicted_latency_ms, c.merit))
                .collect(),
        );
        let brute = front(
            all.iter()
                .filter_map(|spec| {
                    // Summed in another order, equal times may differ in the last bit.
                    let t = crate::util::round_to(s.time(spec).unwrap().median_ms, 9);
                    (t <= 4.0).then(|| (spec.to_string(), t, s.estimate(spec).unwrap().merit))
                })
                .collect(),
        );
        assert_eq!(found, brute);
        // The answer is measured, within budget, and at least as good as the best uniform one.
        let best = result.best_searched.as_ref().unwrap();
        let uniform = result.best_uniform.as_ref().unwrap();
        assert!(best.latency_median_ms <= 4.0 && uniform.latency_median_ms <= 4.0);
        assert!(best.measured >= uniform.measured);
        assert!(
            result.predictor_mape_pct < 0.01,
            "an additive cost is predicted exactly"
        );
    }

    #[test]
    fn a_latency_budget_scales_a_table_of_this_machine_to_its_speed_now() {
        let s = synthetic();
        let on = &mut |_: SearchEvent| {};
        let table = time_table(&s, on).unwrap();
        // The machine now runs everything a quarter slower than when the table was timed.
        s.slowdown.set(1.25);
        let mut options = SearchOptions::new(Budget::LatencyMs(4.0));
        options.evaluations = 30;
        let result = run(&s, &options, None).unwrap();
        assert!((result.table_calibration - 1.25).abs() < 1e-9);
        assert!(result.table_drift_pct.abs() < 1e-6);
        assert!(result.predictor_mape_pct < 0.01, "{}", result.summary());
        let rows: Vec<Candidate> =
            crate::eval::csv_table::read_rows(&s.dir.path().join(CANDIDATES_FILE)).unwrap();
        for c in &rows {
            let spec: SubnetSpec = c.subnet.parse().unwrap();
            let timed_then = table.predict(&spec, &s.space.teacher).unwrap();
            assert!((c.predicted_latency_ms - 1.25 * timed_then).abs() < 1e-9);
            assert_eq!(c.within_budget, c.predicted_latency_ms <= 4.0);
        }
        // A table from another processor is the target's: left unscaled, the drift reported.
        let mut elsewhere = table.clone();
        for row in &mut elsewhere.rows {
            row.processor = "Target board".into();
        }
        let path = s.dir.path().join("target-table.csv");
        elsewhere.write(&path).unwrap();
        options.latency_table = Some(path);
        options.seed = 9;
        let result = run(&s, &options, None).unwrap();
        assert_eq!(result.table_calibration, 1.0);
        assert!((result.table_drift_pct - 25.0).abs() < 1e-6);
        assert!((result.predictor_mape_pct - 20.0).abs() < 1e-6);
        // The machine slows down again during the search: the table is scaled once more
        // before the verification, which chooses and predicts with it.
        let s = synthetic();
        time_table(&s, &mut |_| {}).unwrap();
        let calibrations = Cell::new(0);
        let mut on = |e: SearchEvent| {
            if let SearchEvent::Note(n) = &e {
                if n.starts_with("this machine runs") {
                    calibrations.set(calibrations.get() + 1);
                    s.slowdown.set(1.5);
                }
            }
        };
        let mut options = SearchOptions::new(Budget::LatencyMs(6.0));
        options.evaluations = 30;
        let result = search(&s, &options, &mut on, &|| true).unwrap();
        assert_eq!(calibrations.get(), 2);
        assert!((result.table_calibration - 1.0).abs() < 1e-9);
        assert!((result.table_calibration_verified - 1.5).abs() < 1e-9);
        assert!(result.predictor_mape_pct < 0.01, "{}", result.summary());
        assert!(result
            .verified
            .iter()
            .all(|r| !r.over_budget || r.latency_median_ms > 6.0));
    }

    #[test]
    fn searched_subnets_measured_over_the_budget_make_way_for_ones_that_fit() {
        let s = synthetic();
        let mut options = SearchOptions::new(Budget::LatencyMs(5.0));
        options.evaluations = 500;
        options.top_k = 2;
        // The machine turns a tenth slower once the search has chosen what to measure: the
        // two best searched candidates (predicted 4.852 ms) measure 5.337 ms, over the budget.
        let mut on = |e: SearchEvent| {
            if let SearchEvent::Note(n) = &e {
                if n.starts_with("measuring") {
                    s.slowdown.set(1.1);
                }
            }
        };
        let result = search(&s, &options, &mut on, &|| true).unwrap();
        let over: Vec<&VerifiedRow> = result.verified.iter().filter(|r| r.over_budget).collect();
        assert_eq!(over.len(), 2, "{}", result.summary());
        assert!(over
            .iter()
            .all(|r| !r.uniform && r.predicted_latency_ms > 4.8));
        // A second round measured the best searched one that fits at the measured pace.
        assert_eq!(result.verified.len(), 2 + 3 + 1);
        let best = result
            .best_searched
            .as_ref()
            .expect("a searched subnet within budget");
        assert!((best.predicted_latency_ms - 3.952).abs() < 1e-9);
        assert!(best.latency_median_ms <= 5.0 && !best.over_budget);
        let uniform = result.best_uniform.as_ref().unwrap();
        assert!(best.measured > uniform.measured);
        assert_eq!(result.best_is, "searched");
    }

    #[test]
    fn a_stopped_search_resumes_to_the_same_result() {
        let mut options = SearchOptions::new(Budget::ParamsM(0.1));
        options.evaluations = 40;
        options.population = 8;
        options.seed = 3;
        let straight = synthetic();
        let want = run(&straight, &options, None).unwrap();
        let stopped = synthetic();
        let err = run(&stopped, &options, Some(2)).unwrap_err();
        assert!(
            format!("{err}").contains("run it again to continue"),
            "{err}"
        );
        let again = run(&stopped, &options, None).unwrap();
        let read = |s: &Synthetic| -> Vec<Candidate> {
            crate::eval::csv_table::read_rows(&s.dir.path().join(CANDIDATES_FILE)).unwrap()
        };
        assert_eq!(read(&stopped), read(&straight));
        assert_eq!(again.best_searched, want.best_searched);
        assert_eq!(again.evaluations, 40);
    }

    #[test]
    fn refuses_an_unreachable_budget_and_a_table_of_another_teacher() {
        let s = synthetic();
        let options = SearchOptions::new(Budget::LatencyMs(0.5));
        let err = format!("{:#}", run(&s, &options, None).unwrap_err());
        assert!(
            err.contains("below the smallest subnet") && err.contains("1.684 ms"),
            "{err}"
        );
        // A table timed for another teacher shape is refused, naming both shapes.
        let mut table = LatencyTable::read(&s.dir.path().join(latency_table::FILE)).unwrap();
        for row in &mut table.rows {
            row.teacher = row.teacher.replace("layers=3", "layers=6");
        }
        let other = s.dir.path().join("other-table.csv");
        table.write(&other).unwrap();
        let mut options = SearchOptions::new(Budget::LatencyMs(4.0));
        options.latency_table = Some(other);
        let err = format!("{:#}", run(&s, &options, None).unwrap_err());
        assert!(err.contains("timed for teacher layers=6"), "{err}");
        assert!(err.contains("this run's teacher is layers=3"), "{err}");
    }
}
