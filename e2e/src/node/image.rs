//! Container images built from local binaries, without a registry or a container engine.
//!
//! An image is written as a `docker save` archive (one layer tar, a config JSON and
//! `manifest.json`), which `ctr images import` reads. The layout is the Dockerfile's: the
//! binary at `/<name>` as the entrypoint, a numeric non-root user, no shell. Where the
//! Dockerfile starts from distroless `cc` (glibc), a dynamically linked binary brings the shared
//! libraries `ldd` names, at the same paths.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;
use serde_json::json;

/// The UID:GID the images run as: distroless "nonroot", what the chart's securityContext says.
pub const NONROOT: &str = "65532:65532";

/// A file of the image: copied from `source` (symlinks followed) to `path` inside the image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageFile {
    pub source: PathBuf,
    /// Absolute path inside the image.
    pub path: String,
}

/// What to build.
#[derive(Clone, Debug)]
pub struct ImageSpec {
    /// The name containerd stores it under, e.g. `ghcr.io/example/podscaler/operator:0.1.0`.
    pub reference: String,
    pub entrypoint: Vec<String>,
    pub files: Vec<ImageFile>,
}

impl ImageSpec {
    /// An image whose entrypoint is `binary`, at `/<file name>`, with the shared libraries it
    /// links (none for a static binary).
    pub fn for_binary(reference: &str, binary: &Path) -> anyhow::Result<Self> {
        let name = binary
            .file_name()
            .and_then(|name| name.to_str())
            .with_context(|| format!("{} has no file name", binary.display()))?;
        let entry = format!("/{name}");
        let mut files = vec![ImageFile {
            source: binary.to_path_buf(),
            path: entry.clone(),
        }];
        files.extend(shared_libraries(binary)?);
        Ok(Self {
            reference: reference.to_owned(),
            entrypoint: vec![entry],
            files,
        })
    }

    /// Writes the image as a `docker save` archive at `out`.
    pub fn write_archive(&self, out: &Path) -> anyhow::Result<()> {
        let layer = self
            .layer()
            .with_context(|| format!("the layer of {}", self.reference))?;
        let diff_id = sha256_hex(&layer);
        let config = serde_json::to_vec(&json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {"Entrypoint": self.entrypoint, "User": NONROOT},
            "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{diff_id}")]},
        }))?;
        let config_name = format!("{}.json", sha256_hex(&config));
        let layer_name = format!("{diff_id}/layer.tar");
        let manifest = serde_json::to_vec(&json!([{
            "Config": config_name,
            "RepoTags": [self.reference],
            "Layers": [layer_name],
        }]))?;
        let file =
            std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
        let mut archive = tar::Builder::new(std::io::BufWriter::new(file));
        for (name, data) in [
            (layer_name.as_str(), &layer),
            (config_name.as_str(), &config),
            ("manifest.json", &manifest),
        ] {
            append(&mut archive, name, data, 0o644)?;
        }
        archive
            .into_inner()
            .context("finishing the archive")?
            .flush()
            .with_context(|| format!("writing {}", out.display()))
    }

    /// The one layer: every parent directory, then the files, owned by root with mtime 0 so
    /// the same inputs give the same digest.
    fn layer(&self) -> anyhow::Result<Vec<u8>> {
        let mut layer = tar::Builder::new(Vec::new());
        let mut directories: Vec<String> = vec!["tmp".to_owned()];
        for file in &self.files {
            let relative = file.path.trim_start_matches('/');
            let mut parent = Path::new(relative).parent();
            while let Some(dir) = parent.filter(|dir| !dir.as_os_str().is_empty()) {
                directories.push(dir.to_string_lossy().into_owned());
                parent = dir.parent();
            }
        }
        directories.sort();
        directories.dedup();
        for dir in &directories {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(tar::EntryType::Directory);
            // /tmp as on any root filesystem; the chart mounts its writable dirs over it.
            header.set_mode(if dir == "tmp" { 0o1777 } else { 0o755 });
            header.set_size(0);
            header.set_mtime(0);
            layer.append_data(&mut header, format!("{dir}/"), std::io::empty())?;
        }
        for file in &self.files {
            let data = std::fs::read(&file.source)
                .with_context(|| format!("reading {}", file.source.display()))?;
            append(&mut layer, file.path.trim_start_matches('/'), &data, 0o755)?;
        }
        layer.into_inner().context("finishing the layer")
    }
}

