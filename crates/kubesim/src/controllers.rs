//! The API server's own background controllers: the garbage collector (ownerReferences)
//! and the namespace controller (deleting a namespace deletes its contents). Both run a
//! full pass whenever something was deleted; a pass over 10,000 objects takes milliseconds.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::store::Store;

pub async fn run(store: Arc<Store>, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = store.deletions.notified() => {}
            // A periodic pass too, as the real controllers resync.
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
        // Cascades (owner → dependent → its dependents) settle within a few passes.
        for _ in 0..64 {
            let changed = store.collect_garbage() + store.finalize_namespaces();
            if changed == 0 {
                break;
            }
        }
    }
}
