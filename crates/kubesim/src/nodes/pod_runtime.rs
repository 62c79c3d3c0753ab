//! One pod's life on its kubelet: the sandbox directory, init containers in order, then
//! the app containers together, restarts by restartPolicy, and termination (SIGTERM, then
//! SIGKILL after the grace period). Status goes to the API server after every change.
//!
//! Layout (see docs/kubesim-nodes.md):
//! `DATA_DIR/pods/<namespace>_<name>/<container>.log`   stdout and stderr
//! `DATA_DIR/pods/<namespace>_<name>/<container>/root/`  the container's root (KUBESIM_ROOT)
//! `DATA_DIR/pods/<namespace>_<name>/volumes/<volume>/`  emptyDir / configMap / secret data

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{Patch, PatchParams};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use super::container_spec::{
    Program, mount_env_name, resolve_program, rewrite_paths, unpullable_registry,
};
use super::pod_access::{PodAccess, provide as provide_access};
use super::pod_status::{ContainerRecord, ContainerState, PodRecord, Termination};
use super::volume_matching::{name_of, namespace_of};

/// What a pod volume is on this machine.
#[derive(Debug, Clone)]
pub enum VolumeTarget {
    /// A directory (PV directory, emptyDir, hostPath, configMap/secret files).
    Dir(PathBuf),
    /// A file standing in for a block device.
    File(PathBuf),
}

/// Everything a pod's task needs, fixed when the kubelet starts it.
pub struct PodLaunch {
    pub client: kube::Client,
    pub pod: Arc<Pod>,
    pub pod_dir: PathBuf,
    pub volumes: BTreeMap<String, VolumeTarget>,
    pub image_binaries: BTreeMap<String, PathBuf>,
    pub extra_env: BTreeMap<String, String>,
    pub host_ip: String,
    pub pod_ip: String,
    /// How the pod's processes reach the API server.
    pub access: PodAccess,
    /// The cluster's kubeconfig, for [`PodAccess::ClusterKubeconfig`].
    pub cluster_kubeconfig: PathBuf,
}

/// Tells a running pod to stop and how long it may take.
#[derive(Clone)]
pub struct PodStop {
    pub token: CancellationToken,
    pub grace_seconds: Arc<AtomicI64>,
}

impl PodStop {
    pub fn new() -> Self {
        PodStop {
            token: CancellationToken::new(),
            grace_seconds: Arc::new(AtomicI64::new(30)),
        }
    }

    pub fn stop(&self, grace_seconds: i64) {
        if !self.token.is_cancelled() {
            self.grace_seconds
                .store(grace_seconds.max(0), Ordering::Relaxed);
            self.token.cancel();
        } else {
            // A second, shorter deadline wins (as a repeated delete with a shorter grace).
            self.grace_seconds
                .fetch_min(grace_seconds.max(0), Ordering::Relaxed);
        }
    }
}

impl Default for PodStop {
    fn default() -> Self {
        Self::new()
    }
}

struct Shared {
    launch: PodLaunch,
    record: Mutex<PodRecord>,
    stop: PodStop,
}

const MAX_MESSAGE_BYTES: usize = 4096;
const FALLBACK_LOG_BYTES: usize = 2048;
const FALLBACK_LOG_LINES: usize = 80;

