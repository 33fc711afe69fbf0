//! The shape of the code base, as `docs/architecture.md` describes it: the
//! domain does not depend on the HTTP layer, and no source file grows past
//! what a reader takes in at once.

use std::path::{Path, PathBuf};

/// Longest source file, in lines.
const MAX_LINES: usize = 400;

/// The modules that may name `crate::http`: the layer itself and the wiring.
const MAY_USE_HTTP: &[&str] = &[
    "src/http/",
    "src/server/",
    "src/cli.rs",
    "src/main.rs",
    "src/lib.rs",
];

fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("a source directory") {
        let path = entry.expect("an entry").path();
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

fn files_under(dir: &str) -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut found = Vec::new();
    rust_files(&root.join(dir), &mut found);
    found
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).expect("a readable source file");
            let name = path
                .strip_prefix(root)
                .expect("under the crate")
                .to_string_lossy()
                .into_owned();
            (name, text)
        })
        .collect()
}

#[test]
fn no_domain_module_depends_on_the_http_layer() {
    let offenders: Vec<String> = files_under("src")
        .into_iter()
        .filter(|(name, _)| !MAY_USE_HTTP.iter().any(|allowed| name.starts_with(allowed)))
        .filter(|(_, text)| text.contains("crate::http"))
        .map(|(name, _)| name)
        .collect();
    assert!(offenders.is_empty(), "import crate::http: {offenders:?}");
}

#[test]
fn no_source_file_is_over_400_lines() {
    let mut long: Vec<String> = ["src", "tests", "benches", "loadgen/src", "loadgen/tests"]
        .into_iter()
        .flat_map(files_under)
        .filter(|(_, text)| text.lines().count() > MAX_LINES)
        .map(|(name, text)| format!("{name}: {}", text.lines().count()))
        .collect();
    long.sort();
    assert!(long.is_empty(), "over {MAX_LINES} lines: {long:?}");
}
