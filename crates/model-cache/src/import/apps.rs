//! Finding the models other apps hold, as [`Candidate`]s, without changing anything there.
//!
//! - **Ollama** (`~/.ollama/models`): `manifests/<host>/<namespace>/<model>/<tag>` are JSON
//!   image manifests (`schemaVersion` 2, `layers` with `mediaType`, `digest`, `size`); the layer
//!   of type `application/vnd.ollama.image.model` is the GGUF file, stored as
//!   `blobs/sha256-<hex>` (a projector is `application/vnd.ollama.image.projector`). A model
//!   pulled as `hf.co/<org>/<repo>:<quant>` names its Hub repo.
//! - **LM Studio** (`~/.lmstudio/models`, formerly `~/.cache/lm-studio/models`):
//!   `<publisher>/<model>/<file>.gguf`; the two folders usually are the Hub repo.
//! - **llama.cpp** (`LLAMA_CACHE`, `~/.cache/llama.cpp`): flat `<org>_<repo>_<file>.gguf`
//!   files, each with a `<file>.json` beside it whose `url` is the Hub's `/resolve/` URL.
//!
//! A name read from another app is only ever a *suggestion*: a file goes into the Hub layout
//! under a repo only when its sha256 matches that repo's listing.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{Candidate, CandidateFile, ImportError, ImportOrigin};

const OLLAMA_MODEL: &str = "application/vnd.ollama.image.model";
const OLLAMA_PROJECTOR: &str = "application/vnd.ollama.image.projector";
const OLLAMA_DEFAULT_HOST: &str = "registry.ollama.ai";
/// Ollama's own blob folder (`sha256-<hex>` files), not the hub cache's `blobs/`.
const OLLAMA_BLOBS: &str = "blobs";

/// An Ollama image manifest (the fields read here).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OllamaManifest {
    schema_version: u32,
    layers: Vec<OllamaLayer>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OllamaLayer {
    media_type: String,
    digest: String,
    size: u64,
}

/// The models of an Ollama store (`root` is the `models` folder).
pub(crate) fn ollama(root: &Path) -> Result<Vec<Candidate>, ImportError> {
    let manifests = root.join("manifests");
    if !manifests.is_dir() {
        return Err(ImportError::NotAnAppStore {
            origin: ImportOrigin::Ollama,
            path: root.to_path_buf(),
            expected: "a `manifests` folder",
        });
    }
    let mut found = Vec::new();
    for path in files_under(&manifests, 4)? {
        let Ok(rel) = path.strip_prefix(&manifests) else {
            continue;
        };
        let parts: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        let [host, namespace, model, tag] = parts.as_slice() else {
            continue;
        };
        let text = std::fs::read(&path).map_err(|e| ImportError::io("read", &path, e))?;
        let manifest: OllamaManifest = match serde_json::from_slice(&text) {
            Ok(m) => m,
            Err(error) => {
                tracing::debug!(path = %path.display(), %error, "Not an Ollama manifest");
                continue;
            }
        };
        if manifest.schema_version != 2 {
            continue;
        }
        let name = if host == OLLAMA_DEFAULT_HOST && namespace == "library" {
            format!("{model}:{tag}")
        } else {
            format!("{host}/{namespace}/{model}:{tag}")
        };
        let mut files = Vec::new();
        for layer in &manifest.layers {
            let stem = match layer.media_type.as_str() {
                OLLAMA_MODEL => format!("{model}-{tag}"),
                OLLAMA_PROJECTOR => format!("mmproj-{model}-{tag}"),
                _ => continue,
            };
            let Some(hex) = layer.digest.strip_prefix("sha256:") else {
                continue;
            };
            if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                continue;
            }
            let blob = root.join(OLLAMA_BLOBS).join(format!("sha256-{hex}"));
            files.push(CandidateFile {
                source: blob,
                name: format!("{stem}.gguf"),
                size: layer.size,
                claimed_sha256: Some(hex.to_ascii_lowercase()),
            });
        }
        if files.is_empty() {
            continue;
        }
        let suggested_repo = matches!(host.as_str(), "hf.co" | "huggingface.co")
            .then(|| format!("{namespace}/{model}"));
        found.push(Candidate {
            name,
            origin: ImportOrigin::Ollama,
            files,
            suggested_repo,
        });
    }
    found.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(found)
}