/// Runs the pod to its end (or until stopped). Returns when every process has exited.
pub async fn run_pod(launch: PodLaunch, stop: PodStop) {
    let spec = launch.pod.spec.clone().unwrap_or_default();
    let record = PodRecord {
        init: spec
            .init_containers
            .iter()
            .flatten()
            .map(|c| ContainerRecord::new(&c.name, c.image.as_deref().unwrap_or("")))
            .collect(),
        main: spec
            .containers
            .iter()
            .map(|c| ContainerRecord::new(&c.name, c.image.as_deref().unwrap_or("")))
            .collect(),
        initialized: spec.init_containers.as_ref().is_none_or(|i| i.is_empty()),
        init_failed: false,
        start_time: Timestamp::now(),
        host_ip: launch.host_ip.clone(),
        pod_ip: launch.pod_ip.clone(),
    };
    let mut launch = launch;
    if let Err(error) = prepare_pod_dir(&launch).await {
        tracing::warn!(%error, pod = name_of(launch.pod.as_ref()), "kubesim kubelet: cannot prepare the pod's directory");
    }
    let volume_dir = |name: &str| match launch.volumes.get(name) {
        Some(VolumeTarget::Dir(dir)) => Some(dir.clone()),
        _ => None,
    };
    match provide_access(
        &launch.access,
        &launch.client,
        &launch.pod,
        &launch.pod_dir,
        volume_dir,
        &launch.cluster_kubeconfig,
    )
    .await
    {
        Ok(env) => launch.extra_env.extend(env),
        Err(error) => {
            tracing::warn!(
                error = format!("{error:#}"),
                pod = name_of(launch.pod.as_ref()),
                "kubesim kubelet: the pod gets no API credentials"
            )
        }
    }
    let shared = Arc::new(Shared {
        launch,
        record: Mutex::new(record),
        stop,
    });
    report(&shared).await;
    let restart_policy = spec
        .restart_policy
        .clone()
        .unwrap_or_else(|| "Always".into());
    for (index, container) in spec.init_containers.iter().flatten().enumerate() {
        // Init containers restart on failure unless the policy is Never.
        loop {
            let termination = run_container(&shared, container, Slot::Init(index)).await;
            let Some(termination) = termination else {
                return;
            };
            if termination.exit_code == 0 {
                shared.record.lock().await.init[index].done = true;
                break;
            }
            if restart_policy == "Never" {
                let mut record = shared.record.lock().await;
                record.init_failed = true;
                record.init[index].done = true;
                for c in record.main.iter_mut() {
                    c.done = true;
                    c.state = ContainerState::Waiting {
                        reason: "PodInitializing".into(),
                        message: None,
                    };
                }
                drop(record);
                report(&shared).await;
                return;
            }
            if !backoff(&shared, Slot::Init(index)).await {
                return;
            }
        }
    }
    {
        let mut record = shared.record.lock().await;
        record.initialized = true;
    }
    let runs = spec
        .containers
        .iter()
        .enumerate()
        .map(|(index, container)| {
            let shared = shared.clone();
            let restart_policy = restart_policy.clone();
            async move {
                loop {
                    let Some(termination) =
                        run_container(&shared, container, Slot::Main(index)).await
                    else {
                        return;
                    };
                    let restart = match restart_policy.as_str() {
                        "Never" => false,
                        "OnFailure" => termination.exit_code != 0,
                        _ => true,
                    };
                    if !restart {
                        shared.record.lock().await.main[index].done = true;
                        report(&shared).await;
                        return;
                    }
                    if !backoff(&shared, Slot::Main(index)).await {
                        return;
                    }
                }
            }
        });
    futures::future::join_all(runs).await;
}

#[derive(Clone, Copy)]
enum Slot {
    Init(usize),
    Main(usize),
}

fn slot_of(record: &mut PodRecord, slot: Slot) -> &mut ContainerRecord {
    match slot {
        Slot::Init(i) => &mut record.init[i],
        Slot::Main(i) => &mut record.main[i],
    }
}

/// CrashLoopBackOff: 10 s doubling to 5 min, as the kubelet. False when stopped meanwhile.
async fn backoff(shared: &Shared, slot: Slot) -> bool {
    let restarts = {
        let mut record = shared.record.lock().await;
        let c = slot_of(&mut record, slot);
        c.restart_count += 1;
        if let ContainerState::Terminated(t) = &c.state {
            c.last_termination = Some(t.clone());
        }
        c.state = ContainerState::Waiting {
            reason: "CrashLoopBackOff".into(),
            message: Some(format!("back-off restarting failed container {}", c.name)),
        };
        c.restart_count
    };
    report(shared).await;
    let delay = Duration::from_secs((10u64 << (restarts - 1).clamp(0, 5) as u32).min(300));
    tokio::select! {
        _ = shared.stop.token.cancelled() => false,
        _ = tokio::time::sleep(delay) => true,
    }
}

/// Pushes the record to pod.status (merge patch; the kubelet owns these fields).
async fn report(shared: &Shared) {
    let record = shared.record.lock().await;
    let status = serde_json::json!({"status": record.status_json()});
    let pod = &shared.launch.pod;
    let api: Api<Pod> = Api::namespaced(shared.launch.client.clone(), namespace_of(pod.as_ref()));
    if let Err(error) = api
        .patch_status(
            name_of(pod.as_ref()),
            &PatchParams::default(),
            &Patch::Merge(&status),
        )
        .await
    {
        tracing::debug!(%error, pod = name_of(pod.as_ref()), "kubesim kubelet: status update failed");
    }
}