fn append<W: std::io::Write>(
    archive: &mut tar::Builder<W>,
    name: &str,
    data: &[u8],
    mode: u32,
) -> anyhow::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_size(data.len() as u64);
    header.set_mode(mode);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    archive
        .append_data(&mut header, name, data)
        .with_context(|| format!("adding {name}"))
}

fn sha256_hex(data: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, data)
        .as_ref()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// The shared libraries `binary` loads, as `ldd` resolves them here; none for a static binary.
fn shared_libraries(binary: &Path) -> anyhow::Result<Vec<ImageFile>> {
    let output = Command::new("ldd")
        .arg(binary)
        .output()
        .context("running ldd")?;
    // ldd exits 1 with "not a dynamic executable" for static binaries (Go's, with CGO off).
    if !output.status.success() {
        return Ok(Vec::new());
    }
    Ok(
        libraries_in_ldd_output(&String::from_utf8_lossy(&output.stdout))
            .into_iter()
            .map(|path| ImageFile {
                path: path.to_string_lossy().into_owned(),
                source: path,
            })
            .collect(),
    )
}

/// The absolute paths in `ldd` output: `libc.so.6 => /lib/…/libc.so.6 (0x…)` and the loader's
/// own `/lib64/ld-linux-x86-64.so.2 (0x…)`; not the kernel's `linux-vdso.so.1`.
fn libraries_in_ldd_output(output: &str) -> Vec<PathBuf> {
    output
        .lines()
        .filter_map(|line| {
            let target = line.split_once("=>").map_or(line, |(_, target)| target);
            let path = target.split_whitespace().next()?;
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_output_gives_the_libraries_and_the_loader_but_not_the_vdso() {
        let output = "\tlinux-vdso.so.1 (0x00007ffc0d5f5000)\n\
                      \tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f0c)\n\
                      \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f0b)\n\
                      \t/lib64/ld-linux-x86-64.so.2 (0x00007f0d)\n";
        assert_eq!(
            libraries_in_ldd_output(output),
            [
                "/lib/x86_64-linux-gnu/libgcc_s.so.1",
                "/lib/x86_64-linux-gnu/libc.so.6",
                "/lib64/ld-linux-x86-64.so.2"
            ]
            .map(PathBuf::from)
        );
    }

    #[test]
    fn an_archive_names_its_layer_by_digest_and_tags_the_reference() {
        let dir = tempfile::tempdir().expect("a directory");
        let binary = dir.path().join("tool");
        std::fs::write(&binary, b"#!binary").expect("a file");
        let spec = ImageSpec {
            reference: "example.com/tool:1".to_owned(),
            entrypoint: vec!["/tool".to_owned()],
            files: vec![ImageFile {
                source: binary,
                path: "/usr/bin/tool".to_owned(),
            }],
        };
        let out = dir.path().join("image.tar");
        spec.write_archive(&out).expect("an archive");

        let mut archive = tar::Archive::new(std::fs::File::open(&out).expect("the archive"));
        let mut names = Vec::new();
        let mut manifest = None;
        for entry in archive.entries().expect("entries") {
            let mut entry = entry.expect("an entry");
            let name = entry.path().expect("a path").to_string_lossy().into_owned();
            if name == "manifest.json" {
                manifest = Some(serde_json::from_reader::<_, serde_json::Value>(&mut entry));
            }
            names.push(name);
        }
        let manifest = manifest.expect("a manifest.json").expect("JSON");
        assert_eq!(manifest[0]["RepoTags"], json!(["example.com/tool:1"]));
        let layer = manifest[0]["Layers"][0].as_str().expect("a layer name");
        assert!(names.iter().any(|name| name == layer), "{names:?}");
        assert_eq!(layer.len(), 64 + "/layer.tar".len(), "{layer}");
    }
}
