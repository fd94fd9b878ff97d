//! Imports run one way: every `crate::` (or, in the binary, `hoard::`) path in
//! `src/` names a module of a lower layer than the file's own, by the layer table
//! in docs/ARCHITECTURE.md. Every module is in the table, and every module the
//! table names exists, so the table stays true to the code.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Module name -> layer number (1 is the top), from the "## Layers" table.
fn layer_table(architecture: &str) -> BTreeMap<String, u32> {
    let section = architecture
        .split("\n## Layers")
        .nth(1)
        .expect("docs/ARCHITECTURE.md has a \"## Layers\" section");
    let section = section.split("\n## ").next().unwrap_or(section);
    let mut layers = BTreeMap::new();
    for row in section.lines().filter(|l| l.starts_with('|')) {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let Some(layer) = cells.get(1).and_then(|c| c.parse::<u32>().ok()) else {
            continue; // the header and the rule under it
        };
        for module in cells[2].split('`').skip(1).step_by(2) {
            let previous = layers.insert(module.to_owned(), layer);
            assert!(previous.is_none(), "{module} is in the layer table twice");
        }
    }
    layers
}

/// The top module a source file belongs to (`src/meta/gc.rs` -> `meta`); the
/// binary's files are `cli`. `None` for the library root.
fn module_of(relative: &Path) -> Option<String> {
    let first = relative.components().next()?.as_os_str().to_str()?;
    match first {
        "lib.rs" => None,
        "main.rs" | "cli" => Some("cli".to_owned()),
        f => Some(f.trim_end_matches(".rs").to_owned()),
    }
}

/// The crate modules one line of code names: `crate::x::...`, `hoard::x::...`,
/// and each name of `crate::{x, y::z}`.
fn modules_named(line: &str) -> Vec<String> {
    let code = line.split("//").next().unwrap_or("");
    let mut out = Vec::new();
    for root in ["crate::", "hoard::"] {
        for (at, _) in code.match_indices(root) {
            let before = code[..at].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue; // part of a longer name
            }
            let rest = &code[at + root.len()..];
            if let Some(group) = rest.strip_prefix('{') {
                let group = group.split('}').next().unwrap_or("");
                for item in group.split(',') {
                    let name: String = item
                        .trim()
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    if !name.is_empty() {
                        out.push(name);
                    }
                }
            } else {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    out.push(name);
                }
            }
        }
    }
    out
}

/// Every import that does not run down: "file:line: a (layer N) -> b (layer M)",
/// and every module missing from the table.
fn violations(files: &[(PathBuf, String)], layers: &BTreeMap<String, u32>) -> Vec<String> {
    let mut out = Vec::new();
    for (path, text) in files {
        let Some(module) = module_of(path) else {
            continue;
        };
        let Some(&own) = layers.get(&module) else {
            out.push(format!(
                "{}: module {module} is not in the layer table",
                path.display()
            ));
            continue;
        };
        for (n, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("//") {
                continue;
            }
            for target in modules_named(line) {
                if target == module {
                    continue;
                }
                match layers.get(&target) {
                    Some(&theirs) if theirs > own => {}
                    Some(&theirs) => out.push(format!(
                        "{}:{}: {module} (layer {own}) imports {target} (layer {theirs})",
                        path.display(),
                        n + 1
                    )),
                    None => out.push(format!(
                        "{}:{}: {target} is not in the layer table",
                        path.display(),
                        n + 1
                    )),
                }
            }
        }
    }
    out
}

fn rust_files(dir: &Path, root: &Path, out: &mut Vec<(PathBuf, String)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, root, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            out.push((path.strip_prefix(root).unwrap().to_path_buf(), text));
        }
    }
}

fn the_tree() -> (Vec<(PathBuf, String)>, BTreeMap<String, u32>) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let architecture = std::fs::read_to_string(root.join("docs/ARCHITECTURE.md")).unwrap();
    let src = root.join("src");
    let mut files = Vec::new();
    rust_files(&src, &src, &mut files);
    files.sort();
    (files, layer_table(&architecture))
}

#[test]
fn every_import_runs_down_the_layer_table() {
    let (files, layers) = the_tree();
    assert!(files.len() > 50, "read {} source files", files.len());
    let bad = violations(&files, &layers);
    assert!(
        bad.is_empty(),
        "imports against the layers:\n{}",
        bad.join("\n")
    );
}

#[test]
fn the_layer_table_names_only_modules_that_exist() {
    let (files, layers) = the_tree();
    let modules: std::collections::BTreeSet<String> =
        files.iter().filter_map(|(p, _)| module_of(p)).collect();
    let stale: Vec<&String> = layers.keys().filter(|m| !modules.contains(*m)).collect();
    assert!(
        stale.is_empty(),
        "the layer table names missing modules: {stale:?}"
    );
}

#[test]
fn an_upward_or_sideways_import_is_caught() {
    let layers: BTreeMap<String, u32> = [("server", 1), ("s3", 2), ("admin", 2), ("meta", 3)]
        .into_iter()
        .map(|(m, l)| (m.to_owned(), l))
        .collect();
    let file = |path: &str, text: &str| (PathBuf::from(path), text.to_owned());
    let files = [
        file("meta/gc.rs", "use crate::server::Node;\n"),
        file("s3/mod.rs", "fn f() { crate::admin::json(); }\n"),
        file("admin.rs", "use crate::{meta::MetaStore, s3::x};\n"),
        file(
            "server.rs",
            "use crate::{meta, s3};\n// crate::server::itself\n",
        ),
        file("main.rs", "use hoard::meta;\n"),
    ];
    let bad = violations(&files, &layers);
    assert_eq!(bad.len(), 4, "{bad:#?}");
    assert!(bad[0].contains("meta (layer 3) imports server (layer 1)"));
    assert!(bad[1].contains("s3 (layer 2) imports admin (layer 2)"));
    assert!(bad[2].contains("admin (layer 2) imports s3 (layer 2)"));
    assert!(bad[3].contains("module cli is not in the layer table"));
}