async fn prepare_pod_dir(launch: &PodLaunch) -> std::io::Result<()> {
    tokio::fs::create_dir_all(&launch.pod_dir).await?;
    let namespace = namespace_of(launch.pod.as_ref()).to_string();
    for volume in launch
        .pod
        .spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
    {
        let Some(VolumeTarget::Dir(dir)) = launch.volumes.get(&volume.name) else {
            continue;
        };
        if volume.empty_dir.is_some()
            || volume.config_map.is_some()
            || volume.secret.is_some()
            || volume.projected.is_some()
            || volume.downward_api.is_some()
        {
            tokio::fs::create_dir_all(dir).await?;
        }
        // configMap and secret volumes get one file per key (or per listed item).
        let files: Vec<(String, Vec<u8>)> = if let Some(source) = &volume.config_map {
            let api: Api<ConfigMap> = Api::namespaced(launch.client.clone(), &namespace);
            match api.get_opt(&source.name).await {
                Ok(Some(cm)) => {
                    let mut all: BTreeMap<String, Vec<u8>> = cm
                        .data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, v.into_bytes()))
                        .collect();
                    all.extend(
                        cm.binary_data
                            .unwrap_or_default()
                            .into_iter()
                            .map(|(k, v)| (k, v.0)),
                    );
                    select_items(all, source.items.as_deref())
                }
                _ => Vec::new(),
            }
        } else if let Some(source) = &volume.secret {
            let api: Api<Secret> = Api::namespaced(launch.client.clone(), &namespace);
            match api
                .get_opt(source.secret_name.as_deref().unwrap_or(""))
                .await
            {
                Ok(Some(secret)) => {
                    let mut all: BTreeMap<String, Vec<u8>> = secret
                        .data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, v.0))
                        .collect();
                    all.extend(
                        secret
                            .string_data
                            .unwrap_or_default()
                            .into_iter()
                            .map(|(k, v)| (k, v.into_bytes())),
                    );
                    select_items(all, source.items.as_deref())
                }
                _ => Vec::new(),
            }
        } else {
            Vec::new()
        };
        for (path, bytes) in files {
            let file = dir.join(path.trim_start_matches('/'));
            if let Some(parent) = file.parent() {
                tokio::fs::create_dir_all(parent).await?;
            }
            tokio::fs::write(file, bytes).await?;
        }
    }
    Ok(())
}

fn select_items(
    all: BTreeMap<String, Vec<u8>>,
    items: Option<&[k8s_openapi::api::core::v1::KeyToPath]>,
) -> Vec<(String, Vec<u8>)> {
    match items {
        None => all.into_iter().collect(),
        Some(items) => items
            .iter()
            .filter_map(|item| all.get(&item.key).map(|v| (item.path.clone(), v.clone())))
            .collect(),
    }
}

