//! The module layering, enforced.
//!
//! README.md holds the layer table between `<!-- layers:start -->` and
//! `<!-- layers:end -->`: every top-level module of `src/` sits on one numbered layer
//! (0 lowest). This test reads every file under `src/` (except `lib.rs`, the map and
//! re-exports, and `main.rs` and `src/bin/`, which are separate crates) and checks:
//!
//! 1. every top-level module is in the table;
//! 2. a module uses another module only if that one sits on a lower layer, whether
//!    through `use crate::…` (brace groups included), an inline `crate::x::f()` or a
//!    `super::` path that leaves the module; test code is checked too;
//! 3. `model` uses no other module at all;
//! 4. no two files use each other, except a module file and its own child submodules;
//! 5. nothing is reached through the crate root (`crate::Item` defined in `lib.rs`),
//!    which would slip past the table.
//!
//! Comments and string literals are skipped. Std only, so it runs as a plain source check.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Module name -> layer, from the README table.
fn layers(readme: &str) -> BTreeMap<String, u32> {
    let start = readme
        .find("<!-- layers:start -->")
        .expect("README.md has no layers:start marker");
    let end = readme
        .find("<!-- layers:end -->")
        .expect("README.md has no layers:end marker");
    let mut table = BTreeMap::new();
    for line in readme[start..end].lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let (Some(layer), Some(modules)) = (cells.get(1), cells.get(2)) else {
            continue;
        };
        // The header and separator rows have no number.
        let Ok(layer) = layer.parse::<u32>() else {
            continue;
        };
        for name in modules.split('`').skip(1).step_by(2) {
            let before = table.insert(name.to_string(), layer);
            assert!(
                before.is_none(),
                "`{name}` is listed twice in the README layer table"
            );
        }
    }
    assert!(!table.is_empty(), "the README layer table is empty");
    table
}

