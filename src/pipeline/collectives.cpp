// Deterministic collectives over MPI_COMM_WORLD (or one process).
#include "pipeline/collectives.h"

#include <algorithm>

#include "netquant/distributed.h"
#include "netquant/error.h"

#if NQ_HAVE_MPI
#include <mpi.h>
#endif

namespace nq::dist {

namespace {
#if NQ_HAVE_MPI
bool multi() { return process_group().size > 1; }
constexpr int kTagFold = 7101;
constexpr int kTagGather = 7102;
// Messages are split so that no count exceeds what an MPI int can say.
constexpr size_t kMaxMessage = size_t{1} << 28;
constexpr size_t kGatherPiece = size_t{1} << 26;  // bytes per gathered message (the root's one buffer)
#endif

void fold_into(std::vector<double>& total, const std::vector<std::vector<double>>& partials) {
  for (const auto& p : partials) {
    NQ_ASSERT(p.size() == total.size());
    for (size_t i = 0; i < total.size(); ++i) total[i] += p[i];
  }
}
}  // namespace

void sum_in_place(std::vector<int64_t>& values) {
#if NQ_HAVE_MPI
  if (multi() && !values.empty())
    MPI_Allreduce(MPI_IN_PLACE, values.data(), static_cast<int>(values.size()), MPI_INT64_T, MPI_SUM,
                  MPI_COMM_WORLD);
#else
  (void)values;
#endif
}

int64_t sum(int64_t value) {
  std::vector<int64_t> v{value};
  sum_in_place(v);
  return v[0];
}

int64_t exclusive_prefix_sum(int64_t value) {
#if NQ_HAVE_MPI
  if (multi()) {
    int64_t below = 0;
    MPI_Exscan(&value, &below, 1, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD);
    return process_group().rank == 0 ? 0 : below;  // MPI leaves rank 0's result undefined
  }
#endif
  (void)value;
  return 0;
}

double min(double value) {
#if NQ_HAVE_MPI
  if (multi()) MPI_Allreduce(MPI_IN_PLACE, &value, 1, MPI_DOUBLE, MPI_MIN, MPI_COMM_WORLD);
#endif
  return value;
}

double max(double value) {
#if NQ_HAVE_MPI
  if (multi()) MPI_Allreduce(MPI_IN_PLACE, &value, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
#endif
  return value;
}

std::vector<double> ordered_fold(size_t width, const std::function<void(std::vector<double>&)>& fold_mine) {
  std::vector<double> total(width, 0.0);
#if NQ_HAVE_MPI
  if (multi()) {
    const ProcessGroup& g = process_group();
    NQ_ASSERT(width <= kMaxMessage);
    const int n = static_cast<int>(width);
    if (g.rank > 0) MPI_Recv(total.data(), n, MPI_DOUBLE, g.rank - 1, kTagFold, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    fold_mine(total);
    if (g.rank + 1 < g.size) MPI_Send(total.data(), n, MPI_DOUBLE, g.rank + 1, kTagFold, MPI_COMM_WORLD);
    MPI_Bcast(total.data(), n, MPI_DOUBLE, g.size - 1, MPI_COMM_WORLD);
    return total;
  }
#endif
  fold_mine(total);
  return total;
}

std::vector<double> ordered_fold(const std::vector<std::vector<double>>& partials, size_t width) {
  return ordered_fold(width, [&](std::vector<double>& total) { fold_into(total, partials); });
}

void gather_to_root(const uint8_t* data, size_t bytes, const std::function<void(const uint8_t*, size_t)>& sink) {
#if NQ_HAVE_MPI
  if (multi()) {
    const ProcessGroup& g = process_group();
    std::vector<int64_t> sizes(static_cast<size_t>(g.size), 0);
    sizes[static_cast<size_t>(g.rank)] = static_cast<int64_t>(bytes);
    sum_in_place(sizes);
    if (!g.is_root()) {
      for (size_t off = 0; off < bytes; off += kGatherPiece) {
        const size_t len = std::min(kGatherPiece, bytes - off);
        MPI_Send(data + off, static_cast<int>(len), MPI_BYTE, 0, kTagGather, MPI_COMM_WORLD);
      }
      return;
    }
    if (bytes > 0) sink(data, bytes);
    const int64_t largest = *std::max_element(sizes.begin() + 1, sizes.end());
    std::vector<uint8_t> piece(std::min(kGatherPiece, static_cast<size_t>(largest)));
    for (int r = 1; r < g.size; ++r) {
      const size_t count = static_cast<size_t>(sizes[static_cast<size_t>(r)]);
      for (size_t off = 0; off < count; off += kGatherPiece) {
        const size_t len = std::min(kGatherPiece, count - off);
        MPI_Recv(piece.data(), static_cast<int>(len), MPI_BYTE, r, kTagGather, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        sink(piece.data(), len);
      }
    }
    return;
  }
#endif
  if (bytes > 0) sink(data, bytes);
}

}  // namespace nq::dist