/// The container's environment: a minimal base, kubesim's variables, NodesConfig::pod_env,
/// then envFrom and env in order (later wins), as the kubelet does.
async fn container_env(
    shared: &Shared,
    container: &Container,
    root: &Path,
    mounts: &[(String, PathBuf)],
) -> Result<BTreeMap<String, String>, String> {
    let launch = &shared.launch;
    let pod = launch.pod.as_ref();
    let namespace = namespace_of(pod);
    let mut env = BTreeMap::new();
    env.insert(
        "PATH".into(),
        std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into()),
    );
    for passthrough in ["RUST_LOG", "RUST_BACKTRACE", "TMPDIR", "LANG"] {
        if let Ok(v) = std::env::var(passthrough) {
            env.insert(passthrough.into(), v);
        }
    }
    env.insert("HOME".into(), root.to_string_lossy().into_owned());
    env.insert("HOSTNAME".into(), name_of(pod).into());
    env.insert("KUBESIM_ROOT".into(), root.to_string_lossy().into_owned());
    env.insert(
        "KUBESIM_POD_DIR".into(),
        launch.pod_dir.to_string_lossy().into_owned(),
    );
    for (mount_path, target) in mounts {
        env.insert(
            mount_env_name(mount_path),
            target.to_string_lossy().into_owned(),
        );
    }
    if let Some(path) = &container.termination_message_path {
        env.insert(
            "KUBESIM_TERMINATION_MESSAGE_PATH".into(),
            rewrite_paths(path, std::slice::from_ref(path), root),
        );
    }
    env.extend(launch.extra_env.clone());
    let configmaps: Api<ConfigMap> = Api::namespaced(launch.client.clone(), namespace);
    let secrets: Api<Secret> = Api::namespaced(launch.client.clone(), namespace);
    for source in container.env_from.iter().flatten() {
        let prefix = source.prefix.clone().unwrap_or_default();
        if let Some(cm) = &source.config_map_ref {
            match configmaps
                .get_opt(&cm.name)
                .await
                .map_err(|e| e.to_string())?
            {
                Some(found) => env.extend(
                    found
                        .data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (format!("{prefix}{k}"), v)),
                ),
                None if cm.optional == Some(true) => {}
                None => return Err(format!("configmap \"{}\" not found", cm.name)),
            }
        }
        if let Some(sr) = &source.secret_ref {
            match secrets.get_opt(&sr.name).await.map_err(|e| e.to_string())? {
                Some(found) => {
                    env.extend(found.data.unwrap_or_default().into_iter().map(|(k, v)| {
                        (
                            format!("{prefix}{k}"),
                            String::from_utf8_lossy(&v.0).into_owned(),
                        )
                    }))
                }
                None if sr.optional == Some(true) => {}
                None => return Err(format!("secret \"{}\" not found", sr.name)),
            }
        }
    }
    for var in container.env.iter().flatten() {
        let value = match &var.value_from {
            None => Some(super::container_spec::expand_vars(
                var.value.as_deref().unwrap_or(""),
                &env,
            )),
            Some(from) => {
                if let Some(field) = &from.field_ref {
                    Some(field_value(pod, &field.field_path, launch))
                } else if let Some(key) = &from.config_map_key_ref {
                    let found = configmaps
                        .get_opt(&key.name)
                        .await
                        .map_err(|e| e.to_string())?;
                    match found
                        .and_then(|c| c.data)
                        .and_then(|d| d.get(&key.key).cloned())
                    {
                        Some(v) => Some(v),
                        None if key.optional == Some(true) => None,
                        None => {
                            return Err(format!(
                                "couldn't find key {} in ConfigMap {namespace}/{}",
                                key.key, key.name
                            ));
                        }
                    }
                } else if let Some(key) = &from.secret_key_ref {
                    let found = secrets
                        .get_opt(&key.name)
                        .await
                        .map_err(|e| e.to_string())?;
                    match found
                        .and_then(|s| s.data)
                        .and_then(|d| d.get(&key.key).cloned())
                    {
                        Some(v) => Some(String::from_utf8_lossy(&v.0).into_owned()),
                        None if key.optional == Some(true) => None,
                        None => {
                            return Err(format!(
                                "couldn't find key {} in Secret {namespace}/{}",
                                key.key, key.name
                            ));
                        }
                    }
                } else {
                    // resourceFieldRef: kubesim does not model limits; leave unset.
                    None
                }
            }
        };
        if let Some(value) = value {
            env.insert(var.name.clone(), value);
        }
    }
    Ok(env)
}

/// The downward API fields a fieldRef may name.
fn field_value(pod: &Pod, path: &str, launch: &PodLaunch) -> String {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let from_map = |map: &Option<BTreeMap<String, String>>, rest: &str| {
        let key = rest.trim_start_matches("['").trim_end_matches("']");
        map.as_ref()
            .and_then(|m| m.get(key).cloned())
            .unwrap_or_default()
    };
    match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.hostIP" => launch.host_ip.clone(),
        "status.podIP" => launch.pod_ip.clone(),
        p if p.starts_with("metadata.labels[") => {
            from_map(&meta.labels, &p["metadata.labels".len()..])
        }
        p if p.starts_with("metadata.annotations[") => {
            from_map(&meta.annotations, &p["metadata.annotations".len()..])
        }
        _ => String::new(),
    }
}

/// Builds the container's root: a symlink per volumeMount/volumeDevice to its target, and
/// the directory of the termination message file. Returns the mapped paths.
async fn prepare_root(
    launch: &PodLaunch,
    container: &Container,
    root: &Path,
) -> std::io::Result<Vec<(String, PathBuf)>> {
    if tokio::fs::try_exists(root).await? {
        tokio::fs::remove_dir_all(root).await?;
    }
    tokio::fs::create_dir_all(root).await?;
    let mut mapped = Vec::new();
    let mut links: Vec<(String, PathBuf)> = Vec::new();
    for mount in container.volume_mounts.iter().flatten() {
        let Some(target) = launch.volumes.get(&mount.name) else {
            continue;
        };
        let mut target = match target {
            VolumeTarget::Dir(d) | VolumeTarget::File(d) => d.clone(),
        };
        if let Some(sub) = mount.sub_path.as_deref().filter(|s| !s.is_empty()) {
            target = target.join(sub);
            tokio::fs::create_dir_all(&target).await?;
        }
        links.push((mount.mount_path.clone(), target));
    }
    for device in container.volume_devices.iter().flatten() {
        if let Some(VolumeTarget::File(file) | VolumeTarget::Dir(file)) =
            launch.volumes.get(&device.name)
        {
            links.push((device.device_path.clone(), file.clone()));
        }
    }
    // Shallow paths first, so a nested mount is linked inside its parent's target.
    links.sort_by_key(|(p, _)| p.matches('/').count());
    for (path, target) in links {
        let link = root.join(path.trim_start_matches('/'));
        if let Some(parent) = link.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        let _ = tokio::fs::remove_file(&link).await;
        tokio::fs::symlink(&target, &link).await?;
        mapped.push((path, target));
    }
    if let Some(path) = container.termination_message_path.as_deref()
        && let Some(parent) = root.join(path.trim_start_matches('/')).parent()
    {
        tokio::fs::create_dir_all(parent).await?;
    }
    Ok(mapped)
}