/// The models of an LM Studio models folder: one per `<publisher>/<model>` folder.
pub(crate) fn lm_studio(root: &Path) -> Result<Vec<Candidate>, ImportError> {
    if !root.is_dir() {
        return Err(ImportError::NotAnAppStore {
            origin: ImportOrigin::LmStudio,
            path: root.to_path_buf(),
            expected: "a folder of `publisher/model/file.gguf`",
        });
    }
    let mut found = Vec::new();
    for publisher in subfolders(root)? {
        for model in subfolders(&publisher)? {
            let mut files = Vec::new();
            for path in files_under(&model, 1)? {
                if has_extension(&path, "gguf") {
                    files.push(candidate_file(&model, &path)?);
                }
            }
            if files.is_empty() {
                continue;
            }
            let publisher_name = file_name(&publisher);
            let model_name = file_name(&model);
            found.push(Candidate {
                name: format!("{publisher_name}/{model_name}"),
                origin: ImportOrigin::LmStudio,
                files,
                suggested_repo: Some(format!("{publisher_name}/{model_name}")),
            });
        }
    }
    found.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(found)
}

/// The `<file>.json` llama.cpp writes beside each download.
#[derive(Debug, Deserialize)]
struct LlamaCppMeta {
    url: Option<String>,
}

/// The models of a llama.cpp cache folder: one per `.gguf` file.
pub(crate) fn llama_cpp(root: &Path) -> Result<Vec<Candidate>, ImportError> {
    if !root.is_dir() {
        return Err(ImportError::NotAnAppStore {
            origin: ImportOrigin::LlamaCpp,
            path: root.to_path_buf(),
            expected: "a folder of `.gguf` files",
        });
    }
    let mut found = Vec::new();
    for path in files_under(root, 1)? {
        if !has_extension(&path, "gguf") {
            continue;
        }
        let mut meta_path = path.clone().into_os_string();
        meta_path.push(".json");
        let url = std::fs::read(&meta_path)
            .ok()
            .and_then(|text| serde_json::from_slice::<LlamaCppMeta>(&text).ok())
            .and_then(|meta| meta.url);
        let from_url = url.as_deref().and_then(repo_and_file_of_resolve_url);
        let file = candidate_file(root, &path)?;
        let (suggested_repo, name) = match from_url {
            Some((repo, file_name)) => (Some(repo), file_name),
            None => (None, file.name.clone()),
        };
        found.push(Candidate {
            name: name.clone(),
            origin: ImportOrigin::LlamaCpp,
            files: vec![CandidateFile { name, ..file }],
            suggested_repo,
        });
    }
    found.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(found)
}

/// Files or folders the user named: a file is one model; a folder is one model made of the
/// model files in it (subfolders included: weights, configs, tokenizers, the model card; see
/// [`MODEL_FILE_EXTENSIONS`]), and must hold a GGUF or safetensors file.
pub(crate) fn paths(paths: &[PathBuf]) -> Result<Vec<Candidate>, ImportError> {
    let mut found = Vec::new();
    for path in paths {
        let meta = std::fs::metadata(path).map_err(|e| ImportError::io("read", path, e))?;
        if meta.is_file() {
            if !is_weights(path) {
                return Err(ImportError::NotWeights { path: path.clone() });
            }
            let parent = path.parent().unwrap_or(Path::new(""));
            let file = candidate_file(parent, path)?;
            found.push(Candidate {
                name: file.name.clone(),
                origin: ImportOrigin::Files,
                files: vec![file],
                suggested_repo: None,
            });
            continue;
        }
        let mut files = Vec::new();
        for file in files_under(path, 8)? {
            if is_model_file(&file) {
                files.push(candidate_file(path, &file)?);
            }
        }
        if !files.iter().any(|f| is_weights(Path::new(&f.name))) {
            return Err(ImportError::NotWeights { path: path.clone() });
        }
        files.sort_by(|a, b| a.name.cmp(&b.name));
        found.push(Candidate {
            name: file_name(path),
            origin: ImportOrigin::Files,
            files,
            suggested_repo: None,
        });
    }
    Ok(found)
}

/// `(org/repo, path)` of a Hub `/resolve/` URL: `https://host/org/repo/resolve/rev/path`.
fn repo_and_file_of_resolve_url(url: &str) -> Option<(String, String)> {
    let parsed = url::Url::parse(url).ok()?;
    let segments: Vec<&str> = parsed.path_segments()?.collect();
    match segments.as_slice() {
        [org, repo, "resolve", _rev, rest @ ..] if !rest.is_empty() => {
            Some((format!("{org}/{repo}"), rest.join("/")))
        }
        _ => None,
    }
}

