//! The crate's layering, read from its `use` lines and inline paths: an import only points down
//! `util`/`files` → `model` → `mlfs` → `train` → `eval`/`export` → `worker`/`runs`/`search` → `cli`/`ui`,
//! `cli` and `ui` never import each other, and no two files import each other (directly or
//! round a loop). A regression here means a helper or type sits on the wrong floor.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The floor of a top-level module (files of one floor may import each other).
fn floor(module: &str) -> usize {
    match module {
        "util" | "files" => 0,
        "model" => 1,
        "mlfs" => 2,
        "train" => 3,
        "eval" | "export" => 4,
        "worker" | "runs" | "search" => 5,
        "cli" | "ui" => 6,
        _ => 7,
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let p = entry.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// Module path of a file: `src/train/run.rs` → [train, run]; `mod.rs` names its folder.
fn module_of(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .with_extension("")
        .iter()
        .map(|s| s.to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// Paths written out in code (`crate::a::b(…)`, `super::c::D`), comments left out: a file
/// depends on what it names this way as much as on what it imports.
fn inline_paths(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in code.lines() {
        let line = line.split("//").next().unwrap_or("");
        for root in ["crate::", "super::"] {
            let mut rest = line;
            while let Some(at) = rest.find(root) {
                let before = rest[..at].chars().last();
                let path: String = rest[at..]
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                    .collect();
                if !before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                    out.push(path.trim_end_matches(':').to_string());
                }
                rest = &rest[at + root.len()..];
            }
        }
    }
    out
}

/// The module paths a file's `use` declarations and inline paths name (test modules left out),
/// braced items expanded one level.
fn imported_paths(text: &str, here: &[String], is_mod_file: bool) -> Vec<Vec<String>> {
    let code = text.split("#[cfg(test)]").next().unwrap_or(text);
    let mut statements: Vec<String> = code.split(';').map(str::to_string).collect();
    statements.extend(inline_paths(code).into_iter().map(|p| format!("use {p}")));
    let mut out = Vec::new();
    for stmt in &statements {
        let Some(start) = stmt.find("use ") else {
            continue;
        };
        let path = stmt[start + 4..].trim();
        let (prefix, items) = match path.split_once("::{") {
            Some((p, rest)) => (p, rest.trim_end_matches('}').to_string()),
            None => (path, String::new()),
        };
        let mut segs: Vec<&str> = prefix.split("::").map(str::trim).collect();
        let mut base: Vec<String> = match segs.first().copied() {
            Some("crate") => Vec::new(),
            Some("super") | Some("self") => {
                let mut b = here.to_vec();
                if !is_mod_file || segs[0] == "super" {
                    b.pop();
                }
                if is_mod_file && segs[0] == "super" {
                    // `super` of a mod.rs is its parent folder's module.
                }
                b
            }
            _ => continue,
        };
        segs.remove(0);
        while segs.first() == Some(&"super") {
            base.pop();
            segs.remove(0);
        }
        base.extend(segs.iter().map(|s| s.to_string()));
        out.push(base.clone());
        for item in items.split(',') {
            let item = item.split(" as ").next().unwrap_or("").trim();
            let first = item.split("::").next().unwrap_or("").trim();
            if !first.is_empty() && first != "self" && !first.starts_with('{') {
                let mut p = base.clone();
                p.push(first.to_string());
                out.push(p);
            }
        }
    }
    out
}

/// The crate's import graph between files. Imports of a folder's `mod.rs` count for the floors
/// (`with_mod_files`) but not for loops: a `mod.rs` re-exports its files, which name it back.
fn import_graph_of(with_mod_files: bool) -> BTreeMap<String, BTreeSet<String>> {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut by_module: BTreeMap<Vec<String>, String> = BTreeMap::new();
    let mut rels = Vec::new();
    for f in &files {
        let rel = f.strip_prefix(&src).unwrap().to_path_buf();
        by_module.insert(module_of(&rel), rel.display().to_string());
        rels.push(rel);
    }
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (f, rel) in files.iter().zip(&rels) {
        let name = rel.display().to_string();
        let text = std::fs::read_to_string(f).unwrap();
        let here = module_of(rel);
        let is_mod = rel.file_name().is_some_and(|n| n == "mod.rs");
        let mut here_for_super = here.clone();
        if is_mod {
            // In `a/mod.rs`, `super` is `a`'s parent: treat the file as `a/mod`.
            here_for_super.push("mod".into());
        }
        for path in imported_paths(&text, &here_for_super, false) {
            // The longest prefix that names a file.
            let target = (1..=path.len())
                .rev()
                .find_map(|n| by_module.get(&path[..n]));
            if let Some(t) = target {
                let mod_file = t.ends_with("mod.rs") && !with_mod_files;
                if *t != name && !mod_file && t != "lib.rs" {
                    graph.entry(name.clone()).or_default().insert(t.clone());
                }
            }
        }
    }
    graph
}

fn import_graph() -> BTreeMap<String, BTreeSet<String>> {
    import_graph_of(false)
}

fn top(file: &str) -> &str {
    file.split('/')
        .next()
        .unwrap_or(file)
        .trim_end_matches(".rs")
}

#[test]
fn imports_only_point_down_the_layers() {
    let graph = import_graph_of(true);
    assert!(graph.values().map(BTreeSet::len).sum::<usize>() > 100);
    let mut upward = Vec::new();
    for (from, tos) in &graph {
        for to in tos {
            if floor(top(to)) > floor(top(from)) {
                upward.push(format!("{from} -> {to}"));
            }
        }
    }
    assert!(upward.is_empty(), "imports pointing up: {upward:#?}");
}

#[test]
fn the_studio_and_the_command_line_never_import_each_other() {
    let graph = import_graph_of(true);
    let mut across = Vec::new();
    for (from, tos) in &graph {
        for to in tos {
            let pair = (top(from), top(to));
            if pair == ("cli", "ui") || pair == ("ui", "cli") {
                across.push(format!("{from} -> {to}"));
            }
        }
    }
    assert!(
        across.is_empty(),
        "cli and ui import each other: {across:#?}"
    );
}

#[test]
fn no_two_files_import_each_other() {
    let graph = import_graph();
    // Depth-first search for a back edge; report the loop found.
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(node.to_string(), 1);
        stack.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            match state.get(next.as_str()).copied().unwrap_or(0) {
                1 => {
                    let at = stack.iter().position(|s| s == next).unwrap_or(0);
                    let mut cycle = stack[at..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                0 => {
                    if let Some(c) = visit(next, graph, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(node.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for node in graph.keys() {
        if state.get(node.as_str()).copied().unwrap_or(0) == 0 {
            let cycle = visit(node, &graph, &mut state, &mut Vec::new());
            assert!(
                cycle.is_none(),
                "import loop: {}",
                cycle.unwrap_or_default().join(" -> ")
            );
        }
    }
}
