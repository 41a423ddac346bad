//! `model_cache._native`: the Model Cache engine as a Python extension module (PyO3, abi3 for
//! CPython 3.9 and later). The package `model_cache` (`python/model_cache/`) re-exports it and
//! adds the `huggingface_hub`-shaped helpers written in Python.
//!
//! [`Cache`] owns one `model_cache::Engine` and a small Tokio runtime. Every call that waits
//! (the network, hashing, the index) runs on that runtime with the GIL released; a pull's
//! progress events come back through a channel and the `progress` callable is called on the
//! calling thread, between waits, where Ctrl-C is noticed too: the transfer is paused (every
//! recorded chunk kept) and `KeyboardInterrupt` raised, and the next pull resumes it.
//!
//! Engine errors become exceptions by their `ErrorKind` ([`raise`]): `RepoNotFound`,
//! `GatedRepo`, `OfflineMiss`, `DiskFull`, `IntegrityError`, all subclasses of
//! `ModelCacheError`, which carries `kind` (the stable snake_case name) and `hints`.
//!
//! [`NativeHost`] is the browser native-messaging host's request handling for
//! `model_cache.native_host`, the same code `mcache native-host` runs.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use model_cache::download::{ChannelReporter, DownloadEvent};
use model_cache::engine::{Engine, EngineOptions, PullRequest};
use model_cache::error::{ErrorKind, Hint};
use model_cache::secret::Token;
use model_cache::settings::CacheOrigin;
use model_cache::{RepoId, Settings};
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use serde::Serialize;
use tokio::runtime::Runtime;
use tokio::sync::mpsc;

create_exception!(
    _native,
    ModelCacheError,
    PyException,
    "An error of the Model Cache engine. `kind` is its stable snake_case name (`network`, `not_cached`, ...); `hints` lists actions that may help, as dicts with an `action` key."
);
create_exception!(
    _native,
    RepoNotFound,
    ModelCacheError,
    "The repository does not exist, or it is private and no token with access to it was given."
);
create_exception!(
    _native,
    GatedRepo,
    ModelCacheError,
    "The repository is gated: accept its conditions on the Hub and use a token with access."
);
create_exception!(
    _native,
    OfflineMiss,
    ModelCacheError,
    "Offline mode is on and the cache does not hold what was asked."
);
create_exception!(
    _native,
    DiskFull,
    ModelCacheError,
    "The disk holding the cache is full."
);
create_exception!(
    _native,
    IntegrityError,
    ModelCacheError,
    "Downloaded bytes did not match the hash the Hub publishes for the file."
);

/// How long the calling thread waits, GIL released, before it looks for Ctrl-C again.
const SIGNAL_POLL: Duration = Duration::from_millis(100);

/// How long an interrupted pull waits for the transfer to confirm its pause.
const PAUSE_GRACE: Duration = Duration::from_secs(3);

/// A Hugging Face cache managed by Model Cache.
///
/// Cache(cache_dir=None, endpoint=None, token=None, offline=False, data_dir=None)
///
/// Every argument left out is read from the environment as `huggingface_hub` reads it
/// (`HF_HUB_CACHE`, `HF_HOME`, `HF_ENDPOINT`, `HF_TOKEN`, `HF_HUB_OFFLINE`), then from Model
/// Cache's saved settings. `data_dir` is Model Cache's own folder (the index, settings), by
/// default `MODEL_CACHE_DATA_DIR` or the platform's app-data folder.
#[pyclass(module = "model_cache._native", frozen)]
struct Cache {
    engine: Engine,
    runtime: Arc<Runtime>,
}

#[pymethods]
impl Cache {
    #[new]
    #[pyo3(signature = (cache_dir=None, endpoint=None, token=None, offline=false, data_dir=None))]
    fn new(
        py: Python<'_>,
        cache_dir: Option<PathBuf>,
        endpoint: Option<String>,
        token: Option<String>,
        offline: bool,
        data_dir: Option<PathBuf>,
    ) -> PyResult<Self> {
        let settings = settings(cache_dir, endpoint, token, offline, data_dir)?;
        let runtime = Arc::new(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("model-cache")
                .enable_all()
                .build()
                .map_err(|error| {
                    ModelCacheError::new_err(format!("Cannot start the async runtime: {error}"))
                })?,
        );
        let options = EngineOptions {
            // Like `mcache`'s commands: the queue belongs to the app or `mcache serve`.
            run_queue: false,
            ..EngineOptions::system()
        };
        let engine = py
            .detach(|| {
                let _entered = runtime.enter();
                Engine::open(settings, options)
            })
            .map_err(|error| raise(py, &error))?;
        Ok(Cache { engine, runtime })
    }

