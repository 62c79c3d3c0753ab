//! A restore that meets damaged or missing data restores every file it can, keeps them
//! intact, removes only the damaged files and lists each with the pack and blob at fault.

use crate::common;

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use common::*;
use ferry_repo::handmade::{self, SnapshotWriter};
use ferry_repo::pack::BlobType;
use ferry_repo::restore::{RestoreOptions, RestoreTarget};
use ferry_repo::{Id, RepoError, Repository, RestoreSummary, Snapshot};

fn pack_path(repo_dir: &Path, pack: &Id) -> PathBuf {
    let hex = pack.to_hex();
    repo_dir.join("data").join(&hex[..2]).join(hex)
}

async fn restore_to(
    repo: &Repository,
    snap: &Snapshot,
    target: &Path,
) -> ferry_repo::Result<RestoreSummary> {
    repo.restore(
        snap,
        RestoreTarget::Directory {
            path: target.to_path_buf(),
            subpath: None,
        },
        RestoreOptions::default(),
        no_progress(),
    )
    .await
}

/// The summary of an incomplete restore.
fn incomplete(r: ferry_repo::Result<RestoreSummary>) -> RestoreSummary {
    match r {
        Err(RepoError::Incomplete(s)) => *s,
        Err(e) => panic!("expected an incomplete restore, got {e}"),
        Ok(s) => panic!("expected an incomplete restore, got success: {s:?}"),
    }
}

