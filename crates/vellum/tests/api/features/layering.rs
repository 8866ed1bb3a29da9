//! The layering rule of docs/ARCHITECTURE.md, enforced: the layers are read from that page, the
//! imports from the source (every `crate::` path, in `use` lines and inline), and a module may
//! use only modules of its own layer or below, with no circle between modules. A module the
//! page does not place fails the test, so the page stays a true map.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `layer N  a, b, c` lines of the architecture page's layering block: module -> layer.
fn layers() -> BTreeMap<String, u32> {
    let page = std::fs::read_to_string(crate_dir().join("../../docs/ARCHITECTURE.md"))
        .expect("docs/ARCHITECTURE.md");
    let mut layers = BTreeMap::new();
    for line in page.lines() {
        let Some(rest) = line.trim().strip_prefix("layer ") else {
            continue;
        };
        let (number, modules) = rest
            .split_once(char::is_whitespace)
            .expect("layer N modules");
        let number: u32 = number.parse().expect("a layer number");
        for module in modules.split(',').map(str::trim).filter(|m| !m.is_empty()) {
            assert!(
                layers.insert(module.to_owned(), number).is_none(),
                "{module} is placed twice"
            );
        }
    }
    assert!(layers.len() > 10, "the layering block was not found");
    layers
}

fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            found.push(path);
        }
    }
}

/// The top-level module a source file belongs to (`store/sqlite.rs` -> `store`).
fn module_of(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).expect("under src");
    let first = relative.components().next().expect("a component");
    first
        .as_os_str()
        .to_string_lossy()
        .trim_end_matches(".rs")
        .to_owned()
}

/// Every top-level module a file names through `crate::`, comments aside.
fn imports(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or_default();
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                // `use crate::{a, b::c}`: the group may span lines; its first names are enough
                // on this line, the others are caught below.
                for name in group.split([',', '}']) {
                    let name = name.trim().split("::").next().unwrap_or_default();
                    if !name.is_empty() && name.chars().all(|c| c.is_alphanumeric() || c == '_') {
                        found.insert(name.to_owned());
                    }
                }
            } else {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    found.insert(name);
                }
            }
        }
    }
    // The inner lines of a multi-line `use crate::{` group.
    for group in text.split("use crate::{").skip(1) {
        let body = group.split('}').next().unwrap_or_default();
        for name in body.split(',') {
            let name = name.trim().split("::").next().unwrap_or_default();
            if !name.is_empty() && name.chars().all(|c| c.is_alphanumeric() || c == '_') {
                found.insert(name.to_owned());
            }
        }
    }
    found
}

#[test]
fn every_module_uses_only_its_own_layer_or_lower_ones_and_no_module_circles_back() {
    let layers = layers();
    let src = crate_dir().join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut broken = Vec::new();
    for file in &files {
        let module = module_of(&src, file);
        if module == "main" || module == "lib" {
            continue;
        }
        let Some(&layer) = layers.get(&module) else {
            broken.push(format!(
                "{module} ({}) has no layer in docs/ARCHITECTURE.md",
                file.display()
            ));
            continue;
        };
        let text = std::fs::read_to_string(file).expect("source");
        for target in imports(&text) {
            if target == module {
                continue;
            }
            match layers.get(&target) {
                None => broken.push(format!("{module} uses {target}, which has no layer")),
                Some(&above) if above > layer => broken.push(format!(
                    "{} (layer {layer}) uses {target} (layer {above})",
                    file.strip_prefix(&src).unwrap_or(file).display()
                )),
                Some(_) => {}
            }
            graph.entry(module.clone()).or_default().insert(target);
        }
    }
    assert!(broken.is_empty(), "layering broken:\n{}", broken.join("\n"));

    // No circle: a depth-first walk never meets a module still on its path.
    fn walk(
        module: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|m| m == module) {
            let mut circle = path[start..].to_vec();
            circle.push(module.to_owned());
            return Some(circle);
        }
        if !done.insert(module.to_owned()) {
            return None;
        }
        path.push(module.to_owned());
        for next in graph.get(module).into_iter().flatten() {
            if let Some(circle) = walk(next, graph, path, done) {
                return Some(circle);
            }
        }
        path.pop();
        None
    }
    let mut done = BTreeSet::new();
    for module in graph.keys() {
        if let Some(circle) = walk(module, &graph, &mut Vec::new(), &mut done) {
            panic!(
                "modules use each other in a circle: {}",
                circle.join(" -> ")
            );
        }
    }
}

#[test]
fn the_import_reader_finds_use_lines_groups_and_inline_paths() {
    let text = "use crate::store::{A, B};\nuse crate::{events, ids::SessionId,\n    secrets::hash_secret};\n\
                fn f() { crate::notifications::check(); } // crate::ignored\n";
    let found: Vec<String> = imports(text).into_iter().collect();
    assert_eq!(
        found,
        ["events", "ids", "notifications", "secrets", "store"]
    );
}
