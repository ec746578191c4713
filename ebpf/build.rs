//! Compiles the eBPF programs under `src/bpf/` with clang (`-O2 -g -target bpf`) and runs a
//! host program that records the shared header's layout for the Rust mirror test.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const INSTALL: &str = "herald-ebpf needs clang and libbpf headers to build its eBPF programs; \
     on Debian/Ubuntu: `apt-get install clang libbpf-dev` (or run `make deps` as root)";

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets it"));
    let include = manifest.join("include");
    let bpf = manifest.join("src/bpf");
    println!("cargo:rerun-if-changed=include");
    println!("cargo:rerun-if-changed=src/bpf");
    println!("cargo:rerun-if-changed=build/layout.c");
    println!("cargo:rerun-if-env-changed=CLANG");

    let clang = env::var("CLANG").unwrap_or_else(|_| "clang".to_owned());
    match Command::new(&clang).arg("--version").output() {
        Ok(o) if o.status.success() => {}
        _ => panic!("`{clang}` not found or not working. {INSTALL}"),
    }
    if !Path::new("/usr/include/bpf/bpf_helpers.h").exists() {
        panic!("/usr/include/bpf/bpf_helpers.h not found. {INSTALL}");
    }

    let objects: [(&str, &str, &[&str]); 3] = [
        ("herald_xdp.bpf.c", "herald_xdp.bpf.o", &[]),
        (
            "herald_xdp.bpf.c",
            "herald_xdp_bench.bpf.o",
            &["-DHERALD_BENCH"],
        ),
        ("herald_decap.bpf.c", "herald_decap.bpf.o", &[]),
    ];
    for (src, obj, defines) in objects {
        let mut cmd = Command::new(&clang);
        cmd.args(["-O2", "-g", "-target", "bpf", "-Wall", "-Werror"])
            .arg(format!("-I{}", include.display()))
            .arg(format!("-I{}", bpf.display()))
            // Debian keeps asm/types.h under the multiarch directory.
            .arg(format!("-I/usr/include/{}-linux-gnu", multiarch()))
            .args(defines)
            .arg("-c")
            .arg(bpf.join(src))
            .arg("-o")
            .arg(out.join(obj));
        run(&mut cmd, &format!("compiling {src}"));
    }

    let layout_bin = out.join("layout");
    run(
        Command::new(&clang)
            .arg(format!("-I{}", include.display()))
            .arg(manifest.join("build/layout.c"))
            .arg("-o")
            .arg(&layout_bin),
        "compiling build/layout.c",
    );
    let dump = run(&mut Command::new(&layout_bin), "running the layout dump");
    std::fs::write(out.join("layout.txt"), dump).expect("writing layout.txt");
}

fn multiarch() -> &'static str {
    match env::var("CARGO_CFG_TARGET_ARCH").as_deref() {
        Ok("aarch64") => "aarch64",
        _ => "x86_64",
    }
}

fn run(cmd: &mut Command, what: &str) -> Vec<u8> {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: {e}. {INSTALL}"));
    if !out.status.success() {
        panic!(
            "{what} failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            INSTALL
        );
    }
    out.stdout
}
