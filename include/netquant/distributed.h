// Scale-out with MPI: the same binary runs alone or under mpirun/srun. Without MPI (or when not launched by
// an MPI launcher) every function here behaves as a single process of rank 0.
#pragma once

#include <functional>
#include <string>

#include "netquant/quantize.h"

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
// Runs `work`; if it throws (nq::Error, out of memory, anything else), ends the whole job as above with the
// matching exit status, then rethrows (single process). For work between collectives, where one rank leaving
// would leave the others waiting forever.
void run_or_abort_job(const std::function<void()>& work);

// ---- sharded global quantization ----
// Quantizes a safetensors model (and optional importance file) with one shared codebook, each rank reading only
// its shard: a contiguous run of fixed blocks of the quantized weights (accum_block_size of their count), read
// by byte range. Every assign+accumulate pass folds the per-block statistics (Σh, Σhw, Σw, objective) in fp64
// in block order across the ranks (the running total passes from rank to rank) and sums the counts exactly,
// so the result is bitwise the same for any number of ranks, one included. Rank 0 gathers the indices and
// returns the whole model; the other ranks return an empty one.
// Methods: kmeans and hw-kmeans (Lloyd on the blocks, each sorted once, then nearest-level labels) and ecsq (λ
// or a target rate, assign+accumulate passes); init linear; pruning and every importance transform as in
// quantize_model. Backend: k-means runs on the CPU (--backend cuda is kUnsupported); ECSQ's passes run on each
// rank's GPU with --backend cuda, or with auto when every rank has one (then bitwise the same for any number of
// ranks among CUDA runs, and within the last bits of the CPU's sums).
struct ShardedQuantizeInfo {
  int ranks = 1;
  int64_t local_weights = 0;       // weights this rank read
  int passes = 0;                  // Lloyd iterations (on the sorted blocks) or ECSQ assign+accumulate passes
  double load_seconds = 0;         // this rank: read, validate, prune
  double compute_seconds = 0;      // this rank: local passes
  double communication_seconds = 0;  // this rank: folds, reductions and gathers, waiting included
  double max_compute_seconds = 0;  // the slowest rank's local passes
  // k-means on CUDA: how many ranks made their final labels on the host (the same rule) because their shard did
  // not fit the device's memory; the sorts and sums still ran on the device.
  int ranks_labelled_on_host = 0;
};
QuantizedModel quantize_model_sharded(const std::string& model_path, const std::string& importance_path,
                                      const ModelQuantizeParams& params, ShardedQuantizeInfo* info = nullptr);

}  // namespace nq
