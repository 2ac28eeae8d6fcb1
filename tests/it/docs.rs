//! The operator guides stay true: every complete config shown in `docs/*.md` and `README.md`
//! loads with the real config loader, each guide shows its `config/examples/` file verbatim, and
//! every example file loads.
//!
//! The rules for ```` ```toml ```` blocks (also stated in `docs/README.md`):
//!
//! - A block with a `[server]` table line is a **complete config**: `Config::parse` must accept
//!   it.
//! - A block tagged `fragment` (```` ```toml fragment ````) is part of a config: it must be valid
//!   TOML, nothing more.
//! - In `docs/`, any other TOML block is an error: complete it or tag it. `README.md` predates
//!   the tag, so there such blocks are taken as fragments.
//! - A block tagged with a path (```` ```toml config/examples/NAME.toml ````) must be identical
//!   to that file.
//!
//! A failure names the Markdown file and line, e.g. `docs/plex.md:31:1: unknown field ...`.

use std::path::{Path, PathBuf};

use mtx_auth::config::Config;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A fenced ```` ```toml ```` block.
#[derive(Debug)]
struct Block {
    /// 1-based line of the opening fence; the block's first line is `fence_line + 1`.
    fence_line: usize,
    /// The words of the info string after `toml`.
    tags: Vec<String>,
    text: String,
}

/// Every fenced block in `language` (`toml`, `yaml`) of a Markdown text. Fences may be indented (inside lists); the
/// fence's indentation is removed from the block's lines.
fn fenced_blocks(markdown: &str, language: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    // (fence length, indentation, language, tags, fence line, text)
    let mut open: Option<(usize, usize, String, Vec<String>, usize, String)> = None;
    for (i, line) in markdown.lines().enumerate() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        let ticks = trimmed.bytes().take_while(|&b| b == b'`').count();
        match &mut open {
            None if ticks >= 3 => {
                let mut words = trimmed[ticks..].split_whitespace().map(str::to_owned);
                let lang = words.next().unwrap_or_default();
                open = Some((ticks, indent, lang, words.collect(), i + 1, String::new()));
            }
            None => {}
            Some((fence, ..)) if ticks >= *fence && trimmed[ticks..].trim().is_empty() => {
                let (_, _, lang, tags, fence_line, text) = open.take().expect("open block");
                if lang == language {
                    blocks.push(Block {
                        fence_line,
                        tags,
                        text,
                    });
                }
            }
            Some((_, fence_indent, _, _, _, text)) => {
                let strip = indent.min(*fence_indent);
                text.push_str(&line[strip..]);
                text.push('\n');
            }
        }
    }
    blocks
}

/// Problems with the TOML blocks of one Markdown file, as `NAME:LINE:COL: message`. `strict`:
/// every block must be complete or tagged `fragment`. Example paths are relative to `root`.
fn check_markdown(name: &str, markdown: &str, strict: bool, root: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    for block in fenced_blocks(markdown, "toml") {
        let at = |line: usize, col: usize| format!("{name}:{}:{col}", block.fence_line + line);
        let fragment = block.tags.iter().any(|t| t == "fragment");
        let complete = block.text.lines().any(|l| l.trim() == "[server]");
        for path in block.tags.iter().filter(|t| t.ends_with(".toml")) {
            match std::fs::read_to_string(root.join(path)) {
                Ok(file) if file == block.text => {}
                Ok(file) => {
                    let (shown, real): (Vec<_>, Vec<_>) =
                        (block.text.lines().collect(), file.lines().collect());
                    // The first differing line; past the end of both, a newline differs.
                    let n = (0..shown.len().max(real.len()))
                        .find(|&i| shown.get(i) != real.get(i))
                        .unwrap_or(shown.len());
                    problems.push(format!(
                        "{}: block differs from {path} at its line {}: shown {:?}, file has {:?}",
                        at(n + 1, 1),
                        n + 1,
                        shown.get(n).copied().unwrap_or(""),
                        real.get(n).copied().unwrap_or(""),
                    ));
                }
                Err(e) => problems.push(format!("{}: cannot read {path}: {e}", at(0, 1))),
            }
        }
        if complete && !fragment {
            if let Err(e) = Config::parse(&block.text, name) {
                for p in e.problems {
                    problems.push(format!("{}: {}", at(p.line, p.col), p.message));
                }
            }
            continue;
        }
        if strict && !fragment {
            problems.push(format!(
                "{}: toml block has no [server] table (not a complete config) and is not tagged `fragment`",
                at(0, 1)
            ));
        }
        if let Err(e) = block.text.parse::<toml::Table>() {
            let line = e.span().map_or(0, |s| {
                let before = block.text.get(..s.start).unwrap_or(&block.text);
                (before.matches('\n').count() + 1).min(block.text.lines().count())
            });
            problems.push(format!("{}: not valid TOML: {}", at(line, 1), e.message()));
        }
    }
    problems
}