/// No temporary files are left anywhere below `dir`.
fn assert_no_temporaries(dir: &Path) {
    let mut all = Vec::new();
    walk(dir, &mut all);
    let tmp: Vec<_> = all
        .iter()
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(ferry_repo::restore::TEMP_PREFIX)
        })
        .collect();
    assert!(tmp.is_empty(), "{tmp:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_pack_costs_only_the_files_it_lost() {
    let t = tempfile::tempdir().unwrap();
    let repo_dir = t.path().join("repo");
    let repo = init_repo(&repo_dir).await;
    // 3 packs of 40 files each (one or three blobs); the middle pack is cut in half.
    let mut w = SnapshotWriter::new(&repo);
    let mut nodes = Vec::new();
    let mut contents = Vec::new();
    for p in 0..3u64 {
        w.cut_pack();
        for i in 0..40u64 {
            let seed = p * 100 + i;
            let len = if i % 4 == 0 {
                100_000
            } else {
                20_000 + i as usize
            };
            let data = random_bytes(seed, len);
            let ids = w.content(&data, 40_000);
            let name = format!("p{p}-f{i:02}");
            nodes.push(handmade::file(name.as_bytes(), ids.clone(), len as u64));
            contents.push((name, data, ids));
        }
    }
    let root = w.tree(nodes);
    w.cut_pack();
    let (snap, packs) = w.finish(root).await.unwrap();
    // The tree's pack is the last one; data packs come first.
    let middle = packs[1];
    let path = pack_path(&repo_dir, &middle);
    let cut = std::fs::metadata(&path).unwrap().len() / 2;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(cut)
        .unwrap();
    // Files whose blobs reach past the cut are lost, all others must be restored.
    let index = repo.index().await.unwrap();
    let lost: Vec<&String> = contents
        .iter()
        .filter(|(_, _, ids)| {
            ids.iter().any(|id| {
                let loc = index.get(BlobType::Data, id).unwrap();
                index.pack_id(loc.pack) == middle && (loc.offset + loc.length) as u64 > cut
            })
        })
        .map(|(n, _, _)| n)
        .collect();
    assert!(lost.len() > 5 && lost.len() < 40, "{}", lost.len());

    let target = t.path().join("out");
    let summary = incomplete(restore_to(&repo, &snap, &target).await);
    let mut listed: Vec<String> = summary
        .damaged
        .iter()
        .map(|d| {
            assert_eq!(d.pack.as_deref(), Some(middle.to_hex().as_str()), "{d}");
            assert!(d.blob.is_some() && d.reason.contains("short read"), "{d}");
            Path::new(&d.path)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    listed.sort();
    assert_eq!(
        listed,
        lost.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    );
    assert_eq!(summary.files as usize, contents.len() - lost.len());
    for (name, data, _) in &contents {
        let p = target.join(name);
        if lost.contains(&name) {
            assert!(!p.exists(), "{name} is damaged and must be removed");
        } else {
            assert!(std::fs::read(&p).unwrap() == *data, "{name} content");
        }
    }
    assert_no_temporaries(&target);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_blob_costs_only_its_files_and_their_hard_links() {
    let t = tempfile::tempdir().unwrap();
    let repo_dir = t.path().join("repo");
    let repo = init_repo(&repo_dir).await;
    let mut w = SnapshotWriter::new(&repo);
    let one = random_bytes(1, 300_000);
    let two = random_bytes(2, 300_000);
    let three = random_bytes(3, 300_000);
    let ids1 = w.content(&one, 100_000);
    let ids2 = w.content(&two, 100_000);
    let ids3 = w.content(&three, 100_000);
    let sub = w.tree(vec![handmade::hard_linked(
        handmade::file(b"two-link", ids2.clone(), 300_000),
        5,
        2,
    )]);
    let root = w.tree(vec![
        handmade::file(b"one", ids1, 300_000),
        handmade::dir(b"sub", sub),
        handmade::file(b"three", ids3, 300_000),
        handmade::hard_linked(handmade::file(b"two", ids2.clone(), 300_000), 5, 2),
    ]);
    let (snap, packs) = w.finish(root).await.unwrap();
    // Flip a byte inside file two's middle blob.
    let index = repo.index().await.unwrap();
    let bad = index.get(BlobType::Data, &ids2[1]).unwrap();
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(pack_path(&repo_dir, &packs[0]))
        .unwrap();
    let at = bad.offset as u64 + 20;
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at).unwrap();
    f.write_all_at(&[b[0] ^ 0x40], at).unwrap();

    let target = t.path().join("out");
    let summary = incomplete(restore_to(&repo, &snap, &target).await);
    let paths: Vec<&str> = summary.damaged.iter().map(|d| d.path.as_str()).collect();
    let two_path = target.join("two").display().to_string();
    let link_path = target.join("sub/two-link").display().to_string();
    assert_eq!(paths.len(), 2, "{:?}", summary.damaged);
    assert!(paths.contains(&two_path.as_str()) && paths.contains(&link_path.as_str()));
    let d = summary.damaged.iter().find(|d| d.path == two_path).unwrap();
    assert_eq!(d.blob.as_deref(), Some(ids2[1].to_hex().as_str()));
    assert_eq!(d.pack.as_deref(), Some(packs[0].to_hex().as_str()));
    assert!(d.reason.contains("MAC"), "{d}");
    // The intact files are complete; the damaged ones are gone.
    assert!(std::fs::read(target.join("one")).unwrap() == one);
    assert!(std::fs::read(target.join("three")).unwrap() == three);
    assert!(!target.join("two").exists() && !target.join("sub/two-link").exists());
    assert_no_temporaries(&target);
    // The message names what was lost and where.
    let err = restore_to(&repo, &snap, &t.path().join("again"))
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("2 entries were not restored"), "{msg}");
    assert!(
        msg.contains(&ids2[1].to_hex()) && msg.contains(&packs[0].to_hex()),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_whose_content_is_not_its_id_costs_only_its_file() {
    // Restore hashes a few decoded blobs together: the forged blob sits among intact ones of
    // the same pack, in the same hashing batch and in the ones before and after it.
    let t = tempfile::tempdir().unwrap();
    let repo = init_repo(&t.path().join("repo")).await;
    let mut w = SnapshotWriter::new(&repo);
    let good = random_bytes(1, 9 * 50_000);
    let victim = random_bytes(2, 3 * 50_000);
    let ids_good = w.content(&good[..5 * 50_000], 50_000);
    let mut ids_victim = Vec::new();
    for (i, piece) in victim.chunks(50_000).enumerate() {
        if i == 1 {
            let id = Id::hash(piece);
            w.forged_data(id, &random_bytes(3, 50_000));
            ids_victim.push(id);
        } else {
            ids_victim.push(w.data(piece));
        }
    }
    let mut all_good = ids_good;
    all_good.extend(w.content(&good[5 * 50_000..], 50_000));
    let root = w.tree(vec![
        handmade::file(b"good", all_good, good.len() as u64),
        handmade::file(b"victim", ids_victim.clone(), victim.len() as u64),
    ]);
    let (snap, packs) = w.finish(root).await.unwrap();
    assert_eq!(packs.len(), 1, "one pack holds every blob");

    let target = t.path().join("out");
    let summary = incomplete(restore_to(&repo, &snap, &target).await);
    assert_eq!(summary.damaged.len(), 1, "{:?}", summary.damaged);
    let d = &summary.damaged[0];
    assert_eq!(d.path, target.join("victim").display().to_string());
    assert_eq!(d.blob.as_deref(), Some(ids_victim[1].to_hex().as_str()));
    assert!(d.reason.contains("does not match its id"), "{d}");
    assert!(std::fs::read(target.join("good")).unwrap() == good);
    assert!(!target.join("victim").exists());
    assert_no_temporaries(&target);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_packs_and_trees_cost_only_what_they_hold() {
    let t = tempfile::tempdir().unwrap();
    let repo_dir = t.path().join("repo");
    let repo = init_repo(&repo_dir).await;
    let mut w = SnapshotWriter::new(&repo);
    let keep = w.data(b"kept");
    let kept_tree = w.tree(vec![handmade::file(b"kept", vec![keep], 4)]);
    w.cut_pack();
    let gone = w.data(b"gone with its pack");
    let lost_tree = w.tree(vec![handmade::file(b"inner", vec![keep], 4)]);
    w.cut_pack();
    let root = w.tree(vec![
        handmade::file(b"a-gone", vec![gone], 18),
        handmade::dir(b"b-kept", kept_tree),
        handmade::dir(b"c-lost", lost_tree),
        handmade::file(b"d-unindexed", vec![Id::hash(b"never stored")], 12),
    ]);
    let (snap, packs) = w.finish(root).await.unwrap();
    std::fs::remove_file(pack_path(&repo_dir, &packs[1])).unwrap();

    let target = t.path().join("out");
    let summary = incomplete(restore_to(&repo, &snap, &target).await);
    let by_name = |n: &str| {
        summary
            .damaged
            .iter()
            .find(|d| d.path == target.join(n).display().to_string())
            .unwrap_or_else(|| panic!("{n} not listed: {:?}", summary.damaged))
    };
    assert_eq!(summary.damaged.len(), 3, "{:?}", summary.damaged);
    assert_eq!(
        by_name("a-gone").blob.as_deref(),
        Some(gone.to_hex().as_str())
    );
    assert_eq!(
        by_name("a-gone").pack.as_deref(),
        Some(packs[1].to_hex().as_str())
    );
    assert_eq!(
        by_name("c-lost").blob.as_deref(),
        Some(lost_tree.to_hex().as_str())
    );
    assert!(
        by_name("d-unindexed")
            .reason
            .contains("not in the repository index")
    );
    assert_eq!(std::fs::read(target.join("b-kept/kept")).unwrap(), b"kept");
    assert!(!target.join("a-gone").exists());
    assert!(target.join("c-lost").is_dir() && !target.join("c-lost/inner").exists());
}
