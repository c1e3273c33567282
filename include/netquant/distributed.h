// Scale-out with MPI: the same binary runs alone or under mpirun/srun. Without MPI (or when not launched by
// an MPI launcher) every function here behaves as a single process of rank 0.
#pragma once

#include <string>

namespace nq {

struct ProcessGroup {
  int rank = 0;
  int size = 1;
  int local_rank = 0;  // rank on this node: picks the GPU when several ranks share a machine
  bool is_root() const { return rank == 0; }
};

// Initializes MPI on first use when the process was started by an MPI launcher (Open MPI, MPICH/Hydra, PMIx,
// Slurm); finalizes at exit. Thread level: MPI_THREAD_MULTIPLE (the sweep dispatcher runs in a thread).
const ProcessGroup& process_group();
bool mpi_compiled();  // built with NQ_MPI

// Ends the whole job after a failure on this rank: prints "error: rank R: message" and aborts every rank
// (MPI_Abort) so no rank writes partial output. Single process: just returns (the caller rethrows).
void abort_job_on_error(const std::string& message, int exit_status);

}  // namespace nq
