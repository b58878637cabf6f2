//! The filesystem the configuration loader reads: [`RealFs`] in production, [`MemFs`] (files
//! held in memory) for the fuzzer and for tests, so `include` can be exercised without touching
//! the machine's files.

use std::{
    collections::BTreeMap,
    io,
    path::{Component, Path, PathBuf},
};

/// What the loader needs to know about a path (symbolic links followed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileInfo {
    /// A regular file.
    pub is_file: bool,
    /// A directory.
    pub is_dir: bool,
    /// Size in bytes.
    pub len: u64,
    /// Any execute permission bit is set.
    pub executable: bool,
}

/// The file operations of the configuration loader (main file, `include` and its globs).
pub trait ConfigFs {
    /// Information about `path`.
    ///
    /// # Errors
    /// It does not exist or cannot be examined.
    fn stat(&self, path: &Path) -> io::Result<FileInfo>;
    /// The content of the file `path`.
    ///
    /// # Errors
    /// It cannot be read.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// Whether the file `path` can be opened for reading.
    fn readable(&self, path: &Path) -> bool;
    /// The canonical form of `path` (include cycles are found on it).
    ///
    /// # Errors
    /// It does not exist.
    fn canonicalize(&self, path: &Path) -> io::Result<PathBuf>;
    /// The paths matching the shell pattern `pattern` (`*`, `?`, `[...]`), in any order.
    ///
    /// # Errors
    /// The pattern is malformed.
    fn glob(&self, pattern: &str) -> Result<Vec<PathBuf>, glob::PatternError>;
}

/// The machine's filesystem.
#[derive(Clone, Copy, Debug, Default)]
pub struct RealFs;

impl ConfigFs for RealFs {
    fn stat(&self, path: &Path) -> io::Result<FileInfo> {
        use std::os::unix::fs::PermissionsExt;
        let m = std::fs::metadata(path)?;
        Ok(FileInfo {
            is_file: m.is_file(),
            is_dir: m.is_dir(),
            len: m.len(),
            executable: m.permissions().mode() & 0o111 != 0,
        })
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        std::fs::read(path)
    }

    fn readable(&self, path: &Path) -> bool {
        std::fs::File::open(path).is_ok()
    }

    fn canonicalize(&self, path: &Path) -> io::Result<PathBuf> {
        std::fs::canonicalize(path)
    }

    fn glob(&self, pattern: &str) -> Result<Vec<PathBuf>, glob::PatternError> {
        Ok(glob::glob(pattern)?.filter_map(Result::ok).collect())
    }
}

/// A file of a [`MemFs`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemFile {
    /// Content.
    pub bytes: Vec<u8>,
    /// Has an execute bit (an include skips it, as keepalived does).
    pub executable: bool,
}

/// A filesystem held in memory: absolute paths to files and directories (the parents of every
/// file are directories too). Paths are normalised lexically (`.` and `..`); there are no
/// links and every file is readable.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemFs {
    files: BTreeMap<PathBuf, MemFile>,
    dirs: std::collections::BTreeSet<PathBuf>,
}

