//! Build checks of the optional `mpi` feature; the default build does nothing here.
//!
//! The `mpi` feature compiles rsmpi, whose build script finds the MPI library (through
//! `mpicc -show` or pkg-config) and generates its bindings with bindgen, which loads
//! libclang. When either is missing, that build fails deep inside a dependency with a
//! message about probes and dynamic libraries; this script fails first, with one message
//! that names the packages to install. (Cargo runs this script before rsmpi's, which
//! waits for bindgen to compile; after a failure it starts no new work.)

use std::env;
use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if env::var_os("CARGO_FEATURE_MPI").is_none() {
        return;
    }
    for var in ["MPICC", "MPI_PKG_CONFIG", "PKG_CONFIG_PATH", "PKG_CONFIG_LIBDIR", "LIBCLANG_PATH", "PATH"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    // MS-MPI on Windows and the system libraries elsewhere are rsmpi's to find.
    if env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux") {
        return;
    }
    let mut missing = Vec::new();
    if !mpi_found() {
        missing.push("an MPI library (no working `mpicc -show`, and pkg-config knows neither ompi nor mpich)");
    }
    if !libclang_found() {
        missing.push("libclang, which generates the MPI bindings (set LIBCLANG_PATH if it is installed elsewhere)");
    }
    if !missing.is_empty() {
        // Cargo shows a failed build script's stderr; a panic would add a backtrace note.
        eprintln!(
            "\n\nerror: the `mpi` feature of wgrad builds against the system's MPI, and this machine lacks {}.\n\
             On Debian or Ubuntu install them with\n\n    \
             sudo apt-get install -y libopenmpi-dev openmpi-bin libclang-dev\n\n\
             (Fedora: openmpi-devel clang-devel, then `module load mpi`; or build without `--features mpi`).\n",
            missing.join(" and ")
        );
        std::process::exit(1);
    }
}

/// Whether rsmpi's probe will find MPI: `$MPICC` or `mpicc` answering `-show`, or a
/// pkg-config entry for Open MPI, MPICH or `$MPI_PKG_CONFIG`.
fn mpi_found() -> bool {
    let mpicc = env::var("MPICC").unwrap_or_else(|_| "mpicc".into());
    if Command::new(&mpicc).arg("-show").output().is_ok_and(|o| o.status.success()) {
        return true;
    }
    let mut names = vec!["ompi".to_string(), "mpich".to_string()];
    if let Ok(name) = env::var("MPI_PKG_CONFIG") {
        names.insert(0, name);
    }
    names.iter().any(|name| Command::new("pkg-config").args(["--exists", name]).status().is_ok_and(|s| s.success()))
}

/// Whether bindgen will find libclang: `$LIBCLANG_PATH`, or a `libclang*.so*` in the
/// folders clang-sys searches on Linux.
fn libclang_found() -> bool {
    if env::var_os("LIBCLANG_PATH").is_some() {
        return true;
    }
    let mut dirs: Vec<String> =
        ["/usr/lib", "/usr/lib64", "/usr/local/lib", "/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu"]
            .map(String::from)
            .to_vec();
    if let Ok(entries) = std::fs::read_dir("/usr/lib") {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("llvm") {
                dirs.push(format!("/usr/lib/{name}/lib"));
            }
        }
    }
    if let Ok(out) = Command::new("llvm-config").arg("--libdir").output() {
        dirs.push(String::from_utf8_lossy(&out.stdout).trim().to_string());
    }
    dirs.iter().any(|dir| has_libclang(Path::new(dir)))
}

fn has_libclang(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else { return false };
    entries.flatten().any(|e| {
        let name = e.file_name().to_string_lossy().into_owned();
        // libclang.so.1 or libclang-14.so.1, not libclang-cpp or the runtime libraries.
        let versioned =
            name.strip_prefix("libclang-").is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()));
        (name.starts_with("libclang.so") || versioned) && name.contains(".so")
    })
}