/// One run of one container. `None` when the pod was stopped (the caller ends the pod).
async fn run_container(shared: &Shared, container: &Container, slot: Slot) -> Option<Termination> {
    let launch = &shared.launch;
    let container_dir = launch.pod_dir.join(&container.name);
    let root = container_dir.join("root");
    let log_path = launch.pod_dir.join(format!("{}.log", container.name));
    let set_state = |state: ContainerState, id: Option<String>| async move {
        {
            let mut record = shared.record.lock().await;
            let c = slot_of(&mut record, slot);
            c.state = state;
            if id.is_some() {
                c.container_id = id;
            }
        }
        report(shared).await;
    };
    // An image from a registry that cannot exist (RFC 2606 `.invalid`) fails to pull, as on a
    // real kubelet: ErrImagePull, then ImagePullBackOff until the pod is deleted.
    let image = container.image.clone().unwrap_or_default();
    if let Some(host) = unpullable_registry(&image) {
        let pull_error =
            format!("failed to pull image {image:?}: dial tcp: lookup {host}: no such host");
        for reason in ["ErrImagePull", "ImagePullBackOff"] {
            set_state(
                ContainerState::Waiting {
                    reason: reason.into(),
                    message: Some(pull_error.clone()),
                },
                None,
            )
            .await;
            tokio::select! {
                _ = shared.stop.token.cancelled() => return None,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
        shared.stop.token.cancelled().await;
        return None;
    }
    // Configuration errors (a missing secret) keep the container waiting, retried.
    let (env, mapped) = loop {
        let prepared = match prepare_root(launch, container, &root).await {
            Ok(mapped) => container_env(shared, container, &root, &mapped)
                .await
                .map(|env| (env, mapped)),
            Err(e) => Err(format!(
                "cannot prepare the container's root {}: {e}",
                root.display()
            )),
        };
        match prepared {
            Ok(ok) => break ok,
            Err(message) => {
                set_state(
                    ContainerState::Waiting {
                        reason: "CreateContainerConfigError".into(),
                        message: Some(message),
                    },
                    None,
                )
                .await;
                tokio::select! {
                    _ = shared.stop.token.cancelled() => return None,
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                }
            }
        }
    };
    let mut mapped_paths: Vec<String> = mapped.iter().map(|(p, _)| p.clone()).collect();
    mapped_paths.extend(container.termination_message_path.clone());
    let message_file = container
        .termination_message_path
        .as_deref()
        .map(|p| root.join(p.trim_start_matches('/')));
    if let Some(file) = &message_file {
        let _ = tokio::fs::remove_file(file).await;
    }
    let rewritten_env: BTreeMap<String, String> = env
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                if k.starts_with("KUBESIM_") {
                    v.clone()
                } else {
                    rewrite_paths(v, &mapped_paths, &root)
                },
            )
        })
        .collect();
    let program = resolve_program(
        container,
        &env,
        &launch.image_binaries,
        env.get("PATH").map(String::as_str).unwrap_or(""),
    );
    let started = Timestamp::now();
    let (program, args) = match program {
        Program::Simulated { reason } => {
            tracing::debug!(
                container = container.name,
                reason,
                "kubesim kubelet: simulating container"
            );
            let id = format!("kubesim://simulated-{}", uuid_like());
            set_state(ContainerState::Running { started }, Some(id.clone())).await;
            shared.stop.token.cancelled().await;
            return None;
        }
        Program::Local { program, args } => (program, args),
    };
    let args: Vec<String> = args
        .iter()
        .map(|a| rewrite_paths(a, &mapped_paths, &root))
        .collect();
    let working_dir = match container.working_dir.as_deref().filter(|w| !w.is_empty()) {
        Some(dir) => {
            let rewritten = PathBuf::from(rewrite_paths(dir, &mapped_paths, &root));
            if rewritten.is_dir() {
                rewritten
            } else {
                // A directory of the image: made inside the container's root.
                let inside = root.join(dir.trim_start_matches('/'));
                let _ = tokio::fs::create_dir_all(&inside).await;
                inside
            }
        }
        None => root.clone(),
    };
    let log = match std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
    {
        Ok(f) => f,
        Err(e) => {
            let t = start_error(
                started,
                format!("cannot open log {}: {e}", log_path.display()),
            );
            set_state(ContainerState::Terminated(t.clone()), None).await;
            return Some(t);
        }
    };
    let log_err = log.try_clone().expect("log handle");
    let mut command = tokio::process::Command::new(&program);
    command
        .args(&args)
        .env_clear()
        .envs(&rewritten_env)
        .current_dir(&working_dir)
        .stdin(std::process::Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .process_group(0)
        .kill_on_drop(true);
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            let t = start_error(
                started,
                format!("failed to start {}: {e}", program.display()),
            );
            set_state(ContainerState::Terminated(t.clone()), None).await;
            return Some(t);
        }
    };
    let pid = child.id().unwrap_or(0) as i32;
    let id = format!("kubesim://{pid}");
    set_state(ContainerState::Running { started }, Some(id.clone())).await;
    let (status, stopped) = tokio::select! {
        status = child.wait() => (status, false),
        _ = shared.stop.token.cancelled() => {
            signal_group(pid, libc::SIGTERM);
            let grace = Duration::from_secs(shared.stop.grace_seconds.load(Ordering::Relaxed) as u64);
            let status = match tokio::time::timeout(grace, child.wait()).await {
                Ok(status) => status,
                Err(_) => {
                    signal_group(pid, libc::SIGKILL);
                    child.wait().await
                }
            };
            (status, true)
        }
    };
    // The container ends with its main process: nothing it started outlives it.
    signal_group(pid, libc::SIGKILL);
    let exit_code = match status {
        Ok(s) => {
            use std::os::unix::process::ExitStatusExt;
            s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(9))
        }
        Err(_) => 137,
    };
    let mut message = match &message_file {
        Some(file) => read_prefix(file, MAX_MESSAGE_BYTES),
        None => None,
    };
    if message.is_none()
        && exit_code != 0
        && container.termination_message_policy.as_deref() == Some("FallbackToLogsOnError")
    {
        message = log_tail(&log_path);
    }
    let termination = Termination {
        exit_code,
        reason: if exit_code == 0 { "Completed" } else { "Error" }.into(),
        message,
        started: Some(started),
        finished: Timestamp::now(),
        container_id: id,
    };
    set_state(ContainerState::Terminated(termination.clone()), None).await;
    if stopped { None } else { Some(termination) }
}

