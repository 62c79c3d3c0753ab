//! The demo from start to end: cluster, repository, controller, workload with real data,
//! backup, loss, two restores with verification, report and picture.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;

use super::controller;
use super::direct;
use super::layout::Layout;
use super::objects::{FERRY_NAMESPACE, WORKLOAD_NAMESPACE};
use super::report;
use super::restore_run::{Mode, ModeOutcome};
use super::scenario::{self, BackedUp};
use super::timeline::TimelineInput;
use super::workload;
use ferry_text::human_bytes;

#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub nodes: usize,
    pub volumes: usize,
    pub total_bytes: u64,
    pub out: PathBuf,
    pub keep: bool,
    pub seed: u64,
}

pub async fn run(options: DemoOptions) -> anyhow::Result<ExitCode> {
    let layout = Layout::prepare(&options.out)?;
    println!(
        "ferry demo: a StatefulSet with {} volumes ({}) on a simulated cluster of {} nodes\n",
        options.volumes,
        human_bytes(options.total_bytes),
        options.nodes
    );
    let started = Instant::now();
    let cluster =
        scenario::start_cluster(&layout, options.nodes, testenv::Backend::Kubesim).await?;
    let code = match in_cluster(&cluster, &layout, &options).await {
        Ok(code) => code,
        Err(err) => {
            cluster.stop().await;
            return Err(err);
        }
    };
    if options.keep {
        println!();
        println!("The simulated cluster keeps running. In another shell:");
        println!(
            "  export KUBECONFIG={}",
            cluster.kubeconfig_path().display()
        );
        println!("  kubectl get datauploads,datadownloads -n {FERRY_NAMESPACE}");
        println!("  kubectl get pods,pvc -n {WORKLOAD_NAMESPACE} -o wide");
        println!("Press Ctrl-C to stop it.");
        tokio::signal::ctrl_c()
            .await
            .context("waiting for Ctrl-C")?;
    }
    cluster.stop().await;
    println!("\nDone in {:.1} s.", started.elapsed().as_secs_f64());
    Ok(code)
}

async fn in_cluster(
    cluster: &testenv::TestCluster,
    layout: &Layout,
    options: &DemoOptions,
) -> anyhow::Result<ExitCode> {
    let client = cluster.client();
    let plans = workload::plan_workload(options.volumes, options.total_bytes, options.seed);
    let backed_up = BackedUp::prepare(
        &client,
        layout,
        options.nodes,
        plans,
        controller::Placement::InProcess(&client),
    )
    .await?;

    let mut outcomes: Vec<ModeOutcome> = Vec::new();
    let mut all_verified = true;
    // Without a controller for the backup, none for the restores either.
    let mut emulated = backed_up.backup.is_none();
    if emulated {
        println!(
            "      The restores go through the data path directly (ferry's restore engine);\n      \
             the controller's waiting and placement are emulated."
        );
    }
    for (index, mode) in [Mode::Default, Mode::IgnoreDelayBinding]
        .into_iter()
        .enumerate()
    {
        if index > 0 && !emulated {
            backed_up.clear_restored(&client).await?;
        }
        let controller = if emulated {
            None
        } else {
            match backed_up
                .start_controller(&client, mode, controller::Placement::InProcess(&client))
                .await
            {
                Ok(controller) => Some(controller),
                // Only the first start may fall back: a later failure is a real one.
                Err(err) if index == 0 => {
                    println!(
                        "      ferry's controller cannot run in-process here ({err:#}).\n      \
                         The restores go through the data path directly (ferry's restore engine);\n      \
                         the controller's waiting and placement are emulated."
                    );
                    emulated = true;
                    None
                }
                Err(err) => return Err(err),
            }
        };
        let (outcome, dirs) = match controller {
            Some(controller) => {
                let (outcome, dirs, _) = backed_up
                    .restore_with_controller(&client, mode, controller, None)
                    .await?;
                (outcome, dirs)
            }
            None => {
                let root = layout.cluster().join("direct-restores").join(mode.name());
                direct::run_mode(
                    &backed_up.written.repository,
                    mode,
                    &backed_up.to_restore,
                    &backed_up.written.nodes,
                    &root,
                )
                .await?
            }
        };
        all_verified &= backed_up.verify(mode, &dirs).await?;
        outcomes.push(outcome);
    }

    // Report and picture: the backup, then the restores.
    let runs: Vec<_> = backed_up
        .backup
        .iter()
        .cloned()
        .chain(outcomes.iter().map(|o| o.run.clone()))
        .collect();
    let text = report::render_report(&runs);
    println!("\n{text}");
    if !emulated {
        for outcome in &outcomes {
            println!(
                "{}: the whole StatefulSet was running {:.1} s after the restores were created.",
                outcome.run.name, outcome.workload_running_after
            );
        }
    }
    let input = TimelineInput {
        title: format!(
            "ferry: backing up and restoring {} volumes ({}) on {} nodes",
            backed_up.written.plans.len(),
            human_bytes(backed_up.total_bytes()),
            options.nodes
        ),
        subtitle: format!(
            "{} on a simulated cluster{}; {}",
            if emulated {
                "Backed up, lost and restored twice"
            } else {
                "Backed up through DataUploads, lost and restored twice through DataDownloads"
            },
            if emulated {
                " (data path run directly, controller's waiting and placement emulated)"
            } else {
                ""
            },
            if all_verified {
                "every byte verified after each restore"
            } else {
                "VERIFICATION FAILED"
            }
        ),
        modes: runs,
    };
    println!();
    layout.write_report_and_timeline(&text, &input)?;
    if all_verified {
        println!("Verification: every byte of every volume matched after both restores.");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("Verification FAILED: see the differences above.");
        Ok(ExitCode::FAILURE)
    }
}
