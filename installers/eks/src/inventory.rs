//! The crash-safe inventory: every resource `up` creates is appended and saved
//! (write to a temporary file, fsync, rename) before the next step starts.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// A future an [`InventoryStore`] returns (boxed, so stores are object-safe).
pub type StoreFuture<'a, T> = std::pin::Pin<Box<dyn Future<Output = Result<T>> + Send + 'a>>;

/// Where an inventory lives between steps. `up` saves through it after every resource, so
/// whatever it keeps must be durable when `save` returns: a crash right after loses nothing.
///
/// * [`FileStore`]: `tptctl up --provider eks` (a file beside the config).
/// * The EKS runtime controller keeps it in its `AwsEksKubernetesRuntimeInstance`'s
///   `ResourceInventory`, so a controller restarted anywhere resumes from it.
pub trait InventoryStore: Send + Sync {
    /// The saved inventory, `None` before the first save (or after the last item is gone).
    fn load(&self) -> StoreFuture<'_, Option<Inventory>>;
    /// Replaces the saved inventory; an empty one may be stored as "none".
    fn save<'a>(&'a self, inv: &'a Inventory) -> StoreFuture<'a, ()>;
    /// The file it is kept in, when it is one (error messages point at it).
    fn file(&self) -> Option<&Path> {
        None
    }
}

/// An inventory file, written atomically ([`Inventory::save`]) and removed once empty.
pub struct FileStore(pub PathBuf);

impl InventoryStore for FileStore {
    fn load(&self) -> StoreFuture<'_, Option<Inventory>> {
        Box::pin(async move { Inventory::load(&self.0) })
    }
    fn save<'a>(&'a self, inv: &'a Inventory) -> StoreFuture<'a, ()> {
        Box::pin(async move { inv.save_or_remove(&self.0) })
    }
    fn file(&self) -> Option<&Path> {
        Some(&self.0)
    }
}

/// Everything a control plane owns in AWS, in the order it was created.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Inventory {
    /// The control plane name (`EksSpec::name`).
    pub name: String,
    /// The AWS region every resource lives in.
    pub region: String,
    /// Resources, ordered as created. `down` deletes them in reverse.
    pub resources: Vec<InventoryItem>,
}

/// One AWS resource.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InventoryItem {
    /// `IamRole`, `IamRolePolicyAttachment`, `Vpc`, `Subnet`, `InternetGateway`,
    /// `InternetGatewayAttachment`, `RouteTable`, `Route`, `RouteTableAssociation`,
    /// `SecurityGroup`, `EksCluster`, `NodeGroup`, `EcrRepository`.
    pub kind: String,
    /// The AWS identifier used to delete it (role name, `vpc-…`, cluster name, …).
    pub id: String,
    /// Kind-specific details. Always holds `"step"`: the `up` step that created it.
    pub extra: serde_json::Value,
}

impl InventoryItem {
    pub fn new(kind: &str, id: impl Into<String>, extra: serde_json::Value) -> Self {
        Self {
            kind: kind.to_string(),
            id: id.into(),
            extra,
        }
    }

    /// The `up` step that recorded this item (`extra.step`).
    pub fn step(&self) -> &str {
        self.extra
            .get("step")
            .and_then(|v| v.as_str())
            .unwrap_or("")
    }

    /// A string field of `extra`, or "".
    pub fn extra_str(&self, key: &str) -> &str {
        self.extra.get(key).and_then(|v| v.as_str()).unwrap_or("")
    }
}

impl Inventory {
    pub fn new(name: &str, region: &str) -> Self {
        Self {
            name: name.to_string(),
            region: region.to_string(),
            resources: Vec::new(),
        }
    }

    /// Reads the inventory; `Ok(None)` when the file does not exist.
    pub fn load(path: &Path) -> Result<Option<Inventory>> {
        match std::fs::read(path) {
            Ok(bytes) => {
                let inv = serde_json::from_slice(&bytes)
                    .with_context(|| format!("parsing inventory {}", path.display()))?;
                Ok(Some(inv))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading inventory {}", path.display())),
        }
    }

    /// Writes the inventory atomically: a temporary file (mode 0600) in the same
    /// directory, fsync, rename over `path`, fsync the directory.
    pub fn save(&self, path: &Path) -> Result<()> {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let file_name = path
            .file_name()
            .context("inventory path has no file name")?;
        let tmp = dir.join(format!(
            ".{}.tmp-{}",
            file_name.to_string_lossy(),
            std::process::id()
        ));
        let data = serde_json::to_vec_pretty(self)?;
        {
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create(true).truncate(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                opts.mode(0o600);
            }
            let mut f = opts
                .open(&tmp)
                .with_context(|| format!("creating {}", tmp.display()))?;
            #[cfg(unix)]
            {
                // The mode passed to open() is filtered by the umask; make it exact.
                use std::os::unix::fs::PermissionsExt;
                f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
            }
            f.write_all(&data)?;
            f.write_all(b"\n")?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path)
            .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// Saves the inventory, or removes the file when nothing is left in it.
    pub fn save_or_remove(&self, path: &Path) -> Result<()> {
        if self.resources.is_empty() {
            match std::fs::remove_file(path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(e).with_context(|| format!("removing {}", path.display())),
            }
        } else {
            self.save(path)
        }
    }

    /// The item recorded by `step`, if any.
    pub fn find_step(&self, step: &str) -> Option<&InventoryItem> {
        self.resources.iter().find(|i| i.step() == step)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_load_roundtrip_is_0600_and_atomic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inv.json");
        assert!(Inventory::load(&path).unwrap().is_none());
        let mut inv = Inventory::new("demo", "us-east-1");
        inv.resources.push(InventoryItem::new(
            "Vpc",
            "vpc-1",
            serde_json::json!({"step": "vpc"}),
        ));
        inv.save(&path).unwrap();
        let back = Inventory::load(&path).unwrap().unwrap();
        assert_eq!(back, inv);
        assert_eq!(back.find_step("vpc").unwrap().id, "vpc-1");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        inv.resources.clear();
        inv.save_or_remove(&path).unwrap();
        assert!(!path.exists());
    }
}