    /// The Hub cache folder in use.
    #[getter]
    fn cache_dir(&self) -> PathBuf {
        self.engine.settings().hub_cache.clone()
    }

    /// The Hub endpoint in use.
    #[getter]
    fn endpoint(&self) -> String {
        self.engine.settings().endpoint.clone()
    }

    /// Whether the network is off: everything comes from the cache.
    #[getter]
    fn offline(&self) -> bool {
        self.engine.settings().offline
    }

    /// The variants of a repo (quantizations, formats), with sizes, fit for this machine and
    /// the recommended one, as a dict.
    #[pyo3(signature = (repo, revision="main"))]
    fn variants(&self, py: Python<'_>, repo: &str, revision: &str) -> PyResult<Py<PyAny>> {
        let repo = parse_repo(repo)?;
        let report = self
            .block_on(py, self.engine.variants(&repo, Some(revision)))
            .map_err(|error| raise(py, &error))?;
        to_python(py, &report)
    }

    /// Downloads a repo (a variant, files matching `include`, or what the engine picks) into
    /// the cache and returns the snapshot folder's path.
    ///
    /// `quant` names a quantization (`Q4_K_M`) or variant; `include` and `exclude` are globs;
    /// `files` names exact paths.
    /// `progress`, when given, is called on this thread with each progress event as a dict
    /// (`{"event": "bytes", "path": ..., "done": ..., "total": ...}`, ...). Ctrl-C pauses the
    /// transfer, keeping every recorded chunk, and raises `KeyboardInterrupt`; the next pull of
    /// the same files resumes it.
    #[pyo3(signature = (repo, quant=None, include=None, revision="main", progress=None, exclude=None, files=None))]
    #[expect(clippy::too_many_arguments, reason = "the Python signature")]
    fn pull(
        &self,
        py: Python<'_>,
        repo: &str,
        quant: Option<String>,
        include: Option<Vec<String>>,
        revision: &str,
        progress: Option<Py<PyAny>>,
        exclude: Option<Vec<String>>,
        files: Option<Vec<String>>,
    ) -> PyResult<PathBuf> {
        let repo = parse_repo(repo)?;
        let request = PullRequest {
            repo: Some(repo.clone()),
            revision: Some(revision.to_string()),
            variant: quant,
            include: include.unwrap_or_default(),
            exclude: exclude.unwrap_or_default(),
            files: files.unwrap_or_default(),
            ..PullRequest::default()
        };
        let plan = self
            .block_on(py, self.engine.plan_pull(&request))
            .map_err(|error| self.pull_error(py, &request, &error))?;

        let (sender, mut events) = mpsc::unbounded_channel();
        let handle = {
            let _entered = self.runtime.enter();
            self.engine
                .download(&plan, Arc::new(ChannelReporter(sender)))
        };
        let control = handle.control().clone();
        let mut wait = self.runtime.spawn(handle.wait());
        let call = |py: Python<'_>, event: &DownloadEvent| -> PyResult<()> {
            if let Some(callback) = &progress {
                callback.bind(py).call1((to_python(py, event)?,))?;
            }
            Ok(())
        };
        let result = loop {
            let step = py.detach(|| {
                self.runtime.block_on(async {
                    tokio::select! {
                        biased;
                        result = &mut wait => Step::Done(result),
                        Some(event) = events.recv() => Step::Event(Box::new(event)),
                        () = tokio::time::sleep(SIGNAL_POLL) => Step::Tick,
                    }
                })
            });
            // Signals are checked at every wake-up: a steady stream of events must not hide
            // a Ctrl-C.
            let interrupted = match step {
                Step::Done(result) => break result,
                Step::Event(event) => call(py, &event).and_then(|()| py.check_signals()).err(),
                Step::Tick => py.check_signals().err(),
            };
            if let Some(error) = interrupted {
                // Pause, not cancel: a cancelled transfer deletes its partial files; a paused
                // one has recorded every finished chunk, which the next pull reuses.
                control.pause();
                py.detach(|| {
                    self.runtime.block_on(async {
                        let _ = tokio::time::timeout(PAUSE_GRACE, async {
                            while let Some(event) = events.recv().await {
                                if matches!(event, DownloadEvent::Paused { .. }) {
                                    break;
                                }
                            }
                        })
                        .await;
                    })
                });
                wait.abort();
                return Err(error);
            }
        };
        while let Ok(event) = events.try_recv() {
            call(py, &event)?;
        }
        let summary = match result {
            Ok(Ok(summary)) => summary,
            Ok(Err(error)) => return Err(self.pull_error(py, &request, &error)),
            Err(error) => {
                return Err(ModelCacheError::new_err(format!(
                    "The download task stopped: {error}"
                )));
            }
        };
        Ok(self
            .engine
            .cache()
            .repo(&plan.repo)
            .snapshot_dir(&summary.commit))
    }

    /// The path of a cached file (`revision` a branch, tag or commit). Raises `OfflineMiss`
    /// in offline mode, `ModelCacheError` (kind `not_cached`) otherwise, when it is not cached.
    #[pyo3(signature = (repo, file, revision="main"))]
    fn path(&self, py: Python<'_>, repo: &str, file: &str, revision: &str) -> PyResult<PathBuf> {
        let repo = parse_repo(repo)?;
        py.detach(|| self.engine.path(&repo, revision, file))
            .map_err(|error| {
                if self.engine.settings().offline
                    && matches!(
                        model_cache::error::diagnose(&error).map(|d| d.kind()),
                        Some(ErrorKind::NotCached | ErrorKind::EntryNotFound)
                    )
                {
                    let err = OfflineMiss::new_err(format!(
                        "Offline mode is on and `{file}` of `{repo}` at `{revision}` is not in the cache"
                    ));
                    annotate(py, &err, Some(ErrorKind::OfflineMiss), &[Hint::GoOnline]);
                    return err;
                }
                raise(py, &error)
            })
    }

    /// The cached repos, each with its revisions, sizes and snapshot folders, as dicts.
    fn ls(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let repos = py
            .detach(|| self.engine.cache_list())
            .map_err(|error| raise(py, &error))?;
        to_python(py, &repos)
    }

    /// Removes a cached repo (or one revision of it) and returns what was removed
    /// (`{"paths": [...], "bytes_freed": N}`). A repo a download is using is refused (kind
    /// `in_use`) unless `force`; `dry_run` only says what would go.
    #[pyo3(signature = (repo, revision=None, force=false, dry_run=false))]
    fn rm(
        &self,
        py: Python<'_>,
        repo: &str,
        revision: Option<&str>,
        force: bool,
        dry_run: bool,
    ) -> PyResult<Py<PyAny>> {
        let repo = parse_repo(repo)?;
        let removal = py
            .detach(|| self.engine.delete(&repo, revision, force, dry_run))
            .map_err(|error| raise(py, &error))?;
        to_python(py, &removal)
    }

    /// Hashes cached files again (of one repo, or all) and reports the ones that no longer
    /// match (`{"checked": N, "corrupt": [...]}`).
    #[pyo3(signature = (repo=None))]
    fn verify(&self, py: Python<'_>, repo: Option<&str>) -> PyResult<Py<PyAny>> {
        let repo = repo.map(parse_repo).transpose()?;
        let report = self
            .block_on(py, self.engine.verify(repo.as_ref()))
            .map_err(|error| raise(py, &error))?;
        to_python(py, &report)
    }

    /// Counters (bytes downloaded, from cache, hits, misses), the cache's health and the last
    /// finished downloads, as a dict.
    fn stats(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let stats = py
            .detach(|| self.engine.stats())
            .map_err(|error| raise(py, &error))?;
        to_python(py, &stats)
    }

    /// Stops background work; the object is not to be used afterwards.
    fn close(&self) {
        self.engine.shutdown();
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __exit__(
        &self,
        _kind: Option<Py<PyAny>>,
        _value: Option<Py<PyAny>>,
        _traceback: Option<Py<PyAny>>,
    ) {
        self.close();
    }

    fn __repr__(&self) -> String {
        format!(
            "Cache(cache_dir={:?}, endpoint={:?}, offline={})",
            self.engine.settings().hub_cache.display().to_string(),
            self.engine.settings().endpoint,
            if self.engine.settings().offline {
                "True"
            } else {
                "False"
            }
        )
    }
}

