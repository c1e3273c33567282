// MPI process group: lazy initialization under an MPI launcher, finalization at exit, whole-job abort.
#include "netquant/distributed.h"

#include "core/cuda_device.h"
#include "netquant/error.h"

#include <cstdio>
#include <cstdlib>
#include <new>

#if NQ_HAVE_MPI
#include <mpi.h>
#endif

namespace nq {

namespace {
// True when an MPI launcher started this process (so MPI_Init will find its peers instead of a singleton).
bool launched_by_mpi() {
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS"}) {
    if (std::getenv(var) != nullptr) return true;
  }
  return false;
}

[[maybe_unused]] int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v ? std::atoi(v) : fallback;
}

#if NQ_HAVE_MPI
void finalize_mpi() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}
#endif
}  // namespace

bool mpi_compiled() { return NQ_HAVE_MPI != 0; }

const ProcessGroup& process_group() {
  static const ProcessGroup group = [] {
    ProcessGroup g;
#if NQ_HAVE_MPI
    if (launched_by_mpi()) {
      int provided = 0;
      MPI_Init_thread(nullptr, nullptr, MPI_THREAD_MULTIPLE, &provided);
      std::atexit(finalize_mpi);
      MPI_Comm_rank(MPI_COMM_WORLD, &g.rank);
      MPI_Comm_size(MPI_COMM_WORLD, &g.size);
      MPI_Comm local;
      MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, g.rank, MPI_INFO_NULL, &local);
      MPI_Comm_rank(local, &g.local_rank);
      MPI_Comm_free(&local);
      // One GPU per rank on a node: node-local rank r takes device r mod (devices on the node).
      if (const int devices = cuda::device_count(); devices > 0) cuda::set_device(g.local_rank % devices);
      if (provided < MPI_THREAD_MULTIPLE && g.size > 1 && g.rank == 0)
        std::fprintf(stderr, "netquant: MPI gives no MPI_THREAD_MULTIPLE; sweeps use static scheduling\n");
    }
#else
    if (launched_by_mpi() && env_int("OMPI_COMM_WORLD_RANK", env_int("PMI_RANK", 0)) == 0)
      std::fprintf(stderr, "netquant: started by an MPI launcher, but this build has no MPI (NQ_MPI=OFF): "
                           "every rank runs the whole job alone\n");
#endif
    return g;
  }();
  return group;
}

void abort_job_on_error(const std::string& message, int exit_status) {
#if NQ_HAVE_MPI
  const ProcessGroup& g = process_group();
  if (g.size > 1) {
    std::fprintf(stderr, "error: rank %d of %d: %s\n", g.rank, g.size, message.c_str());
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, exit_status);
  }
#else
  (void)message;
  (void)exit_status;
#endif
}

void run_or_abort_job(const std::function<void()>& work) {
  try {
    work();
  } catch (const Error& e) {
    abort_job_on_error(e.what(), exit_status_for(e.code()));
    throw;
  } catch (const std::bad_alloc&) {
    abort_job_on_error("out of memory", 3);
    throw;
  } catch (const std::exception& e) {
    abort_job_on_error(std::string("internal error: ") + e.what(), 1);
    throw;
  }
}

}  // namespace nq