/// The source with comments blanked and string and char literals emptied; newlines kept.
fn code_only(src: &str) -> String {
    let s: Vec<char> = src.chars().collect();
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < s.len() {
        let at = |j: usize| s.get(j).copied().unwrap_or('\0');
        let c = s[i];
        if c == '/' && at(i + 1) == '/' {
            while i < s.len() && s[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && at(i + 1) == '*' {
            let mut depth = 0;
            while i < s.len() {
                if s[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if s[i] == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if c == 'r' && (i == 0 || !ident(s[i - 1])) && matches!(at(i + 1), '"' | '#') {
            // A raw string r"…" or r#"…"#, else an identifier starting with r.
            let hashes = (i + 1..).take_while(|&j| at(j) == '#').count();
            if at(i + 1 + hashes) != '"' {
                out.push(c);
                i += 1;
                continue;
            }
            i += hashes + 2;
            while i < s.len() && !(s[i] == '"' && (1..=hashes).all(|k| at(i + k) == '#')) {
                i += 1;
            }
            i += hashes + 1;
            out.push_str("\"\"");
        } else if c == '"' {
            i += 1;
            while i < s.len() && s[i] != '"' {
                if s[i] == '\n' {
                    out.push('\n');
                }
                i += if s[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == '\'' && at(i + 1) == '\\' {
            i += 3; // '\n', '\'', '\u{…}': past the escaped char, then to the closing quote
            while i < s.len() && s[i] != '\'' {
                i += 1;
            }
            i += 1;
        } else if c == '\'' && at(i + 2) == '\'' {
            i += 3; // 'x'; a lifetime has no closing quote
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// Expands the use tree at `s[*i..]` (after `prefix::`) into full paths.
fn use_tree(s: &[char], i: &mut usize, prefix: &[String], out: &mut Vec<Vec<String>>) {
    let skip_ws = |i: &mut usize| {
        while *i < s.len() && s[*i].is_whitespace() {
            *i += 1;
        }
    };
    skip_ws(i);
    if s.get(*i) == Some(&'{') {
        *i += 1;
        loop {
            skip_ws(i);
            match s.get(*i) {
                Some('}') => {
                    *i += 1;
                    return;
                }
                None => return,
                _ => {}
            }
            use_tree(s, i, prefix, out);
            skip_ws(i);
            match s.get(*i) {
                Some(',') => *i += 1,
                Some('}') => {}
                _ => return, // malformed; take what was read
            }
        }
    }
    let start = *i;
    while *i < s.len() && (s[*i].is_alphanumeric() || s[*i] == '_') {
        *i += 1;
    }
    let name: String = s[start..*i].iter().collect();
    let mut path = prefix.to_vec();
    if !name.is_empty() && name != "self" {
        path.push(name);
    }
    skip_ws(i);
    if !path.is_empty() && s.get(*i) == Some(&':') && s.get(*i + 1) == Some(&':') {
        *i += 2;
        use_tree(s, i, &path, out);
    } else {
        out.push(path);
    }
}

/// The module path of a file: `src/store/ring.rs` -> `store::ring`, `src/notify/mod.rs` -> `notify`.
fn module_of(file: &str) -> Vec<String> {
    let rel = file.trim_start_matches("src/").trim_end_matches(".rs");
    let mut path: Vec<String> = rel.split('/').map(String::from).collect();
    if path.last().is_some_and(|last| last == "mod") {
        path.pop();
    }
    path
}

/// Every crate path a file names, resolved from the crate root.
fn references(file: &str, src: &str) -> BTreeSet<Vec<String>> {
    let code = code_only(src);
    // `super` inside `mod tests { use super::*; }` means this file; skip from there on.
    let tests_at = code.find("mod tests").unwrap_or(code.len());
    let s: Vec<char> = code.chars().collect();
    let tests_at = code[..tests_at].chars().count();
    let here = module_of(file);
    let mut paths = Vec::new();
    let mut i = 0;
    while i < s.len() {
        let word_start =
            i == 0 || !(s[i - 1].is_alphanumeric() || s[i - 1] == '_' || s[i - 1] == '$');
        let rest = |j: usize, w: &str| {
            s.len() >= j + w.len() && s[j..j + w.len()].iter().copied().eq(w.chars())
        };
        if word_start && rest(i, "crate::") {
            i += "crate::".len();
            use_tree(&s, &mut i, &[], &mut paths);
        } else if word_start && rest(i, "super::") && i < tests_at {
            let mut base = here.clone();
            while rest(i, "super::") {
                base.pop();
                i += "super::".len();
            }
            use_tree(&s, &mut i, &base, &mut paths);
        } else {
            i += 1;
        }
    }
    paths.into_iter().filter(|p| !p.is_empty()).collect()
}

/// The file a path lands in: the longest prefix with a `.rs` or `mod.rs` among `files`.
fn file_of(path: &[String], files: &BTreeSet<&str>) -> Option<String> {
    (1..=path.len()).rev().find_map(|k| {
        let stem = format!("src/{}", path[..k].join("/"));
        [format!("{stem}.rs"), format!("{stem}/mod.rs")]
            .into_iter()
            .find(|f| files.contains(f.as_str()))
    })
}

/// Every breach of the layering in `files` (path from the crate root, contents).
fn violations(files: &[(String, String)], layers: &BTreeMap<String, u32>) -> Vec<String> {
    let names: BTreeSet<&str> = files.iter().map(|(f, _)| f.as_str()).collect();
    let known: BTreeSet<String> = layers
        .keys()
        .cloned()
        .chain(files.iter().map(|(f, _)| module_of(f)[0].clone()))
        .collect();
    let mut found = BTreeSet::new();
    let mut edges = BTreeSet::new();
    for (file, src) in files {
        let from = module_of(file)[0].clone();
        if !layers.contains_key(&from) {
            found.insert(format!(
                "module {from} ({file}) is not in the README layer table; add it to the layer table"
            ));
        }
        for path in references(file, src) {
            let to = &path[0];
            if !known.contains(to) {
                found.insert(format!(
                    "{file} uses crate::{to} from the crate root (src/lib.rs); use it from the module that defines it"
                ));
            } else if *to == from {
                // Inside the module; only the file cycles below matter.
            } else if from == "model" {
                found.insert(format!("{file} imports crate::{to}: model (layer 0) must not depend on any other module"));
            } else {
                match (layers.get(&from), layers.get(to)) {
                    (Some(la), Some(lb)) if lb >= la => {
                        found.insert(format!(
                            "{file} imports crate::{to} (layer {lb}) from {from} (layer {la})"
                        ));
                    }
                    _ => {} // lower layer, or a module missing from the table (reported above)
                }
            }
            if let Some(target) = file_of(&path, &names).filter(|t| t != file) {
                edges.insert((file.clone(), target));
            }
        }
    }
    let is_parent = |parent: &str, child: &str| {
        let (p, c) = (module_of(parent), module_of(child));
        c.len() == p.len() + 1 && c.starts_with(&p)
    };
    for (a, b) in &edges {
        if a < b && edges.contains(&(b.clone(), a.clone())) && !is_parent(a, b) && !is_parent(b, a)
        {
            found.insert(format!("{a} and {b} import each other"));
        }
    }
    found.into_iter().collect()
}

/// Every `.rs` file under `src/` that belongs to a module: not lib.rs, main.rs or src/bin/.
fn source_files() -> Vec<(String, String)> {
    fn walk(dir: &Path, rel: &str, out: &mut Vec<(String, String)>) {
        for entry in std::fs::read_dir(dir).expect("read src/") {
            let entry = entry.expect("read src/ entry");
            let name = entry.file_name().to_string_lossy().into_owned();
            let rel = format!("{rel}/{name}");
            if entry.path().is_dir() {
                walk(&entry.path(), &rel, out);
            } else if name.ends_with(".rs") {
                out.push((
                    rel,
                    std::fs::read_to_string(entry.path()).expect("read source file"),
                ));
            }
        }
    }
    let mut files = Vec::new();
    walk(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        "src",
        &mut files,
    );
    files.retain(|(f, _)| f != "src/lib.rs" && f != "src/main.rs" && !f.starts_with("src/bin/"));
    files.sort();
    files
}

fn readme_layers() -> BTreeMap<String, u32> {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("read README.md");
    layers(&readme)
}

fn check(files: &[(&str, &str)]) -> Vec<String> {
    let files: Vec<(String, String)> = files
        .iter()
        .map(|(f, s)| (f.to_string(), s.to_string()))
        .collect();
    violations(&files, &readme_layers())
}

#[test]
fn the_source_tree_keeps_the_documented_layers() {
    let found = violations(&source_files(), &readme_layers());
    assert!(
        found.is_empty(),
        "the module layering in README.md (layers:start) is broken; a module may use only lower layers:\n{}",
        found.join("\n")
    );
}

#[test]
fn a_collector_importing_the_api_is_caught() {
    let found = check(&[("src/collect/probes.rs", "use crate::api::AppState;\n")]);
    assert_eq!(
        found,
        ["src/collect/probes.rs imports crate::api (layer 8) from collect (layer 3)"]
    );

    let group = "use crate::{\n    store::Store, // fine\n    notify::Notifier,\n};\n";
    let found = check(&[("src/collect/process.rs", group)]);
    assert_eq!(
        found,
        ["src/collect/process.rs imports crate::notify (layer 6) from collect (layer 3)"]
    );

    let inline = "fn f() {\n    let x = crate::app::thing();\n}\n";
    let found = check(&[("src/store/ring.rs", inline)]);
    assert_eq!(
        found,
        ["src/store/ring.rs imports crate::app (layer 10) from store (layer 2)"]
    );

    let model = "use crate::config::Config;\n";
    let found = check(&[("src/model/metric.rs", model)]);
    assert_eq!(
        found,
        [
            "src/model/metric.rs imports crate::config: model (layer 0) must not depend on any other module"
        ]
    );

    let cycle = check(&[
        (
            "src/notify/mod.rs",
            "mod dispatch;\nmod worker;\npub struct Notification;\n",
        ),
        (
            "src/notify/dispatch.rs",
            "use super::{Notification, worker};\n",
        ),
        (
            "src/notify/worker.rs",
            "use super::dispatch::Receivers;\nuse crate::notify::Notification;\n",
        ),
    ]);
    assert_eq!(
        cycle,
        ["src/notify/dispatch.rs and src/notify/worker.rs import each other"]
    );
}

#[test]
fn comments_strings_and_test_modules_are_not_references() {
    let src = "//! uses [`crate::api`]\n\
               use crate::store::Store; // not crate::api\n\
               const S: &str = \"crate::api::x\";\n\
               const R: &str = r#\"crate::app\"#;\n\
               const C: char = '\"';\n\
               fn f<'a>(s: &'a str) -> &'a str { s }\n\
               #[cfg(test)]\nmod tests {\n    use super::*;\n    use super::super::x;\n}\n";
    assert_eq!(
        check(&[("src/collect/probes.rs", src)]),
        Vec::<String>::new()
    );
    let found = check(&[(
        "src/collect/probes.rs",
        "#[cfg(test)]\nmod tests {\n    use crate::api::AppState;\n}\n",
    )]);
    assert_eq!(
        found,
        ["src/collect/probes.rs imports crate::api (layer 8) from collect (layer 3)"]
    );
    let nested = "use crate::{model::{self, Kind}, store::*};\nuse crate::Error;\n";
    let found = check(&[("src/collect/probes.rs", nested)]);
    assert_eq!(
        found,
        [
            "src/collect/probes.rs uses crate::Error from the crate root (src/lib.rs); use it from the module that defines it"
        ]
    );
    let found = check(&[("src/collect/mod.rs", "use super::api::AppState;\n")]);
    assert_eq!(
        found,
        ["src/collect/mod.rs imports crate::api (layer 8) from collect (layer 3)"]
    );
    let found = check(&[("src/store.rs", "use super::rules::Rule;\n")]);
    assert_eq!(
        found,
        ["src/store.rs imports crate::rules (layer 4) from store (layer 2)"]
    );
}

#[test]
fn the_layer_table_names_every_module() {
    let layers = readme_layers();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut modules = BTreeSet::new();
    for entry in std::fs::read_dir(&src).expect("read src/") {
        let name = entry
            .expect("read src/ entry")
            .file_name()
            .to_string_lossy()
            .into_owned();
        if let Some(stem) = name.strip_suffix(".rs") {
            modules.insert(stem.to_string());
        } else if src.join(&name).is_dir() {
            modules.insert(name);
        }
    }
    for skip in ["lib", "main", "bin"] {
        modules.remove(skip);
    }
    let mut problems = Vec::new();
    for module in &modules {
        if !layers.contains_key(module) {
            problems.push(format!(
                "src/{module} is not in the README layer table; add it to the layer table"
            ));
        }
    }
    for module in layers.keys() {
        if !modules.contains(module) {
            problems.push(format!("the README layer table lists {module}, but there is no src/{module}.rs or src/{module}/"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