/// One wake-up of a pull's calling thread.
enum Step<T> {
    Done(T),
    Event(Box<DownloadEvent>),
    Tick,
}

impl Cache {
    /// Runs `future` on the runtime with the GIL released.
    fn block_on<F>(&self, py: Python<'_>, future: F) -> F::Output
    where
        F: std::future::Future + Send,
        F::Output: Send,
    {
        py.detach(|| self.runtime.block_on(future))
    }

    /// In offline mode the engine lists a repo from the cache, so "not cached", "no such
    /// variant" or "nothing selected" mean "not downloaded yet": the offline miss it is.
    fn pull_error(
        &self,
        py: Python<'_>,
        request: &PullRequest,
        error: &(dyn std::error::Error + 'static),
    ) -> PyErr {
        let kind = model_cache::error::diagnose(error).map(|d| d.kind());
        if self.engine.settings().offline
            && matches!(
                kind,
                Some(ErrorKind::NotCached | ErrorKind::NoSuchVariant | ErrorKind::NothingSelected)
            )
        {
            let repo = request
                .repo
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default();
            let err = OfflineMiss::new_err(format!(
                "Offline mode is on and `{repo}` at `{}` is not in the cache ({error})",
                request.revision.as_deref().unwrap_or("main")
            ));
            annotate(py, &err, Some(ErrorKind::OfflineMiss), &[Hint::GoOnline]);
            return err;
        }
        raise(py, error)
    }
}

/// The engine's settings for a `Cache`: the environment, the saved preferences, then the
/// arguments.
fn settings(
    cache_dir: Option<PathBuf>,
    endpoint: Option<String>,
    token: Option<String>,
    offline: bool,
    data_dir: Option<PathBuf>,
) -> PyResult<Settings> {
    let home = directories::BaseDirs::new().map(|d| d.home_dir().to_path_buf());
    let lookup = |name: &str| std::env::var(name).ok();
    let platform = model_cache::env::platform_data_dir(
        model_cache::env::Os::current(),
        &lookup,
        home.as_deref(),
    );
    let default_data_dir = model_cache::env::app_data_dir(platform.as_deref());
    let mut settings = model_cache::env::settings_from_env(lookup, home, default_data_dir);
    if let Some(dir) = data_dir {
        settings.data_dir = std::path::absolute(&dir).unwrap_or(dir);
    }
    model_cache::engine::Preferences::load_checked(&settings.data_dir)
        .0
        .apply(&mut settings);
    if let Some(dir) = cache_dir {
        settings.hub_cache = std::path::absolute(&dir).unwrap_or(dir);
        settings.hub_cache_origin = CacheOrigin::Flag;
    }
    if let Some(endpoint) = endpoint {
        let endpoint = endpoint.trim_end_matches('/');
        if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
            return Err(PyValueError::new_err(format!(
                "endpoint `{endpoint}` is not an http(s) URL; pass a base URL such as `https://huggingface.co`"
            )));
        }
        settings.endpoint = endpoint.to_string();
    }
    if let Some(token) = token {
        settings.token = Some(Token::new(token).ok_or_else(|| {
            PyValueError::new_err("token is empty; pass a token such as `hf_...`")
        })?);
    }
    if offline {
        settings.offline = true;
    }
    settings.user_agent = format!("model-cache-python/{}", env!("CARGO_PKG_VERSION"));
    Ok(settings)
}

fn parse_repo(repo: &str) -> PyResult<RepoId> {
    RepoId::parse_user_input(repo)
        .map_err(|error| PyValueError::new_err(format!("{error}; a repo id looks like `org/name`")))
}

/// A serialisable value as Python objects (dicts, lists, str, int, float, bool, None).
fn to_python(py: Python<'_>, value: &impl Serialize) -> PyResult<Py<PyAny>> {
    let text = serde_json::to_string(value)
        .map_err(|error| ModelCacheError::new_err(format!("Cannot convert a result: {error}")))?;
    Ok(py.import("json")?.call_method1("loads", (text,))?.unbind())
}

/// The exception for an engine error: its class by kind, its message the error and its causes.
fn raise(py: Python<'_>, error: &(dyn std::error::Error + 'static)) -> PyErr {
    let diagnostic = model_cache::error::diagnose(error);
    let kind = diagnostic.map(|d| d.kind());
    let hints = diagnostic.map(|d| d.hints()).unwrap_or_default();
    let message = message_with_causes(error);
    let err = match kind {
        Some(ErrorKind::RepoNotFound) => RepoNotFound::new_err(message),
        Some(ErrorKind::Gated) => GatedRepo::new_err(message),
        Some(ErrorKind::OfflineMiss) => OfflineMiss::new_err(message),
        Some(ErrorKind::DiskFull) => DiskFull::new_err(message),
        Some(ErrorKind::Integrity) => IntegrityError::new_err(message),
        _ => ModelCacheError::new_err(message),
    };
    annotate(py, &err, kind, &hints);
    err
}

