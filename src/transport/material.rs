//! Secret and certificate bytes an analyzer's transport is built from, and
//! what is built from them, kept current.
//!
//! A [`Material`] is a file (the YAML configuration names paths: a mounted
//! Secret, a cert-manager certificate) or bytes given inline (the Kubernetes
//! controller's copy of a Secret key, held in memory only). A
//! [`Reloading`] value is built from several materials and rebuilt when one
//! of its files changes: the files' modification times and sizes are looked
//! at, at most once every [`CHECK_EVERY`], when the value is asked for (a
//! token before each request, a TLS configuration before each new
//! connection). A change that does not build keeps the previous value and
//! logs a warning; the next change is tried again. Inline bytes never
//! change: the controller builds a new transport when a Secret does.
//!
//! Neither the bytes nor anything built from them are ever printed: a
//! [`Material`] shows its path or its origin, and build errors name the
//! material, not its content.

use crate::sync::LockUnpoisoned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// How often a material's file is looked at for a change, at most.
pub(crate) const CHECK_EVERY: Duration = Duration::from_secs(1);

/// Where bytes come from: a file, or inline bytes with the name of where
/// they were read (say `Secret logs/otel-token, key token`).
#[derive(Clone, PartialEq, Eq)]
pub enum Material {
    File(PathBuf),
    Inline { origin: String, bytes: Arc<[u8]> },
}

impl Material {
    /// Inline bytes read from `origin`.
    pub fn inline(origin: impl Into<String>, bytes: impl Into<Arc<[u8]>>) -> Material {
        Material::Inline {
            origin: origin.into(),
            bytes: bytes.into(),
        }
    }

    /// What the material is, for messages: its path or its origin.
    pub fn describe(&self) -> String {
        match self {
            Material::File(path) => path.display().to_string(),
            Material::Inline { origin, .. } => origin.clone(),
        }
    }

    /// Its bytes now, with the stamp they were read at.
    fn read(&self) -> Result<(Vec<u8>, Option<Stamp>), String> {
        match self {
            Material::File(path) => {
                let stamp = stamp_of(path);
                let bytes =
                    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                Ok((bytes, stamp))
            }
            Material::Inline { bytes, .. } => Ok((bytes.to_vec(), None)),
        }
    }

    /// What tells a change: a file's modification time and size.
    fn stamp(&self) -> Option<Stamp> {
        match self {
            Material::File(path) => stamp_of(path),
            Material::Inline { .. } => None,
        }
    }
}

impl fmt::Debug for Material {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Material::File(path) => write!(f, "File({})", path.display()),
            Material::Inline { origin, .. } => write!(f, "Inline({origin})"),
        }
    }
}

/// A file is written as its path; inline bytes as their origin, never as
/// the bytes.
impl Serialize for Material {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.describe())
    }
}

/// The configuration names files only.
impl<'de> Deserialize<'de> for Material {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Material, D::Error> {
        Ok(Material::File(PathBuf::deserialize(deserializer)?))
    }
}

/// A file's modification time and size.
type Stamp = (SystemTime, u64);

fn stamp_of(path: &Path) -> Option<Stamp> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// Builds a value from the bytes of each material, in order; the error
/// names what is wrong without quoting the bytes.
type Build<T> = Box<dyn Fn(&[Vec<u8>]) -> Result<T, String> + Send + Sync>;

/// A value built from materials and rebuilt when one of their files changes.
pub(crate) struct Reloading<T> {
    /// What the value is, for logs ("TLS settings of analyzer-a1").
    what: String,
    sources: Vec<Material>,
    build: Build<T>,
    state: Mutex<State<T>>,
}

struct State<T> {
    current: Arc<T>,
    stamps: Vec<Option<Stamp>>,
    checked: Instant,
}

impl<T> Reloading<T> {
    /// Reads every material and builds the value; an error when one cannot
    /// be read or the value does not build.
    pub(crate) fn new(
        what: impl Into<String>,
        sources: Vec<Material>,
        build: impl Fn(&[Vec<u8>]) -> Result<T, String> + Send + Sync + 'static,
    ) -> Result<Reloading<T>, String> {
        let build: Build<T> = Box::new(build);
        let (current, stamps) = read_and_build(&sources, &build)?;
        Ok(Reloading {
            what: what.into(),
            sources,
            build,
            state: Mutex::new(State {
                current: Arc::new(current),
                stamps,
                checked: Instant::now(),
            }),
        })
    }

