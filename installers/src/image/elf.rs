//! What a dynamically linked executable needs at run time: its interpreter (`PT_INTERP`) and
//! every shared library in the closure of its `DT_NEEDED` entries, found the way the host's
//! loader finds them: `RPATH`/`RUNPATH` (with `$ORIGIN`), the directories of
//! `/etc/ld.so.conf` and its includes, then the loader's built-in directories. A static
//! executable needs nothing.

use anyhow::{Context, Result, bail};
use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};

/// One file the image must carry for the executable to start: where the loader will look for
/// it (`wanted`) and where it really is on this host (`host`, symlinks resolved).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Needed {
    pub wanted: PathBuf,
    pub host: PathBuf,
}

/// The interpreter and shared libraries `exe` needs, sorted by `wanted` path.
pub fn needed(exe: &Path) -> Result<Vec<Needed>> {
    let search = loader_dirs(Path::new("/etc/ld.so.conf"));
    let mut found: BTreeMap<PathBuf, PathBuf> = BTreeMap::new();
    let mut queue = VecDeque::from([exe.to_path_buf()]);
    while let Some(object) = queue.pop_front() {
        let bytes =
            std::fs::read(&object).with_context(|| format!("reading {}", object.display()))?;
        let elf = goblin::elf::Elf::parse(&bytes)
            .with_context(|| format!("{} is not an ELF file", object.display()))?;
        if let Some(interp) = elf.interpreter {
            let wanted = PathBuf::from(interp);
            if !found.contains_key(&wanted) {
                let host = std::fs::canonicalize(&wanted).with_context(|| {
                    format!(
                        "{} asks for the loader {interp}, which is not on this host",
                        object.display()
                    )
                })?;
                found.insert(wanted, host);
            }
        }
        let origin = object.parent().unwrap_or(Path::new("/")).to_path_buf();
        let own: Vec<PathBuf> = elf
            .runpaths
            .iter()
            .chain(elf.rpaths.iter())
            .flat_map(|p| p.split(':'))
            .filter(|p| !p.is_empty())
            .map(|p| PathBuf::from(p.replace("$ORIGIN", &origin.to_string_lossy())))
            .collect();
        for lib in &elf.libraries {
            let Some(wanted) = own
                .iter()
                .chain(&search)
                .map(|d| d.join(lib))
                .find(|p| p.exists())
            else {
                bail!(
                    "{} needs {lib}, which the loader would not find on this host (searched {})",
                    object.display(),
                    own.iter()
                        .chain(&search)
                        .map(|d| d.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            };
            if found.contains_key(&wanted) {
                continue;
            }
            let host = std::fs::canonicalize(&wanted)?;
            found.insert(wanted, host.clone());
            queue.push_back(host);
        }
    }
    Ok(found
        .into_iter()
        .map(|(wanted, host)| Needed { wanted, host })
        .collect())
}

/// The loader's search directories after `RUNPATH`: those listed in `ld.so.conf` (following
/// `include` lines, which may end in a `*` pattern), then the built-in trusted directories.
fn loader_dirs(conf: &Path) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    read_conf(conf, &mut dirs, 0);
    for d in ["/lib64", "/usr/lib64", "/lib", "/usr/lib"] {
        dirs.push(PathBuf::from(d));
    }
    let mut seen = std::collections::HashSet::new();
    dirs.retain(|d| seen.insert(d.clone()));
    dirs
}

fn read_conf(conf: &Path, dirs: &mut Vec<PathBuf>, depth: usize) {
    // Includes can loop; real configurations are one or two levels deep.
    if depth > 8 {
        return;
    }
    let Ok(text) = std::fs::read_to_string(conf) else {
        return;
    };
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        if let Some(pattern) = line.strip_prefix("include") {
            for file in expand(pattern.trim(), conf) {
                read_conf(&file, dirs, depth + 1);
            }
        } else if line.starts_with('/') {
            dirs.push(PathBuf::from(line));
        }
    }
}

/// `include` patterns: a path, or a directory and a file name with one `*` (`*.conf`),
/// matched in name order as glibc's `ldconfig` does.
fn expand(pattern: &str, conf: &Path) -> Vec<PathBuf> {
    let path = if pattern.starts_with('/') {
        PathBuf::from(pattern)
    } else {
        conf.parent().unwrap_or(Path::new("/")).join(pattern)
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let Some((prefix, suffix)) = name.split_once('*') else {
        return vec![path];
    };
    let dir = path.parent().unwrap_or(Path::new("/"));
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .map(|n| n.to_string_lossy())
                .is_some_and(|n| n.starts_with(prefix) && n.ends_with(suffix))
        })
        .collect();
    files.sort();
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_test_binary_needs_libc_and_its_loader() {
        let exe = std::env::current_exe().unwrap();
        let needed = needed(&exe).unwrap();
        let names: Vec<String> = needed
            .iter()
            .map(|n| n.wanted.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().any(|n| n.starts_with("libc.so")), "{names:?}");
        assert!(names.iter().any(|n| n.starts_with("ld-linux")), "{names:?}");
        for n in &needed {
            assert!(n.host.is_file(), "{n:?}");
        }
    }

    #[test]
    fn includes_with_a_pattern_are_followed_in_name_order() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("conf.d")).unwrap();
        std::fs::write(d.join("ld.so.conf"), "include conf.d/*.conf\n/opt/first\n").unwrap();
        std::fs::write(d.join("conf.d/b.conf"), "/opt/b # comment\n").unwrap();
        std::fs::write(d.join("conf.d/a.conf"), "/opt/a\n").unwrap();
        std::fs::write(d.join("conf.d/skip.txt"), "/opt/skip\n").unwrap();
        let dirs = loader_dirs(&d.join("ld.so.conf"));
        assert_eq!(
            dirs[..3],
            [
                PathBuf::from("/opt/a"),
                PathBuf::from("/opt/b"),
                PathBuf::from("/opt/first")
            ]
        );
        assert!(!dirs.contains(&PathBuf::from("/opt/skip")));
    }
}
