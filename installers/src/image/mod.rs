//! The control plane's container image, built from the running `tptctl` with no Docker and no
//! base image: one layer with this executable as `/usr/local/bin/threeport` (it runs the
//! control plane when started under that name), the shared libraries it needs from this host
//! (see [`elf`]), the host's CA bundle, a non-root user and a minimal `/etc`. The result is an
//! OCI image layout in a tar file (`oci-archive`), which `kind load image-archive`, skopeo and
//! containerd read, and which [`push`](crate) sends to a registry.
//!
//! The build is deterministic: every timestamp is `SOURCE_DATE_EPOCH` (0 by default), owners
//! are numeric, entries are sorted, gzip carries no name or time, JSON keys are sorted. So the
//! same executable gives the same archive, byte for byte, and the same image digest.

pub mod elf;
pub mod push;

use anyhow::{Context, Result, bail};
use flate2::{Compression, GzBuilder};
use oci_spec::image::{
    Arch, ConfigBuilder, DescriptorBuilder, Digest, ImageConfigurationBuilder, ImageIndexBuilder,
    ImageManifestBuilder, MediaType, OciLayoutBuilder, Os, RootFsBuilder, SCHEMA_VERSION,
};
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Where the executable sits in the image, and the name that makes it run the control plane.
pub const ENTRYPOINT: &str = "/usr/local/bin/threeport";
/// The image's user: the conventional non-root UID/GID of distroless images.
pub const UID: u32 = 65532;
/// The CA bundle's path in the image (Debian's layout, which rustls-native-certs and OpenSSL
/// look for).
pub const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
/// The repository the built image is named under. It is never pulled from: kind loads the
/// archive into its nodes, and a registry push renames it.
pub const LOCAL_REPOSITORY: &str = "threeport.local/threeport";

/// A built image archive.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Built {
    /// The `oci-archive` file.
    pub archive: PathBuf,
    /// The manifest's digest (`sha256:…`): the image's identity.
    pub digest: String,
    /// `threeport.local/threeport:<version>-<first 12 hex digits of the digest>`.
    pub reference: String,
}

/// What goes into the image, apart from the executable's own libraries.
#[derive(Clone, Debug)]
pub struct Inputs {
    /// The executable to carry (normally `std::env::current_exe()`).
    pub exe: PathBuf,
    /// The CA bundle to copy in.
    pub ca_bundle: PathBuf,
    /// The version label and tag prefix.
    pub version: String,
}

impl Inputs {
    /// This process's executable and this host's CA bundle.
    pub fn current(version: &str) -> Result<Inputs> {
        Ok(Inputs {
            exe: std::env::current_exe().context("finding this executable")?,
            ca_bundle: PathBuf::from(CA_BUNDLE),
            version: version.to_string(),
        })
    }
}

