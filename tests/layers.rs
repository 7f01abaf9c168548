//! The crate's layering (issue 15), checked on the source. Every `src/**/*.rs` file belongs to a
//! top module (`src/query/x.rs` to `query`, `src/lint.rs` to `lint`; `src/lib.rs` and
//! `src/main.rs` are the top and may use anything). Each `crate::<name>` path in code (a `use`
//! line, a `crate::{...}` group, an inline path such as `crate::index::day_of(..)`, or `super::`
//! paths that climb to the crate root) is an edge to the module `<name>` is in; comments, doc
//! comments and string literals are not code. A module may use modules in layers below its own,
//! and modules of its own layer only where [`SAME_LAYER`] lists the pair. The test fails naming the
//! file, the line and the edge for every other use, and for every entry of [`ALLOWED_UPWARD`] that
//! no longer occurs, so that the allow-list shrinks as the edges go.
//!
//! ```text
//!   cli  shell  lint  output      interfaces (and main.rs)
//!            engine                statement dispatch, the library's Session (the facade)
//!           audience
//!            query
//!         ingest  gen
//!            index
//!            store
//!   tables  error  shell_words
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, top to bottom. A module may use the modules of the layers after its own.
const LAYERS: &[(&str, &[&str])] = &[
    ("interfaces", &["cli", "shell", "lint", "output"]),
    ("engine", &["engine"]),
    ("audience", &["audience"]),
    ("query", &["query"]),
    ("ingest and gen", &["ingest", "gen"]),
    ("index", &["index"]),
    ("store", &["store"]),
    ("bottom", &["tables", "error", "shell_words"]),
];

/// Uses between two modules of one layer that are allowed, as (user, used). `ingest` and `gen`
/// do not use each other.
const SAME_LAYER: &[(&str, &str)] = &[
    ("cli", "shell"),
    ("cli", "lint"),
    ("cli", "output"),
    ("shell", "lint"),
    ("shell", "output"),
    ("tables", "error"),
    ("error", "shell_words"),
];

/// Upward uses that exist today and are to go, as (file, module used). Each entry must still
/// occur: remove it when its edge is gone.
const ALLOWED_UPWARD: &[(&str, &str)] = &[
    // None since the engine facade took statement dispatch out of query (issue 15).
];