/// Sets `kind` (None when the error has none) and `hints` on an exception.
fn annotate(py: Python<'_>, err: &PyErr, kind: Option<ErrorKind>, hints: &[Hint]) {
    let value = err.value(py);
    let _ = value.setattr("kind", kind.map(ErrorKind::as_str));
    if let Ok(hints) = to_python(py, &hints) {
        let _ = value.setattr("hints", hints);
    }
}

/// The error's text, then each cause's that it does not already contain.
fn message_with_causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

/// The request handling of the browser native-messaging host, for `model_cache.native_host`
/// (which reads and writes the frames itself).
///
/// NativeHost(data_dir=None)
#[pyclass(module = "model_cache._native", frozen)]
struct NativeHost {
    host: native_host::Host,
    runtime: Arc<Runtime>,
}

#[pymethods]
impl NativeHost {
    #[new]
    #[pyo3(signature = (data_dir=None))]
    fn new(data_dir: Option<PathBuf>) -> PyResult<Self> {
        let data_dir = match data_dir {
            Some(dir) => dir,
            None => settings(None, None, None, false, None)?.data_dir,
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|error| {
                ModelCacheError::new_err(format!("Cannot start the async runtime: {error}"))
            })?;
        Ok(NativeHost {
            host: native_host::Host::new(data_dir),
            runtime: Arc::new(runtime),
        })
    }