/// The guides, sorted: `docs/*.md`.
fn guides() -> Vec<PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(root().join("docs"))
        .expect("docs/ exists")
        .map(|e| e.expect("readable docs/ entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    files.sort();
    files
}

fn relative(path: &Path) -> String {
    path.strip_prefix(root())
        .unwrap_or(path)
        .display()
        .to_string()
}

#[test]
fn every_toml_block_in_the_docs_checks_out() {
    // Configs that read a secret from the environment (docs/ldap.md's bind_password_env).
    crate::support::test_env();
    let mut problems = Vec::new();
    let mut complete = 0;
    let mut files: Vec<(PathBuf, bool)> = guides().into_iter().map(|p| (p, true)).collect();
    files.push((root().join("README.md"), false));
    for (path, strict) in files {
        let name = relative(&path);
        let text = std::fs::read_to_string(&path).expect("readable Markdown");
        complete += fenced_blocks(&text, "toml")
            .iter()
            .filter(|b| b.text.lines().any(|l| l.trim() == "[server]"))
            .count();
        problems.extend(check_markdown(&name, &text, strict, &root()));
    }
    assert!(
        problems.is_empty(),
        "{} problem(s) in the docs' TOML blocks:\n{}",
        problems.len(),
        problems.join("\n")
    );
    // The guides show five complete configs; finding fewer means the fence parser broke.
    assert!(complete >= 5, "found only {complete} complete configs");
}

/// The YAML shown to operators (mediamtx.yml lines, manifests) parses: a YAML mistake in a guide
/// would be copied into a MediaMTX config.
#[test]
fn every_yaml_block_in_the_docs_parses() {
    let mut files = guides();
    files.extend(["README.md", "deploy/README.md"].map(|f| root().join(f)));
    let mut problems = Vec::new();
    let mut blocks = 0;
    for path in files {
        let text = std::fs::read_to_string(&path).expect("readable Markdown");
        for block in fenced_blocks(&text, "yaml") {
            blocks += 1;
            if let Err(e) = serde_saphyr::from_str::<serde_json::Value>(&block.text) {
                let name = relative(&path);
                problems.push(format!(
                    "{name}:{}: {}",
                    block.fence_line,
                    e.without_snippet()
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(blocks >= 5, "found only {blocks} yaml blocks");
}

#[test]
fn each_guide_shows_its_example_files_and_every_example_loads() {
    crate::support::test_env();
    let expected: &[(&str, &[&str])] = &[
        ("docs/keycloak.md", &["config/examples/keycloak.toml"]),
        ("docs/authentik.md", &["config/examples/authentik.toml"]),
        (
            "docs/jellyfin-emby.md",
            &["config/examples/jellyfin.toml", "config/examples/emby.toml"],
        ),
        ("docs/plex.md", &["config/examples/plex.toml"]),
        ("docs/ldap.md", &["config/examples/ldap.toml"]),
        ("docs/access.md", &["config/examples/access.toml"]),
        ("docs/portal.md", &["config/examples/portal.toml"]),
    ];
    let mut shown = Vec::new();
    for guide in guides() {
        let text = std::fs::read_to_string(&guide).expect("readable guide");
        for block in fenced_blocks(&text, "toml") {
            for tag in block.tags.iter().filter(|t| t.ends_with(".toml")) {
                shown.push((relative(&guide), tag.clone()));
            }
        }
    }
    for (guide, files) in expected {
        for file in *files {
            let count = shown
                .iter()
                .filter(|(g, f)| g == guide && f == file)
                .count();
            assert_eq!(
                count, 1,
                "{guide} must show {file} exactly once, in a block tagged ```toml {file}"
            );
        }
    }
    let mut examples: Vec<_> = std::fs::read_dir(root().join("config/examples"))
        .expect("config/examples exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    examples.sort();
    assert!(examples.len() >= 5, "{examples:?}");
    for path in examples {
        let name = relative(&path);
        if let Err(e) = Config::load(&path) {
            panic!("{name} does not load:\n{e}");
        }
        assert!(
            shown.iter().any(|(_, f)| *f == name),
            "{name} is not shown in any guide (tag a block ```toml {name})"
        );
    }
}

/// The checker itself: each kind of mistake is reported, at the right line.
#[test]
fn the_checker_reports_broken_blocks() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("docs-checker");
    std::fs::create_dir_all(dir.join("config/examples")).unwrap();
    std::fs::write(
        dir.join("config/examples/x.toml"),
        "[server]\nlisten = \"127.0.0.1:9000\"\n",
    )
    .unwrap();

    let good = "# Guide\n\n```toml config/examples/x.toml\n[server]\nlisten = \"127.0.0.1:9000\"\n```\n\n1. Step\n\n   ```toml fragment\n   [jwt]\n   claim_key = \"x\"\n   ```\n\n```sh\n[server]\n```\n";
    assert_eq!(
        check_markdown("g.md", good, true, &dir),
        Vec::<String>::new()
    );

    let bad = "# Guide\n\n```toml config/examples/x.toml\n[server]\nlisten = \"127.0.0.1:9001\"\n```\n\n```toml\n[server]\n\n[[users]]\nuser = \"any\"\nlisen = 1\n```\n\n```toml\n[jwt]\n```\n\n```toml fragment\na = [\n```\n";
    let problems = check_markdown("g.md", bad, true, &dir);
    let want = [
        "g.md:5:1: block differs from config/examples/x.toml at its line 2",
        "g.md:13:1: unknown field `lisen`",
        "g.md:16:1: toml block has no [server] table",
        "g.md:21:1: not valid TOML",
    ];
    for w in want {
        assert!(
            problems.iter().any(|p| p.starts_with(w)),
            "missing {w:?} in {problems:#?}"
        );
    }
    assert_eq!(problems.len(), want.len(), "{problems:#?}");

    // README.md's rule: untagged partial blocks are fragments, but a complete one must load.
    let readme = "```toml\n[[users]]\nuser = \"x\"\n```\n\n```toml\n[server]\nlisten = 5\n```\n";
    let problems = check_markdown("README.md", readme, false, &dir);
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert!(problems[0].starts_with("README.md:8:"), "{problems:#?}");
}