/// `source` with comments, string literals and character literals replaced by spaces (newlines
/// kept, so that line numbers stay right).
fn code_only(source: &str) -> String {
    let c: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let blank = |out: &mut String, ch: char| out.push(if ch == '\n' { '\n' } else { ' ' });
    let is_ident = |ch: char| ch.is_alphanumeric() || ch == '_';
    let mut i = 0;
    while i < c.len() {
        let next = c.get(i + 1).copied();
        let prev_ident = i > 0 && is_ident(c[i - 1]);
        if c[i] == '/' && next == Some('/') {
            while i < c.len() && c[i] != '\n' {
                blank(&mut out, c[i]);
                i += 1;
            }
        } else if c[i] == '/' && next == Some('*') {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, c[i]);
                    i += 1;
                }
            }
        } else if !prev_ident && let Some(end) = raw_string_end(&c, i) {
            while i < end {
                blank(&mut out, c[i]);
                i += 1;
            }
        } else if c[i] == '"' {
            blank(&mut out, c[i]);
            i += 1;
            while i < c.len() && c[i] != '"' {
                let skip = if c[i] == '\\' { 2 } else { 1 };
                for _ in 0..skip.min(c.len() - i) {
                    blank(&mut out, c[i]);
                    i += 1;
                }
            }
            if i < c.len() {
                blank(&mut out, c[i]);
                i += 1;
            }
        } else if c[i] == '\'' && (next == Some('\\') || c.get(i + 2) == Some(&'\'')) {
            // A character literal ('x', '\'', '\u{1F600}'); a lifetime has no closing quote.
            let mut end = if next == Some('\\') { i + 3 } else { i + 2 };
            while end < c.len() && c[end] != '\'' {
                end += 1;
            }
            while i <= end.min(c.len() - 1) {
                blank(&mut out, c[i]);
                i += 1;
            }
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

/// Where the raw string literal starting at `i` (`r"…"`, `r#"…"#`, `br"…"`) ends, if one does.
fn raw_string_end(c: &[char], i: usize) -> Option<usize> {
    let mut j = match (c[i], c.get(i + 1)) {
        ('r', _) => i + 1,
        ('b', Some('r')) => i + 2,
        _ => return None,
    };
    let mut hashes = 0;
    while c.get(j) == Some(&'#') {
        hashes += 1;
        j += 1;
    }
    if c.get(j) != Some(&'"') {
        return None; // `r#gen` is a raw identifier, `r` a name
    }
    j += 1;
    while j < c.len() {
        if c[j] == '"' && c[j + 1..].iter().take(hashes).filter(|&&h| h == '#').count() == hashes {
            return Some(j + 1 + hashes);
        }
        j += 1;
    }
    Some(c.len())
}

/// The identifier starting at byte `at` of `code` (a raw identifier loses its `r#`), and where it
/// ends.
fn ident_at(code: &str, at: usize) -> Option<(String, usize)> {
    let rest = &code[at..];
    let (skip, rest) = match rest.strip_prefix("r#") {
        Some(r) => (2, r),
        None => (0, rest),
    };
    let len = rest.find(|ch: char| !(ch.is_alphanumeric() || ch == '_')).unwrap_or(rest.len());
    (len > 0).then(|| (rest[..len].to_string(), at + skip + len))
}

fn skip_space(code: &str, at: usize) -> usize {
    at + code[at..].len() - code[at..].trim_start().len()
}

/// The first names of the paths in the group whose `{` is at byte `open` (`crate::{a::X, b}`).
fn group_heads(code: &str, open: usize) -> Vec<(String, usize)> {
    let mut heads = Vec::new();
    let (mut depth, mut expect_head) = (0, true);
    for (k, ch) in code[open..].char_indices() {
        match ch {
            '{' => {
                depth += 1;
                expect_head = depth == 1;
            }
            '}' => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            ',' if depth == 1 => expect_head = true,
            ch if expect_head && !ch.is_whitespace() => {
                expect_head = false;
                if let Some((name, _)) = ident_at(code, open + k) {
                    heads.push((name, open + k));
                }
            }
            _ => {}
        }
    }
    heads
}

/// The crate-root names a file's code reaches, with their byte offsets: after `crate::`, and
/// after as many `super::` as climb from `module` (the file's module path, e.g. `["query",
/// "bitmap_expr"]`, inline `mod x { … }` blocks added) to the root.
fn root_paths(code: &str, module: &[String]) -> Vec<(String, usize)> {
    let bytes = code.as_bytes();
    let is_ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80;
    // Inline modules: the module path at each `{ … }` depth.
    let mut inline: Vec<(usize, String)> = Vec::new();
    let mut depth = 0usize;
    let mut found = Vec::new();
    let mut at = 0;
    while at < code.len() {
        let b = bytes[at];
        if b == b'{' {
            depth += 1;
            let before = code[..at].trim_end();
            if let Some(name_start) = before.rfind(|ch: char| !(ch.is_alphanumeric() || ch == '_')) {
                let name = &before[name_start + 1..];
                let head = before[..=name_start].trim_end();
                if !name.is_empty()
                    && head.ends_with("mod")
                    && !head[..head.len() - 3].ends_with(|ch: char| ch.is_alphanumeric() || ch == '_')
                {
                    inline.push((depth, name.to_string()));
                }
            }
            at += 1;
            continue;
        }
        if b == b'}' {
            if inline.last().is_some_and(|(d, _)| *d == depth) {
                inline.pop();
            }
            depth = depth.saturating_sub(1);
            at += 1;
            continue;
        }
        // `bytes[at]` is ASCII here whenever a path can start, so `at` is a char boundary then.
        let word_start = at == 0 || !is_ident(bytes[at - 1]);
        let after_colons = at >= 2 && &bytes[at - 2..at] == b"::";
        if word_start && !after_colons && (bytes[at..].starts_with(b"crate") || bytes[at..].starts_with(b"super")) {
            let (word, end) = ident_at(code, at).expect("starts with a letter");
            let mut colons = skip_space(code, end);
            if !(word == "crate" || word == "super") || !code[colons..].starts_with("::") {
                at = end; // `crates`, `pub(crate)`, a `super` without a path
                continue;
            }
            if word == "super" {
                // A `super::super::…` chain that does not climb to the root stays in the file's
                // top module.
                let mut climb = 1;
                while let Some((next, next_end)) = ident_at(code, skip_space(code, colons + 2))
                    && next == "super"
                    && code[skip_space(code, next_end)..].starts_with("::")
                {
                    climb += 1;
                    colons = skip_space(code, next_end);
                }
                if climb < module.len() + inline.len() {
                    at = colons;
                    continue;
                }
            }
            let head = skip_space(code, colons + 2);
            if code[head..].starts_with('{') {
                found.extend(group_heads(code, head));
            } else if code[head..].starts_with('*') {
                found.push(("*".to_string(), head));
            } else if let Some((name, _)) = ident_at(code, head) {
                found.push((name, head));
            }
            at = head;
            continue;
        }
        at += 1;
    }
    found
}

/// `code` without its attributes (`#[cfg(test)]`, `#![allow(..)]`).
fn without_attributes(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let mut chars = code.chars().peekable();
    while let Some(ch) = chars.next() {
        if ch == '#' && matches!(chars.peek(), Some('[' | '!')) {
            let mut depth = 0;
            for inner in chars.by_ref() {
                match inner {
                    '[' => depth += 1,
                    ']' if depth == 1 => break,
                    ']' => depth -= 1,
                    _ => {}
                }
            }
            out.push(' ');
        } else {
            out.push(ch);
        }
    }
    out
}

/// The top modules and the crate-root re-exports (name, module) that `lib.rs` declares.
fn library_root(lib: &str) -> (BTreeSet<String>, BTreeMap<String, String>) {
    let code = without_attributes(&code_only(lib));
    let mut modules = BTreeSet::new();
    let mut reexports = BTreeMap::new();
    for statement in code.split(';') {
        let words: Vec<&str> = statement.split_whitespace().collect();
        // `pub mod`, `pub(crate) mod`, `mod`: visibility does not change the module's layer.
        let words = match words.first() {
            Some(w) if w.starts_with("pub") => &words[1..],
            _ => &words[..],
        };
        match words {
            ["mod", name] => {
                modules.insert(name.trim_start_matches("r#").to_string());
            }
            ["use", path @ ..] => {
                let path = path.join(" ");
                let (module, rest) = path.split_once("::").expect("a `pub use` in lib.rs names a module");
                let module = module.trim().trim_start_matches("r#").to_string();
                for item in rest.trim().trim_start_matches('{').trim_end_matches('}').split(',') {
                    // `a::B`, `B as C`: the name the root exports is the last word.
                    if let Some(last) = item.split_whitespace().last() {
                        let exported = last.rsplit("::").next().expect("rsplit yields one part");
                        reexports.insert(exported.to_string(), module.clone());
                    }
                }
            }
            _ => {}
        }
    }
    (modules, reexports)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("the source directory is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module path of a file under `src/` (`query/bitmap_expr.rs` is `["query", "bitmap_expr"]`,
/// `query/mod.rs` is `["query"]`, `lib.rs` is `[]`).
fn module_path(relative: &Path) -> Vec<String> {
    let mut parts: Vec<String> = relative.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let last = parts.pop().expect("a file name");
    match last.as_str() {
        "mod.rs" | "lib.rs" => {}
        other => parts.push(other.trim_end_matches(".rs").to_string()),
    }
    parts
}

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|(_, modules)| modules.contains(&module))
}

#[test]
fn every_use_of_another_module_goes_down_the_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let (modules, reexports) = library_root(&std::fs::read_to_string(src.join("lib.rs")).expect("lib.rs"));
    let layered: BTreeSet<String> = LAYERS.iter().flat_map(|(_, m)| m.iter().map(|m| m.to_string())).collect();
    assert_eq!(layered, modules, "LAYERS must place every module lib.rs declares, once");
    assert_eq!(layered.len(), LAYERS.iter().map(|(_, m)| m.len()).sum::<usize>(), "a module in two layers");
    assert!(reexports.contains_key("Error") && reexports.contains_key("Store"), "lib.rs re-exports: {reexports:?}");

    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut problems = Vec::new();
    let mut seen_allowed = BTreeSet::new();
    let mut modules_with_files = BTreeSet::new();
    let mut references = 0;
    for file in &files {
        let relative = file.strip_prefix(&src).expect("under src");
        let shown = format!("src/{}", relative.display());
        let code = code_only(&std::fs::read_to_string(file).expect("readable"));
        if relative == Path::new("main.rs") {
            // The binary is its own crate: it reaches the library only through `persona::`.
            let has_mod = code.lines().any(|l| {
                let words: Vec<&str> = l.split_whitespace().collect();
                matches!(words.as_slice(), ["mod", ..] | ["pub", "mod", ..])
            });
            assert!(!has_mod && !code.contains("crate::"), "{shown} must use the library only as persona::");
            assert!(code.contains("persona::"), "{shown} uses the library");
            continue;
        }
        let module = module_path(relative);
        let from = module.first().cloned();
        if let Some(from) = &from {
            modules_with_files.insert(from.clone());
        }
        for (name, offset) in root_paths(&code, &module) {
            references += 1;
            let line = code[..offset].matches('\n').count() + 1;
            let target = if modules.contains(&name) {
                name.clone()
            } else if let Some(module) = reexports.get(&name) {
                module.clone()
            } else {
                problems.push(format!("{shown}:{line}: crate::{name} is neither a module nor a re-export of lib.rs"));
                continue;
            };
            let Some(from) = &from else { continue }; // lib.rs: the top uses anything
            if *from == target {
                continue;
            }
            let from_layer = layer_of(from).expect("every module has a layer (checked above)");
            let to_layer = layer_of(&target).expect("every module has a layer (checked above)");
            let allowed = if to_layer > from_layer {
                true
            } else if to_layer == from_layer {
                SAME_LAYER.contains(&(from.as_str(), target.as_str()))
            } else if ALLOWED_UPWARD.contains(&(shown.as_str(), target.as_str())) {
                seen_allowed.insert((shown.clone(), target.clone()));
                true
            } else {
                false
            };
            if !allowed {
                let edge = if to_layer == from_layer {
                    format!(
                        "{target} is in {from}'s own layer ({}): list the pair in SAME_LAYER if it is meant",
                        LAYERS[from_layer].0
                    )
                } else {
                    format!(
                        "the {} layer is above the {} layer: move what it needs down, or the use up",
                        LAYERS[to_layer].0, LAYERS[from_layer].0
                    )
                };
                problems.push(format!("{shown}:{line}: {from} uses crate::{name} ({target}); {edge}"));
            }
        }
    }
    for (file, target) in ALLOWED_UPWARD {
        if !seen_allowed.contains(&(file.to_string(), target.to_string())) {
            problems.push(format!("{file} no longer uses {target}: remove the entry from ALLOWED_UPWARD"));
        }
    }
    assert!(references > 100, "found only {references} crate:: paths; the scan is broken");
    assert_eq!(modules_with_files, modules, "every module has source files under src/");
    assert!(problems.is_empty(), "layering broken:\n{}", problems.join("\n"));
}

