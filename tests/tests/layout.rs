//! The workspace's shape, checked: no cycle between the top-level modules of any crate, and
//! no source file over 800 lines outside its tests (issue 8). Reads the sources as text;
//! runs with `cargo test -p e2e --test layout`, and prints the module graph with
//! `-- --nocapture`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Source roots of the workspace crates, relative to the workspace root.
const CRATES: &[&str] = &[
    "shared/src",
    "proto/src",
    "minerd/src",
    "minerd/io/src",
    "minerd/devnet/src",
    "minerctl/src",
    "tests/src",
];

/// Cycles that exist and are still to be broken, so that the test fails on any new one
/// and on one of these disappearing (then remove it here). None are left: keep it empty.
const KNOWN_CYCLES: &[&str] = &[];

/// Most lines a source file may have outside its tests.
const MAX_CODE_LINES: usize = 800;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the workspace")
        .to_owned()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// A file's lines before its `#[cfg(test)] mod tests` block; nothing for a test file.
fn code_lines(path: &Path, text: &str) -> Vec<String> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if name == "tests.rs" || name == "test_support.rs" || name == "testkit.rs" {
        return Vec::new();
    }
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if line.starts_with("#[cfg(test)]")
            && lines
                .get(i + 1)
                .is_some_and(|next| next.starts_with("mod tests"))
        {
            break;
        }
        out.push((*line).to_owned());
    }
    out
}

/// The top-level module a file of `src` belongs to (`None` for lib.rs/main.rs).
fn top_module(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?.to_owned();
    match first.as_str() {
        "lib.rs" | "main.rs" => None,
        f => Some(f.trim_end_matches(".rs").to_owned()),
    }
}

/// The top-level modules a line names through `crate::` (also `crate::{a, b::c}`).
fn crate_refs(line: &str) -> Vec<String> {
    let code = line.split("//").next().unwrap_or("");
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().last();
        rest = &rest[at + "crate::".len()..];
        // `$crate::`, or part of a longer name such as `spacetime_crate::`.
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0usize;
            let mut segment = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        out.push(segment.trim().to_owned());
                        segment.clear();
                        continue;
                    }
                    _ => {}
                }
                segment.push(c);
            }
            out.push(segment.trim().to_owned());
        } else {
            out.push(rest.to_owned());
        }
    }
    out.into_iter()
        .map(|s| {
            s.chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect::<String>()
        })
        .filter(|s| !s.is_empty() && s != "self")
        .collect()
}

/// Edges `from -> to` between the top-level modules of the crate at `src` (code only).
fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let modules: BTreeSet<String> = files.iter().filter_map(|f| top_module(src, f)).collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let Some(from) = top_module(src, file) else {
            continue;
        };
        let text = fs::read_to_string(file).expect("readable source");
        // A top-level file `x.rs` (not `x/mod.rs`) reaches siblings through `super::`.
        let top_level_file = file.parent() == Some(src);
        for line in code_lines(file, &text) {
            let mut refs = crate_refs(&line);
            if top_level_file {
                let code = line.split("//").next().unwrap_or("");
                for (at, _) in code.match_indices("super::") {
                    let name: String = code[at + "super::".len()..]
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    refs.push(name);
                }
            }
            for to in refs {
                if to != from && modules.contains(&to) {
                    graph.entry(from.clone()).or_default().insert(to);
                }
            }
        }
    }
    graph
}

/// Every cycle's modules, as strongly connected components of more than one module.
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    let nodes: BTreeSet<&String> = graph
        .keys()
        .chain(graph.values().flat_map(|v| v.iter()))
        .collect();
    let reach = |start: &String| -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![start.clone()];
        while let Some(n) = stack.pop() {
            for m in graph.get(&n).into_iter().flatten() {
                if seen.insert(m.clone()) {
                    stack.push(m.clone());
                }
            }
        }
        seen
    };
    let reaches: BTreeMap<&String, BTreeSet<String>> =
        nodes.iter().map(|n| (*n, reach(n))).collect();
    let mut done = BTreeSet::new();
    let mut out = Vec::new();
    for n in &nodes {
        if done.contains(*n) {
            continue;
        }
        let component: Vec<String> = nodes
            .iter()
            .filter(|m| reaches[*n].contains(**m) && reaches[**m].contains(*n))
            .map(|m| (*m).clone())
            .collect();
        for m in &component {
            done.insert(m.clone());
        }
        if component.len() > 1 {
            out.push(component);
        }
    }
    out
}

#[test]
fn no_crate_has_a_cycle_between_its_top_level_modules() {
    let root = workspace();
    let mut found = Vec::new();
    let mut known: Vec<String> = Vec::new();
    for krate in CRATES {
        let graph = module_graph(&root.join(krate));
        println!("{krate}:");
        for (from, to) in &graph {
            println!(
                "  {from} -> {}",
                to.iter().cloned().collect::<Vec<_>>().join(", ")
            );
        }
        for c in cycles(&graph) {
            let edges: Vec<String> = c
                .iter()
                .flat_map(|from| {
                    graph[from]
                        .iter()
                        .filter(|to| c.contains(to))
                        .map(move |to| format!("{from} -> {to}"))
                })
                .collect();
            let name = format!("{krate}: {{{}}}", c.join(", "));
            if !KNOWN_CYCLES.contains(&name.as_str()) {
                found.push(format!("{name} via {}", edges.join("; ")));
            }
            known.push(name);
        }
    }
    assert!(found.is_empty(), "module cycles:\n{}", found.join("\n"));
    for k in KNOWN_CYCLES {
        assert!(
            known.iter().any(|n| n == k),
            "{k} is gone: remove it from KNOWN_CYCLES"
        );
    }
}

#[test]
fn no_source_file_is_over_800_lines_outside_its_tests() {
    let root = workspace();
    let mut too_long = Vec::new();
    for krate in CRATES {
        let mut files = Vec::new();
        rust_files(&root.join(krate), &mut files);
        for file in files {
            let text = fs::read_to_string(&file).expect("readable source");
            let n = code_lines(&file, &text).len();
            if n > MAX_CODE_LINES {
                too_long.push(format!("{} ({n} lines)", file.display()));
            }
        }
    }
    assert!(
        too_long.is_empty(),
        "over {MAX_CODE_LINES} lines of code: {too_long:?}"
    );
}

#[test]
fn the_checker_sees_grouped_and_nested_imports() {
    assert_eq!(crate_refs("use crate::a::B;"), ["a"]);
    assert_eq!(crate_refs("use crate::{a::{B, C}, d, self};"), ["a", "d"]);
    assert_eq!(crate_refs("$crate::x // crate::y"), Vec::<String>::new());
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("a", vec!["b"]),
        ("b", vec!["c"]),
        ("c", vec!["a"]),
        ("d", vec!["a"]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.into_iter().map(str::to_owned).collect()))
    .collect();
    assert_eq!(cycles(&graph), vec![vec!["a", "b", "c"]]);
}