/// What a model folder's files are named, besides the weights: configs and tokenizers
/// (`json`, `model`, `tiktoken`, `txt`, `jinja`) and the model card (`md`). Anything else in the
/// folder is not part of the import.
pub(crate) const MODEL_FILE_EXTENSIONS: &[&str] = &[
    "gguf",
    "safetensors",
    "json",
    "model",
    "tiktoken",
    "txt",
    "jinja",
    "md",
];

fn is_model_file(path: &Path) -> bool {
    MODEL_FILE_EXTENSIONS
        .iter()
        .any(|ext| has_extension(path, ext))
}

fn is_weights(path: &Path) -> bool {
    has_extension(path, "gguf") || has_extension(path, "safetensors")
}

fn has_extension(path: &Path, ext: &str) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case(ext))
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
}

fn candidate_file(root: &Path, path: &Path) -> Result<CandidateFile, ImportError> {
    let meta = std::fs::metadata(path).map_err(|e| ImportError::io("read", path, e))?;
    let rel = path.strip_prefix(root).unwrap_or(path);
    let name = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/");
    Ok(CandidateFile {
        source: path.to_path_buf(),
        name,
        size: meta.len(),
        claimed_sha256: None,
    })
}

fn subfolders(dir: &Path) -> Result<Vec<PathBuf>, ImportError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| ImportError::io("list", dir, e))? {
        let entry = entry.map_err(|e| ImportError::io("list", dir, e))?;
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        if !hidden && entry.file_type().is_ok_and(|t| t.is_dir()) {
            out.push(entry.path());
        }
    }
    out.sort();
    Ok(out)
}

/// Regular files under `dir` down to `depth` levels (1: only `dir` itself), hidden names
/// skipped, symlinks not followed.
fn files_under(dir: &Path, depth: usize) -> Result<Vec<PathBuf>, ImportError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| ImportError::io("list", dir, e))? {
        let entry = entry.map_err(|e| ImportError::io("list", dir, e))?;
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let kind = entry
            .file_type()
            .map_err(|e| ImportError::io("read", &entry.path(), e))?;
        if kind.is_file() {
            out.push(entry.path());
        } else if kind.is_dir() && depth > 1 {
            out.extend(files_under(&entry.path(), depth - 1)?);
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resolve_url_names_the_repo_and_the_file() {
        assert_eq!(
            repo_and_file_of_resolve_url(
                "https://huggingface.co/org/m-GGUF/resolve/main/sub/m-Q4_K_M.gguf"
            ),
            Some(("org/m-GGUF".into(), "sub/m-Q4_K_M.gguf".into()))
        );
        assert_eq!(repo_and_file_of_resolve_url("https://x/y"), None);
    }

    #[test]
    fn an_ollama_manifest_gives_its_model_layer_and_an_hf_repo() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let hex = "a".repeat(64);
        let manifest_dir = root.join("manifests/hf.co/org/Model-GGUF");
        std::fs::create_dir_all(&manifest_dir).unwrap();
        std::fs::create_dir_all(root.join("blobs")).unwrap();
        std::fs::write(
            manifest_dir.join("Q4_K_M"),
            format!(
                r#"{{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json",
                "config":{{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"sha256:{c}","size":10}},
                "layers":[{{"mediaType":"application/vnd.ollama.image.model","digest":"sha256:{hex}","size":4}},
                {{"mediaType":"application/vnd.ollama.image.template","digest":"sha256:{c}","size":10}}]}}"#,
                c = "b".repeat(64)
            ),
        )
        .unwrap();
        let found = ollama(root).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].name, "hf.co/org/Model-GGUF:Q4_K_M");
        assert_eq!(found[0].suggested_repo.as_deref(), Some("org/Model-GGUF"));
        assert_eq!(found[0].files.len(), 1);
        assert_eq!(found[0].files[0].claimed_sha256.as_deref(), Some(&*hex));
        assert!(
            found[0].files[0]
                .source
                .ends_with(format!("blobs/sha256-{hex}"))
        );
    }

    #[test]
    fn a_folder_without_weights_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("notes.txt"), b"x").unwrap();
        assert!(matches!(
            paths(&[dir.path().to_path_buf()]),
            Err(ImportError::NotWeights { .. })
        ));
    }
}