#[test]
fn the_scan_reads_code_and_skips_comments_and_strings() {
    let source = r####"
//! Links [`crate::cli`] in a doc comment.
use crate::store::Snapshot; // crate::shell in a comment
use crate::{index::IndexSet, r#gen::Seed,
    tables::{Table, ROW_ID}};
/* crate::lint /* nested */ crate::output */
pub(crate) fn f() -> crate::Result<()> {
    let s = "crate::audience"; let r = r#"crate::query "quoted" "#; let c = '"'; let t = '\'';
    crate::ingest::run(s, r, c, t, crate :: error::Error::Internal)
}
mod tests {
    use super::*;
    use super::super::output;
}
"####;
    let code = code_only(source);
    assert_eq!(code.lines().count(), source.lines().count());
    let names = |module: &[&str]| -> Vec<String> {
        let module: Vec<String> = module.iter().map(|m| m.to_string()).collect();
        root_paths(&code, &module).into_iter().map(|(n, _)| n).collect()
    };
    let direct = ["store", "index", "gen", "tables", "Result", "ingest", "error"];
    // In `src/query/mod.rs`, `super::super::output` in `mod tests` climbs to the crate root.
    assert_eq!(names(&["query"]), [&direct[..], &["output"]].concat());
    // In `src/query/x.rs` it stays inside query.
    assert_eq!(names(&["query", "x"]), direct);
    let lib = "#![doc = \"x\"]\npub mod a;\n#[cfg(any(test, debug_assertions))]\npub mod r#gen;\n\
               pub(crate) mod c;\nmod e;\npub use a::{B, Class as Kind};\npub use d::e::F;\n";
    let (modules, reexports) = library_root(lib);
    assert_eq!(modules.into_iter().collect::<Vec<_>>(), ["a", "c", "e", "gen"]);
    let reexports: Vec<(&str, &str)> = reexports.iter().map(|(n, m)| (n.as_str(), m.as_str())).collect();
    assert_eq!(reexports, [("B", "a"), ("F", "d"), ("Kind", "a")]);
}
