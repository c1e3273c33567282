// Sweep points spread over MPI ranks: dynamic scheduling by a dispatcher thread on rank 0, gather by index.
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <chrono>
#include <cstring>
#include <thread>

#include "netquant/distributed.h"
#include "netquant/error.h"
#include "netquant/progress.h"
#include "netquant/sweep.h"

#if NQ_HAVE_MPI
#include <mpi.h>
#endif

namespace nq {

#if NQ_HAVE_MPI
namespace {
constexpr int kTagRequest = 7101;
constexpr int kTagReply = 7102;

// Byte serialization of points for the gather (same machine architecture on every rank is assumed: MPI jobs
// of one binary).
template <class T>
void put(std::string& out, const T& v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof v);
}
void put_string(std::string& out, const std::string& s) {
  put<uint64_t>(out, s.size());
  out += s;
}
template <class T>
T get(const std::string& in, size_t& pos) {
  NQ_ASSERT(pos + sizeof(T) <= in.size());
  T v;
  std::memcpy(&v, in.data() + pos, sizeof v);
  pos += sizeof v;
  return v;
}
std::string get_string(const std::string& in, size_t& pos) {
  const auto n = get<uint64_t>(in, pos);
  NQ_ASSERT(pos + n <= in.size());
  std::string s = in.substr(pos, n);
  pos += n;
  return s;
}

std::string serialize(const std::vector<SweepPoint>& points) {
  std::string out;
  for (const auto& p : points) {
    put<uint64_t>(out, p.index);
    put_string(out, p.method);
    put_string(out, p.scope);
    put_string(out, p.include);
    put_string(out, p.exclude);
    put_string(out, p.knob_name);
    put(out, p.knob);
    put(out, p.stats);  // QuantStats is trivially copyable (numbers only)
    put(out, p.metrics);
  }
  return out;
}

void deserialize(const std::string& in, std::vector<SweepPoint>& out) {
  size_t pos = 0;
  while (pos < in.size()) {
    SweepPoint p;
    p.index = get<uint64_t>(in, pos);
    p.method = get_string(in, pos);
    p.scope = get_string(in, pos);
    p.include = get_string(in, pos);
    p.exclude = get_string(in, pos);
    p.knob_name = get_string(in, pos);
    p.knob = get<double>(in, pos);
    p.stats = get<QuantStats>(in, pos);
    p.metrics = get<TaskMetrics>(in, pos);
    out.push_back(std::move(p));
  }
}
}  // namespace
#endif

std::vector<SweepPoint> run_sweep_distributed(const TensorSet& model, const TensorSet* importance,
                                              const std::vector<SweepPointSpec>& specs, const SweepEvaluator& evaluate) {
  const ProcessGroup& group = process_group();
  if (group.size == 1) return run_sweep(model, importance, specs, evaluate);
#if !NQ_HAVE_MPI
  return run_sweep(model, importance, specs, evaluate);
#else
  static_assert(std::is_trivially_copyable<QuantStats>::value, "QuantStats is sent as bytes");
  static_assert(std::is_trivially_copyable<TaskMetrics>::value, "TaskMetrics is sent as bytes");
  // The unit of work is a batch of points (λ points quantized together), small enough that every rank gets
  // about two.
  const std::vector<SweepBatch> batches = plan_sweep_batches(
      model, specs, std::max<int64_t>(1, static_cast<int64_t>(specs.size()) / (2 * group.size)));
  const size_t n = batches.size();
  std::vector<SweepPoint> mine;
  auto compute = [&](size_t i) {
    run_or_abort_job([&] {
      for (SweepPoint& p : run_sweep_batch(model, importance, specs, batches[i], evaluate))
        mine.push_back(std::move(p));
    });
  };

  int provided = 0;
  MPI_Query_thread(&provided);
  if (provided < MPI_THREAD_MULTIPLE) {
    for (size_t i = static_cast<size_t>(group.rank); i < n; i += static_cast<size_t>(group.size)) compute(i);
  } else if (group.is_root()) {
    std::atomic<size_t> next{0};
    Progress progress("sweep", static_cast<int64_t>(n));
    std::thread dispatcher([&] {
      int finished = 0;
      while (finished < group.size - 1) {
        int flag = 0;
        MPI_Status status;
        MPI_Iprobe(MPI_ANY_SOURCE, kTagRequest, MPI_COMM_WORLD, &flag, &status);
        if (!flag) {  // poll gently: a blocking receive would spin a core the workers need
          std::this_thread::sleep_for(std::chrono::milliseconds(1));
          continue;
        }
        int request = 0;
        MPI_Recv(&request, 1, MPI_INT, status.MPI_SOURCE, kTagRequest, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        const size_t i = next.fetch_add(1);
        int64_t reply = i < n ? static_cast<int64_t>(i) : -1;
        if (reply < 0) ++finished;
        MPI_Send(&reply, 1, MPI_INT64_T, status.MPI_SOURCE, kTagReply, MPI_COMM_WORLD);
      }
    });
    for (;;) {
      const size_t i = next.fetch_add(1);
      if (i >= n) break;
      progress.update(static_cast<int64_t>(i));
      compute(i);
    }
    dispatcher.join();
    progress.finish();
  } else {
    for (;;) {
      int request = 1;
      int64_t i = -1;
      MPI_Send(&request, 1, MPI_INT, 0, kTagRequest, MPI_COMM_WORLD);
      MPI_Recv(&i, 1, MPI_INT64_T, 0, kTagReply, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
      if (i < 0) break;
      compute(static_cast<size_t>(i));
    }
  }

  // Test hook: lets the test suite check that one failing rank ends the whole job cleanly. It fires once the
  // rank's share of the work is done, and that share may be nothing: rank 0 hands out batches as they are asked
  // for and works through them itself, so on a small sweep it can finish them all before another rank asks.
  if (const char* fail = std::getenv("NQ_TEST_FAIL_RANK"); fail && std::atoi(fail) == group.rank)
    abort_job_on_error("injected failure (NQ_TEST_FAIL_RANK)", 2);

  // Gather every rank's points on rank 0, then restore index order.
  const std::string bytes = serialize(mine);
  int len = static_cast<int>(bytes.size());
  std::vector<int> lens(static_cast<size_t>(group.size)), displs(static_cast<size_t>(group.size));
  MPI_Gather(&len, 1, MPI_INT, lens.data(), 1, MPI_INT, 0, MPI_COMM_WORLD);
  std::string all;
  if (group.is_root()) {
    int total = 0;
    for (int r = 0; r < group.size; ++r) {
      displs[static_cast<size_t>(r)] = total;
      total += lens[static_cast<size_t>(r)];
    }
    all.resize(static_cast<size_t>(total));
  }
  MPI_Gatherv(bytes.data(), len, MPI_BYTE, all.data(), lens.data(), displs.data(), MPI_BYTE, 0, MPI_COMM_WORLD);
  if (!group.is_root()) return {};
  std::vector<SweepPoint> points;
  deserialize(all, points);
  std::sort(points.begin(), points.end(), [](const SweepPoint& a, const SweepPoint& b) { return a.index < b.index; });
  NQ_ASSERT(points.size() == specs.size());
  mark_duplicates(points);
  return points;
#endif
}

}  // namespace nq
