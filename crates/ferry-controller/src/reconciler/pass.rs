//! One pass: observe every DataDownload and DataUpload of this data mover, admit from the
//! prepare queue, count what the nodes carry ([`NodeLoad`]), and step each object once.

use std::collections::BTreeMap;

use futures::StreamExt;

use crate::crds::DataDownloadPhase;
use crate::placement::NodeInfo;
use crate::queue::{QueuedRestore, admit_new, slots_in_use};

use super::controller::Controller;
use super::node_load::NodeLoad;
use super::view::{Observed, created, queued};

impl Controller {
    /// One reconcile pass over every DataDownload of this data mover.
    pub(super) async fn pass(&mut self) -> Result<(), kube::Error> {
        self.poll_soon
            .store(false, std::sync::atomic::Ordering::Relaxed);
        self.refresh_config().await;
        let all = self.observe_downloads().await?;
        let mut ours: Vec<Observed> = all
            .into_iter()
            .filter(|dd| dd.spec.is_for_data_mover(&self.options.data_mover_name))
            .map(|dd| Observed {
                name: dd.metadata.name.clone().unwrap_or_default(),
                dd,
            })
            .collect();
        ours.sort_by(|a, b| {
            created(&a.dd)
                .cmp(&created(&b.dd))
                .then_with(|| a.name.cmp(&b.name))
        });
        let mut phases: BTreeMap<String, u64> = BTreeMap::new();
        for o in &ours {
            *phases.entry(o.dd.phase().as_str().to_string()).or_default() += 1;
        }
        self.metrics.set_phases(phases);

        let queue: Vec<QueuedRestore> = ours.iter().map(queued).collect();
        let admitted = admit_new(&queue, self.config.prepare_queue_length());
        let mut load = NodeLoad {
            in_flight: slots_in_use(&queue),
            ..NodeLoad::default()
        };
        let uploads = self.observe_uploads().await;
        Self::count_upload_slots(&uploads, &mut load.in_flight);
        load.count_placed(
            queue
                .iter()
                .filter_map(|q| q.node.as_deref())
                .chain(uploads.iter().filter_map(|o| o.node())),
        );
        let node_list = self.observe_nodes().await?;
        let node_infos: Vec<NodeInfo> = node_list
            .iter()
            .map(|n| NodeInfo::from_node(n, &self.config))
            .collect();

        // Node choices take slots, so they are made one after another, oldest first. Every
        // other step touches its own restore's objects alone: those run side by side, so
        // that one restore's API round trips do not hold up the others' (a pass with many
        // restores rebinding or starting took a second and more, one after another).
        let (placing, others): (Vec<&Observed>, Vec<&Observed>) =
            ours.iter().partition(|o| chooses_node(o));
        let this = &*self;
        let place = async {
            for o in placing {
                // A replica that lost the lease mid-pass stops writing at once.
                if !this.leading() {
                    break;
                }
                if let Err(err) = this.step(o, &admitted, &mut load, &node_infos).await {
                    err.report("DataDownload", &o.name);
                }
            }
        };
        let mut alone = Vec::with_capacity(others.len());
        for o in others {
            alone.push(this.step_alone(o, &admitted, &node_infos));
        }
        let rest = futures::stream::iter(alone)
            .buffer_unordered(STEPS_AT_ONCE)
            .collect::<Vec<()>>();
        futures::join!(place, rest);
        self.upload_steps(&uploads, &mut load, &node_infos).await;
        Ok(())
    }

    /// The step of a restore that chooses no node, and so never reads or takes a slot.
    async fn step_alone(&self, o: &Observed, admitted: &[String], nodes: &[NodeInfo]) {
        // A replica that lost the lease mid-pass stops writing at once.
        if !self.leading() {
            return;
        }
        if let Err(err) = self
            .step(o, admitted, &mut NodeLoad::default(), nodes)
            .await
        {
            err.report("DataDownload", &o.name);
        }
    }
}

/// How many restores' steps (other than node choices) a pass runs at once.
const STEPS_AT_ONCE: usize = 8;

/// Whether this restore's step may choose a node (and so take a slot): Accepted, no node yet.
fn chooses_node(o: &Observed) -> bool {
    o.dd.phase() == DataDownloadPhase::Accepted
        && o.dd.status.as_ref().and_then(|s| s.node.as_ref()).is_none()
}