/// Build the archive at `out` (written to a temporary file beside it, then renamed, so an
/// interrupted build never leaves a partial archive under the final name).
pub fn build(inputs: &Inputs, out: &Path) -> Result<Built> {
    let epoch = source_date_epoch();
    let mut rootfs = Rootfs::default();
    rootfs.file_from(ENTRYPOINT, &inputs.exe, 0o755)?;
    for n in elf::needed(&inputs.exe)? {
        rootfs.file_from(&n.host.to_string_lossy(), &n.host, 0o755)?;
        if n.wanted != n.host {
            rootfs.symlink(&n.wanted.to_string_lossy(), &n.host.to_string_lossy());
        }
    }
    if !inputs.ca_bundle.is_file() {
        bail!(
            "no CA bundle at {}: the image needs one to reach AWS and registries over TLS \
             (on Debian or Ubuntu: apt-get install -y ca-certificates)",
            inputs.ca_bundle.display()
        );
    }
    rootfs.file_from(CA_BUNDLE, &inputs.ca_bundle, 0o644)?;
    rootfs.bytes(
        "/etc/passwd",
        format!("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:{UID}:{UID}:nonroot:/home/nonroot:/sbin/nologin\n").into_bytes(),
        0o644,
    );
    rootfs.bytes(
        "/etc/group",
        format!("root:x:0:\nnonroot:x:{UID}:\n").into_bytes(),
        0o644,
    );
    rootfs.bytes("/etc/nsswitch.conf", b"hosts: files dns\n".to_vec(), 0o644);
    rootfs.dir("/tmp", 0o1777, 0);
    rootfs.dir("/home/nonroot", 0o700, UID);

    let dir = out.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let layer_tmp = tempfile::NamedTempFile::new_in(dir)?;
    let (diff_id, layer_digest, layer_size) = rootfs.write_layer(layer_tmp.as_file(), epoch)?;

    let created = time::OffsetDateTime::from_unix_timestamp(epoch as i64)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        });
    let mut labels = std::collections::HashMap::new();
    labels.insert(
        "org.opencontainers.image.title".to_string(),
        "threeport".to_string(),
    );
    labels.insert(
        "org.opencontainers.image.version".to_string(),
        inputs.version.clone(),
    );
    let config = ConfigBuilder::default()
        .user(format!("{UID}:{UID}"))
        .env(vec![
            "PATH=/usr/local/bin:/usr/bin:/bin".to_string(),
            format!("SSL_CERT_FILE={CA_BUNDLE}"),
        ])
        .entrypoint(vec![ENTRYPOINT.to_string()])
        .cmd(vec!["serve".to_string()])
        .working_dir("/")
        .labels(labels)
        .build()?;
    let mut image = ImageConfigurationBuilder::default()
        .architecture(arch())
        .os(Os::Linux)
        .config(config)
        .rootfs(
            RootFsBuilder::default()
                .typ("layers")
                .diff_ids(vec![diff_id])
                .build()?,
        )
        .build()?;
    if let Some(c) = created {
        image.set_created(Some(c));
    }
    let config_json = canonical_json(&image)?;
    let config_digest = sha256_digest(&config_json);
    let manifest = ImageManifestBuilder::default()
        .schema_version(SCHEMA_VERSION)
        .media_type(MediaType::ImageManifest)
        .config(
            DescriptorBuilder::default()
                .media_type(MediaType::ImageConfig)
                .digest(Digest::from_str(&config_digest)?)
                .size(config_json.len() as u64)
                .build()?,
        )
        .layers(vec![
            DescriptorBuilder::default()
                .media_type(MediaType::ImageLayerGzip)
                .digest(Digest::from_str(&layer_digest)?)
                .size(layer_size)
                .build()?,
        ])
        .build()?;
    let manifest_json = canonical_json(&manifest)?;
    let digest = sha256_digest(&manifest_json);
    let hex = digest.trim_start_matches("sha256:");
    let tag = format!("{}-{}", inputs.version, &hex[..12]);
    let reference = format!("{LOCAL_REPOSITORY}:{tag}");
    // The ref.name is the tag (what `skopeo … oci-archive:FILE:TAG` selects); containerd (and
    // so `kind load image-archive`) names the imported image from its own annotation.
    let mut annotations = std::collections::HashMap::new();
    annotations.insert("org.opencontainers.image.ref.name".to_string(), tag.clone());
    annotations.insert("io.containerd.image.name".to_string(), reference.clone());
    let index = ImageIndexBuilder::default()
        .schema_version(SCHEMA_VERSION)
        .media_type(MediaType::ImageIndex)
        .manifests(vec![
            DescriptorBuilder::default()
                .media_type(MediaType::ImageManifest)
                .digest(Digest::from_str(&digest)?)
                .size(manifest_json.len() as u64)
                .annotations(annotations)
                .build()?,
        ])
        .build()?;
    let index_json = canonical_json(&index)?;
    let layout_json = canonical_json(
        &OciLayoutBuilder::default()
            .image_layout_version("1.0.0")
            .build()?,
    )?;

    let out_tmp = tempfile::NamedTempFile::new_in(dir)?;
    {
        let mut tar = tar::Builder::new(io::BufWriter::new(out_tmp.as_file()));
        let mut add = |path: &str, size: u64, data: &mut dyn Read| -> Result<()> {
            let mut h = header(tar::EntryType::Regular, 0o644, 0, size, epoch);
            tar.append_data(&mut h, path, data)?;
            Ok(())
        };
        add(
            "oci-layout",
            layout_json.len() as u64,
            &mut layout_json.as_slice(),
        )?;
        add(
            "index.json",
            index_json.len() as u64,
            &mut index_json.as_slice(),
        )?;
        let mut blobs: Vec<(String, u64, Box<dyn Read>)> = vec![
            (
                config_digest.clone(),
                config_json.len() as u64,
                Box::new(io::Cursor::new(config_json.clone())),
            ),
            (
                digest.clone(),
                manifest_json.len() as u64,
                Box::new(io::Cursor::new(manifest_json.clone())),
            ),
            (
                layer_digest.clone(),
                layer_size,
                Box::new(std::fs::File::open(layer_tmp.path())?),
            ),
        ];
        blobs.sort_by(|a, b| a.0.cmp(&b.0));
        for (d, size, mut data) in blobs {
            add(
                &format!("blobs/sha256/{}", d.trim_start_matches("sha256:")),
                size,
                &mut data,
            )?;
        }
        tar.into_inner()?.flush()?;
    }
    // An image is not a secret (the temporary file's 0600 would keep it from other users).
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(out_tmp.path(), std::fs::Permissions::from_mode(0o644))?;
    }
    out_tmp
        .persist(out)
        .with_context(|| format!("writing {}", out.display()))?;
    Ok(Built {
        archive: out.to_path_buf(),
        digest,
        reference,
    })
}

