//! Writes the seed inputs of the repository's fuzz targets (`fuzz/seeds/<target>/`, kept in
//! the repository; `scripts/fuzz.sh` copies them into each run's corpus): the objects of a
//! small real repository made with the fuzz targets' key (`MasterKey::from_seed([7; 32])`),
//! whole (the encrypted envelopes) and decrypted (the payload parsers), and both key files.
//! Each object file is named by the object's name, so `tests/fuzz_seeds.rs` can check every
//! seed still opens with today's code (a format change that leaves the corpus behind fails
//! there; rerun this to refresh it).
//!
//! `cargo run -p ferry-repo --example fuzz_seeds -- fuzz/seeds`

use ferry_repo::backup::local::backup_paths;
use ferry_repo::format::ObjectKind;
use ferry_repo::objects::{IndexObject, Snapshot, open_pack_trailer};
use ferry_repo::storage::{MemStorage, Storage};
use ferry_repo::*;
use std::path::Path;
use std::sync::Arc;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::env::args()
        .nth(1)
        .ok_or("usage: fuzz_seeds DIR (fuzz/seeds)")?;
    let out = Path::new(&out);
    let key = MasterKey::from_seed(&[7u8; 32]);
    let store = Arc::new(MemStorage::new());
    let repo = Repository::init(store.clone(), &key.put_key())?;
    let tmp = tempfile::tempdir()?;
    let src = tmp.path().join("src");
    std::fs::create_dir_all(src.join("etc/app"))?;
    std::fs::write(
        src.join("etc/app/app.conf"),
        b"listen = 0.0.0.0:8080\nworkers = 4\n",
    )?;
    std::fs::write(src.join("etc/hostname"), b"nas\n")?;
    std::fs::write(
        src.join("syslog"),
        "Dec  1 00:00:01 nas cron[123]: job ran\n".repeat(200),
    )?;
    std::os::unix::fs::symlink("app/app.conf", src.join("etc/current"))?;
    let opts = BackupOptions {
        cache_dir: Some(tmp.path().join("cache")),
        host: Some("nas".into()),
        workers: 1,
        ..Default::default()
    };
    backup_paths(
        &repo,
        &key.put_key(),
        std::slice::from_ref(&src),
        opts,
        Arc::new(NoProgress),
    )?;

    let write = |target: &str, name: &str, bytes: &[u8]| -> std::io::Result<()> {
        let dir = out.join(target);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(name), bytes)
    };
    let one = |kind: ObjectKind| -> Result<(String, Vec<u8>), Box<dyn std::error::Error>> {
        let name = store
            .list(kind)?
            .into_iter()
            .next()
            .ok_or(format!("no {kind:?} object"))?;
        let bytes = store.get(kind, &name)?;
        Ok((name, bytes))
    };
    let (_, config) = one(ObjectKind::Config)?;
    write("config", "config", &config)?;
    write("header", "config", &config[..config.len().min(64)])?;
    let (name, index) = one(ObjectKind::Index)?;
    write("index", &name, &index)?;
    write(
        "index",
        "payload",
        &IndexObject::open(&key, &index, &name)?.to_bytes(),
    )?;
    write("header", "index", &index[..index.len().min(64)])?;
    let (name, snap) = one(ObjectKind::Snapshot)?;
    write("snapshot", &name, &snap)?;
    let snapshot = Snapshot::open(&key, &snap, &name)?;
    write("snapshot", "payload", &snapshot.to_bytes())?;
    write("header", "snapshot", &snap[..snap.len().min(64)])?;
    let (name, pack) = one(ObjectKind::Pack)?;
    write("pack", &name, &pack)?;
    write(
        "pack",
        "trailer",
        &open_pack_trailer(&key, &pack, &name)?.to_bytes(),
    )?;
    write("header", "pack", &pack[..pack.len().min(64)])?;
    let reader = repo.reader(&key)?;
    write("tree", "root", &reader.read_blob(&snapshot.root)?)?;
    write("key_file", "master", key.to_armored(None)?.as_bytes())?;
    write(
        "key_file",
        "put",
        key.put_key().to_armored(None)?.as_bytes(),
    )?;
    println!("seeds written under {}", out.display());
    Ok(())
}
