//! Writes the CRDs to `deploy/crds/` (or the directory given as the only argument).

use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let dir = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join("deploy")
                .join("crds")
        });
    std::fs::create_dir_all(&dir)?;
    for (file, crd) in herald_api::crds::all() {
        let path = dir.join(file);
        std::fs::write(&path, herald_api::crds::render(&crd))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