/// The archive for this executable from the cache in `cache_dir`, built there first if it is
/// not: the key is the executable's own digest, so a new `tptctl` builds a new image and the
/// same one never builds twice.
pub fn cached(inputs: &Inputs, cache_dir: &Path) -> Result<Built> {
    let key = file_sha256(&inputs.exe)?;
    let dir = cache_dir.join(&key[..16]);
    let record = dir.join("image.json");
    if let Ok(text) = std::fs::read_to_string(&record)
        && let Ok(built) = serde_json::from_str::<Built>(&text)
        && built.archive.is_file()
    {
        return Ok(built);
    }
    let built = build(inputs, &dir.join("image.oci.tar"))?;
    threeport_pki::write_file(
        &record,
        serde_json::to_string_pretty(&built)?.as_bytes(),
        false,
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(built)
}

fn arch() -> Arch {
    match std::env::consts::ARCH {
        "x86_64" => Arch::Amd64,
        "aarch64" => Arch::ARM64,
        other => Arch::from(other),
    }
}

/// Reproducible builds' convention for "the time of everything".
fn source_date_epoch() -> u64 {
    std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// JSON with every object's keys sorted: oci-spec keeps annotations and labels in hash maps,
/// whose order changes from run to run, and a digest must not.
fn canonical_json<T: serde::Serialize>(v: &T) -> Result<Vec<u8>> {
    fn sort(v: Value) -> Value {
        match v {
            Value::Object(m) => {
                let sorted: BTreeMap<String, Value> =
                    m.into_iter().map(|(k, v)| (k, sort(v))).collect();
                Value::Object(sorted.into_iter().collect())
            }
            Value::Array(a) => Value::Array(a.into_iter().map(sort).collect()),
            other => other,
        }
    }
    Ok(serde_json::to_vec(&sort(serde_json::to_value(v)?))?)
}

fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

fn file_sha256(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut h = Sha256::new();
    io::copy(&mut f, &mut h)?;
    Ok(format!("{:x}", h.finalize()))
}

fn header(kind: tar::EntryType, mode: u32, owner: u32, size: u64, mtime: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(owner as u64);
    h.set_gid(owner as u64);
    h.set_size(size);
    h.set_mtime(mtime);
    h
}

/// A writer that hashes what passes through it.
struct Hashing<W> {
    inner: W,
    hash: Sha256,
    len: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

enum Entry {
    Dir { mode: u32, owner: u32 },
    File { source: Source, mode: u32 },
    Symlink { target: String },
}

enum Source {
    Host(PathBuf),
    Bytes(Vec<u8>),
}

/// The image's file tree, by absolute path; parents are added as root-owned 0755 directories.
#[derive(Default)]
struct Rootfs {
    entries: BTreeMap<String, Entry>,
}

impl Rootfs {
    fn parents(&mut self, path: &str) {
        let mut p = Path::new(path).parent();
        while let Some(dir) = p {
            let s = dir.to_string_lossy().into_owned();
            if s == "/" || s.is_empty() {
                break;
            }
            self.entries.entry(s).or_insert(Entry::Dir {
                mode: 0o755,
                owner: 0,
            });
            p = dir.parent();
        }
    }
    fn dir(&mut self, path: &str, mode: u32, owner: u32) {
        self.parents(path);
        self.entries.insert(path.into(), Entry::Dir { mode, owner });
    }
    fn file_from(&mut self, path: &str, host: &Path, mode: u32) -> Result<()> {
        if !host.is_file() {
            bail!("{} is not a file", host.display());
        }
        self.parents(path);
        self.entries.insert(
            path.into(),
            Entry::File {
                source: Source::Host(host.to_path_buf()),
                mode,
            },
        );
        Ok(())
    }
    fn bytes(&mut self, path: &str, data: Vec<u8>, mode: u32) {
        self.parents(path);
        self.entries.insert(
            path.into(),
            Entry::File {
                source: Source::Bytes(data),
                mode,
            },
        );
    }
    fn symlink(&mut self, path: &str, target: &str) {
        self.parents(path);
        self.entries.insert(
            path.into(),
            Entry::Symlink {
                target: target.into(),
            },
        );
    }

    /// Write the layer (tar, gzip) to `file`; returns the diff ID (digest of the tar), the
    /// blob digest (of the gzip) and the blob's size.
    fn write_layer(&self, file: &std::fs::File, epoch: u64) -> Result<(String, String, u64)> {
        let blob = Hashing {
            inner: io::BufWriter::new(file),
            hash: Sha256::new(),
            len: 0,
        };
        let gz = GzBuilder::new().mtime(0).write(blob, Compression::new(6));
        let plain = Hashing {
            inner: gz,
            hash: Sha256::new(),
            len: 0,
        };
        let mut tar = tar::Builder::new(plain);
        for (path, entry) in &self.entries {
            let name = path.trim_start_matches('/');
            match entry {
                Entry::Dir { mode, owner } => {
                    let mut h = header(tar::EntryType::Directory, *mode, *owner, 0, epoch);
                    tar.append_data(&mut h, format!("{name}/"), io::empty())?;
                }
                Entry::File { source, mode } => match source {
                    Source::Host(p) => {
                        let f = std::fs::File::open(p)
                            .with_context(|| format!("reading {}", p.display()))?;
                        let size = f.metadata()?.len();
                        let mut h = header(tar::EntryType::Regular, *mode, 0, size, epoch);
                        tar.append_data(&mut h, name, f)?;
                    }
                    Source::Bytes(b) => {
                        let mut h =
                            header(tar::EntryType::Regular, *mode, 0, b.len() as u64, epoch);
                        tar.append_data(&mut h, name, b.as_slice())?;
                    }
                },
                Entry::Symlink { target } => {
                    let mut h = header(tar::EntryType::Symlink, 0o777, 0, 0, epoch);
                    tar.append_link(&mut h, name, target)?;
                }
            }
        }
        let plain = tar.into_inner()?;
        let diff_id = format!("sha256:{:x}", plain.hash.finalize());
        let mut blob = plain.inner.finish()?;
        blob.flush()?;
        Ok((
            diff_id,
            format!("sha256:{:x}", blob.hash.finalize()),
            blob.len,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_keys_are_sorted_at_every_level() {
        let v = serde_json::json!({"b": 1, "a": {"d": 2, "c": [{"f": 3, "e": 4}]}});
        assert_eq!(
            String::from_utf8(canonical_json(&v).unwrap()).unwrap(),
            r#"{"a":{"c":[{"e":4,"f":3}],"d":2},"b":1}"#
        );
    }
}