/// `path` made absolute against `/` and normalised lexically.
fn normal(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

impl MemFs {
    /// An empty filesystem (only `/`).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) the file `path` and its parent directories.
    pub fn add_file(&mut self, path: impl AsRef<Path>, bytes: impl Into<Vec<u8>>, executable: bool) {
        let p = normal(path.as_ref());
        for a in p.ancestors().skip(1) {
            self.dirs.insert(a.to_path_buf());
        }
        self.dirs.remove(&p);
        self.files.insert(p, MemFile { bytes: bytes.into(), executable });
    }

    /// Adds the directory `path` (and its parents), unless a file has that name.
    pub fn add_dir(&mut self, path: impl AsRef<Path>) {
        let p = normal(path.as_ref());
        if self.files.contains_key(&p) {
            return;
        }
        for a in p.ancestors() {
            self.dirs.insert(a.to_path_buf());
        }
    }

    fn not_found(path: &Path) -> io::Error {
        io::Error::new(io::ErrorKind::NotFound, format!("{}: no such file in the in-memory filesystem", path.display()))
    }
}

impl ConfigFs for MemFs {
    fn stat(&self, path: &Path) -> io::Result<FileInfo> {
        let p = normal(path);
        if let Some(f) = self.files.get(&p) {
            return Ok(FileInfo { is_file: true, is_dir: false, len: f.bytes.len() as u64, executable: f.executable });
        }
        if p == Path::new("/") || self.dirs.contains(&p) {
            return Ok(FileInfo { is_file: false, is_dir: true, len: 0, executable: true });
        }
        Err(Self::not_found(path))
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let p = normal(path);
        match self.files.get(&p) {
            Some(f) => Ok(f.bytes.clone()),
            None if self.dirs.contains(&p) => Err(io::Error::new(io::ErrorKind::IsADirectory, "is a directory")),
            None => Err(Self::not_found(path)),
        }
    }

    fn readable(&self, path: &Path) -> bool {
        self.stat(path).is_ok()
    }

    fn canonicalize(&self, path: &Path) -> io::Result<PathBuf> {
        self.stat(path).map(|_| normal(path))
    }

    fn glob(&self, pattern: &str) -> Result<Vec<PathBuf>, glob::PatternError> {
        let pat = glob::Pattern::new(&normal(Path::new(pattern)).to_string_lossy())?;
        // As glob::glob walks directories: a wildcard never matches a `/`.
        let opts = glob::MatchOptions { require_literal_separator: true, ..glob::MatchOptions::new() };
        Ok(self
            .files
            .keys()
            .chain(self.dirs.iter())
            .filter(|p| pat.matches_path_with(p, opts))
            .cloned()
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The in-memory filesystem answers as the real one would: files, implied directories,
    /// lexical `..`, globs that never cross a `/`, and a malformed pattern is an error.
    #[test]
    fn mem_fs_answers_like_a_filesystem() {
        let mut fs = MemFs::new();
        fs.add_file("/etc/k/main.conf", "x", false);
        fs.add_file("/etc/k/conf.d/a.conf", "aa", false);
        fs.add_file("/etc/k/conf.d/b.sh", "b", true);
        fs.add_dir("/etc/k/empty");
        let st = fs.stat(Path::new("/etc/k/conf.d/a.conf")).expect("file");
        assert_eq!(st, FileInfo { is_file: true, is_dir: false, len: 2, executable: false });
        assert!(fs.stat(Path::new("/etc/k/conf.d/b.sh")).expect("file").executable);
        assert!(fs.stat(Path::new("/etc/k/conf.d")).expect("dir").is_dir);
        assert!(fs.stat(Path::new("/etc/k/empty")).expect("dir").is_dir);
        assert!(fs.stat(Path::new("/etc/k/missing")).is_err());
        assert_eq!(fs.read(Path::new("/etc/k/conf.d/../main.conf")).expect("read"), b"x");
        assert!(fs.read(Path::new("/etc/k/conf.d")).is_err());
        assert_eq!(fs.canonicalize(Path::new("/etc/./k/conf.d/../main.conf")).expect("canon"), Path::new("/etc/k/main.conf"));
        let mut g = fs.glob("/etc/k/*.conf").expect("glob");
        g.sort();
        assert_eq!(g, [PathBuf::from("/etc/k/main.conf")]);
        let mut g = fs.glob("/etc/k/conf.d/*").expect("glob");
        g.sort();
        assert_eq!(g, [PathBuf::from("/etc/k/conf.d/a.conf"), PathBuf::from("/etc/k/conf.d/b.sh")]);
        assert_eq!(fs.glob("/etc/k/*/a.con?").expect("glob"), [PathBuf::from("/etc/k/conf.d/a.conf")]);
        assert!(fs.glob("/etc/k/[").is_err());
    }
}