    /// Answers one message (the bytes of its JSON, as read from a frame): `emit` is called on
    /// this thread with each answer's JSON bytes (at most 1 MiB each), in order.
    fn handle(&self, py: Python<'_>, message: &[u8], emit: Bound<'_, PyAny>) -> PyResult<()> {
        let (sender, mut answers) = mpsc::unbounded_channel();
        let host = self.host.clone();
        let message = message.to_vec();
        let runtime = Arc::clone(&self.runtime);
        let worker = std::thread::spawn(move || {
            runtime.block_on(host.handle(&message, &sender));
        });
        loop {
            let answer = py.detach(|| answers.blocking_recv());
            match answer {
                Some(bytes) => {
                    emit.call1((PyBytes::new(py, &bytes),))?;
                }
                None => break,
            }
        }
        py.detach(|| worker.join())
            .map_err(|_| ModelCacheError::new_err("The native host's request handler failed"))
    }

    /// The failure answer to a message over the host's size limit.
    #[staticmethod]
    fn too_large(length: u64) -> Vec<u8> {
        native_host::protocol::encode_failure(
            None,
            &native_host::protocol::Failure::too_large(length),
        )
    }

    /// The failure answer to a message cut short.
    #[staticmethod]
    fn truncated(expected: u64, received: u64) -> Vec<u8> {
        native_host::protocol::encode_failure(
            None,
            &native_host::protocol::Failure::truncated(expected, received),
        )
    }
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<Cache>()?;
    m.add_class::<NativeHost>()?;
    m.add("ModelCacheError", py.get_type::<ModelCacheError>())?;
    m.add("RepoNotFound", py.get_type::<RepoNotFound>())?;
    m.add("GatedRepo", py.get_type::<GatedRepo>())?;
    m.add("OfflineMiss", py.get_type::<OfflineMiss>())?;
    m.add("DiskFull", py.get_type::<DiskFull>())?;
    m.add("IntegrityError", py.get_type::<IntegrityError>())?;
    m.add("MAX_FROM_BROWSER", native_host::framing::MAX_FROM_BROWSER)?;
    m.add("MAX_TO_BROWSER", native_host::framing::MAX_TO_BROWSER)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