fn start_error(started: Timestamp, message: String) -> Termination {
    Termination {
        exit_code: 128,
        reason: "StartError".into(),
        message: Some(message),
        started: Some(started),
        finished: Timestamp::now(),
        container_id: String::new(),
    }
}

fn signal_group(pid: i32, signal: i32) {
    if pid > 0 {
        // SAFETY: kill(2) with a negative pid signals the process group the child leads;
        // a group that is already gone yields ESRCH, which is fine.
        unsafe {
            libc::kill(-pid, signal);
        }
    }
}

fn uuid_like() -> String {
    format!("{:016x}", rand::random::<u64>())
}

fn read_prefix(path: &Path, limit: usize) -> Option<String> {
    let file = std::fs::File::open(path).ok()?;
    let mut buf = Vec::new();
    file.take(limit as u64).read_to_end(&mut buf).ok()?;
    (!buf.is_empty()).then(|| String::from_utf8_lossy(&buf).into_owned())
}

/// The last 80 lines or 2 KiB of the log, whichever is smaller (the kubelet's fallback).
fn log_tail(path: &Path) -> Option<String> {
    let mut file = std::fs::File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    let start = len.saturating_sub(FALLBACK_LOG_BYTES as u64);
    file.seek(SeekFrom::Start(start)).ok()?;
    let mut buf = Vec::new();
    file.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(FALLBACK_LOG_LINES)..].join("\n");
    (!tail.is_empty()).then_some(tail)
}