    /// The value, and whether it was rebuilt by this call: when
    /// [`CHECK_EVERY`] has passed since the last look, the files are looked
    /// at and a change is read and built.
    pub(crate) fn current(&self) -> (Arc<T>, bool) {
        let mut state = self.state.lock_unpoisoned();
        if state.checked.elapsed() < CHECK_EVERY {
            return (state.current.clone(), false);
        }
        state.checked = Instant::now();
        let stamps: Vec<Option<Stamp>> = self.sources.iter().map(Material::stamp).collect();
        if stamps == state.stamps {
            return (state.current.clone(), false);
        }
        match read_and_build(&self.sources, &self.build) {
            Ok((value, stamps)) => {
                state.current = Arc::new(value);
                state.stamps = stamps;
                tracing::info!(what = %self.what, "files changed; rebuilt");
                (state.current.clone(), true)
            }
            Err(e) => {
                // Tried again at the next change, not at every look.
                state.stamps = stamps;
                tracing::warn!(what = %self.what, error = %e, "files changed but do not build; the previous ones stay in use");
                (state.current.clone(), false)
            }
        }
    }
}

fn read_and_build<T>(sources: &[Material], build: &Build<T>) -> Result<(T, Vec<Option<Stamp>>), String> {
    let mut contents = Vec::with_capacity(sources.len());
    let mut stamps = Vec::with_capacity(sources.len());
    for source in sources {
        let (bytes, stamp) = source.read()?;
        contents.push(bytes);
        stamps.push(stamp);
    }
    Ok((build(&contents)?, stamps))
}

impl<T> fmt::Debug for Reloading<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reloading")
            .field("what", &self.what)
            .field("sources", &self.sources)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sets a file's modification time, so that a rewrite of the same size
    /// within one clock tick still reads as a change.
    fn touch(path: &Path, seconds_ahead: u64) {
        let file = std::fs::File::options().write(true).open(path).unwrap();
        file.set_modified(SystemTime::now() + Duration::from_secs(seconds_ahead))
            .unwrap();
    }

    fn upper(contents: &[Vec<u8>]) -> Result<String, String> {
        let text = String::from_utf8(contents[0].clone()).map_err(|_| "not UTF-8".to_string())?;
        if text.is_empty() {
            return Err("empty".into());
        }
        Ok(text.to_uppercase())
    }

    #[test]
    fn a_changed_file_is_read_again_after_the_check_interval_and_not_before() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "first").unwrap();
        let value = Reloading::new("test", vec![Material::File(path.clone())], upper).unwrap();
        assert_eq!(*value.current().0, "FIRST");
        std::fs::write(&path, "again").unwrap();
        touch(&path, 1);
        let (now, rebuilt) = value.current();
        assert_eq!(
            (now.as_str(), rebuilt),
            ("FIRST", false),
            "looked at once a second at most"
        );
        std::thread::sleep(CHECK_EVERY);
        let (now, rebuilt) = value.current();
        assert_eq!((now.as_str(), rebuilt), ("AGAIN", true));
        std::thread::sleep(CHECK_EVERY);
        assert_eq!(
            value.current(),
            (Arc::new("AGAIN".to_string()), false),
            "unchanged: not rebuilt"
        );
    }

    #[test]
    fn a_change_that_does_not_build_keeps_the_previous_value_until_the_next_change() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "good").unwrap();
        let value = Reloading::new("test", vec![Material::File(path.clone())], upper).unwrap();
        std::fs::write(&path, "").unwrap();
        std::thread::sleep(CHECK_EVERY);
        assert_eq!(*value.current().0, "GOOD");
        std::fs::remove_file(&path).unwrap();
        std::thread::sleep(CHECK_EVERY);
        assert_eq!(*value.current().0, "GOOD", "a file gone keeps the last value");
        std::fs::write(&path, "better").unwrap();
        touch(&path, 2);
        std::thread::sleep(CHECK_EVERY);
        assert_eq!(*value.current().0, "BETTER");
    }

    #[test]
    fn a_missing_or_bad_material_fails_the_build_naming_it_not_its_content() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let error = Reloading::new("test", vec![Material::File(missing.clone())], upper).unwrap_err();
        assert!(
            error.starts_with(&format!("cannot read {}", missing.display())),
            "{error}"
        );
        let inline = Material::inline("Secret ns/s, key k", b"".to_vec());
        assert_eq!(Reloading::new("test", vec![inline], upper).unwrap_err(), "empty");
    }

    #[test]
    fn inline_bytes_are_never_shown() {
        let secret = Material::inline("Secret ns/s, key token", b"hunter2".to_vec());
        assert_eq!(format!("{secret:?}"), "Inline(Secret ns/s, key token)");
        let yaml = serde_json::to_string(&secret).unwrap();
        assert_eq!(yaml, "\"Secret ns/s, key token\"");
        let file: Material = serde_json::from_str("\"/run/token\"").unwrap();
        assert_eq!(file, Material::File("/run/token".into()));
    }
}
