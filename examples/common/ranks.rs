//! Data-parallel runs of the examples: under `mpirun` (detected from the variables it
//! sets) or with `--distributed`, a build with the `mpi` feature joins the MPI world and
//! each process trains on its share of every epoch, with gradients averaged across the
//! processes (`wgrad::distributed`). Without either, the run is a world of one and
//! nothing changes: no MPI call is made at all.
//!
//! ```sh
//! mpirun -np 2 cargo run --release --features mpi --example mnist_mlp
//! ```

use wgrad::data::DistributedSampler;
use wgrad::nn::Module;
use wgrad::train::Trainer;
use wgrad::Device;

/// The switch that asks for a data-parallel run outside `mpirun` detection.
pub const DISTRIBUTED: &str = "distributed";

/// This process's place in a data-parallel run (rank 0 of 1 when there is none).
pub struct Ranks {
    #[cfg(feature = "mpi")]
    world: Option<wgrad::distributed::World>,
}

impl Ranks {
    /// Joins the MPI world when `--distributed` was given or `mpirun` started the process
    /// (in a build with the `mpi` feature); otherwise a world of one. `--distributed` in a
    /// build without the feature is a usage error.
    pub fn join(distributed: bool) -> Result<Ranks, String> {
        #[cfg(feature = "mpi")]
        {
            if distributed || wgrad::distributed::launched_by_mpirun() {
                let world = wgrad::distributed::World::init().map_err(|e| format!("cannot start MPI: {e}"))?;
                return Ok(Ranks { world: Some(world) });
            }
            Ok(Ranks { world: None })
        }
        #[cfg(not(feature = "mpi"))]
        {
            if distributed {
                return Err("--distributed trains over MPI: build the example with --features mpi".into());
            }
            if launched_by_mpirun() {
                eprintln!(
                    "warning: started by mpirun, but this build has no `mpi` feature: every process trains alone on \
                     all the data (build with --features mpi for data-parallel training)"
                );
            }
            Ok(Ranks {})
        }
    }

    /// A world of one that never starts MPI, for examples that train in one process only.
    pub fn single() -> Ranks {
        Ranks {
            #[cfg(feature = "mpi")]
            world: None,
        }
    }

    pub fn rank(&self) -> usize {
        #[cfg(feature = "mpi")]
        if let Some(world) = &self.world {
            return world.rank();
        }
        0
    }

    pub fn size(&self) -> usize {
        #[cfg(feature = "mpi")]
        if let Some(world) = &self.world {
            return world.size();
        }
        1
    }

    /// Whether this process prints the run's report and writes its files.
    pub fn is_root(&self) -> bool {
        self.rank() == 0
    }

    /// Whether this is a data-parallel run of more than one process.
    pub fn is_parallel(&self) -> bool {
        self.size() > 1
    }

    /// The device `--device` names; on a machine with several GPUs, process `r` of this
    /// machine takes hardware adapter `r mod count`. Exits with the error on failure.
    pub fn open_device(&self, name: &str) -> Device {
        #[cfg(feature = "mpi")]
        if let Some(world) = self.world.as_ref().filter(|w| w.size() > 1) {
            let opened = match name {
                "gpu" => Device::gpu_for_rank(world.local_rank()),
                // `auto` without WGRAD_DEVICE: a hardware GPU when there is one, else the CPU.
                "auto" if std::env::var("WGRAD_DEVICE").is_err() => {
                    Device::gpu_for_rank(world.local_rank()).or_else(|_| Ok(Device::cpu()))
                }
                _ => Device::by_name(name),
            };
            return opened.unwrap_or_else(|e| super::fail(&format!("cannot open the '{name}' device: {e}")));
        }
        super::open_device(name)
    }

    /// This process's share of each epoch's training order, in a data-parallel run.
    pub fn sampler(&self) -> Option<DistributedSampler> {
        self.is_parallel().then(|| DistributedSampler::new(self.size(), self.rank()))
    }

    /// `trainer` averaging `model`'s gradients across the processes, in a data-parallel
    /// run: rank 0's initial weights are checked against every rank's and copied to all.
    /// Exits with the error when the model differs between the processes.
    pub fn data_parallel(&self, trainer: Trainer, model: &dyn Module) -> Trainer {
        #[cfg(feature = "mpi")]
        if let Some(world) = self.world.as_ref().filter(|w| w.size() > 1) {
            return match wgrad::distributed::DistributedDataParallel::new(model, world) {
                Ok(ddp) => trainer.data_parallel(ddp),
                Err(e) => super::fail(&e.to_string()),
            };
        }
        let _ = model;
        trainer
    }

    /// ` (rank r of n)` in a data-parallel run, else nothing: for the lines every process
    /// prints.
    pub fn tag(&self) -> String {
        if self.is_parallel() {
            format!(" (rank {} of {})", self.rank(), self.size())
        } else {
            String::new()
        }
    }
}

/// Whether `mpirun` started this process (the variables Open MPI, MPICH and PMIx set).
#[cfg(not(feature = "mpi"))]
fn launched_by_mpirun() -> bool {
    ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"].iter().any(|v| std::env::var_os(v).is_some())
}
