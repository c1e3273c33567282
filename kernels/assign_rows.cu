// Op (f) on the GPU (quant_ops.h ResidentRows): one assignment pass over many rows at once, each task a row under
// its own codebook — the row/group ECSQ driver's pass over all its unfinished rows (and λ) becomes one upload of
// tables, one launch per launch shape and one merge, instead of thousands of op (a) calls too small to fill the
// device. w and h are uploaded once, when the object is made.
//
// Bits: task i's result must be what op (a) returns for its row alone, and nothing here chooses an order of
// summation. Each task is cut into op (a)'s accumulation blocks (accum_block_size of its length); every CTA runs op
// (a)'s assign_block (assign_block.cuh) in the launch shape op (a) picks for its k (the shape fixes the warps, hence
// the summation tree; a launch's dynamic shared memory is the largest of its tasks', and assign_block lays its
// shared memory out from k and the warp count alone); the merge folds each task's CTA partials in block order with
// op (a)'s fold_partials. A row's alignment only picks float4 or scalar loads, never which lane adds what.
//
// Launches: tasks are grouped by launch shape (a handful, a function of k); in a group's grid, CTA x works for the
// task with the last first-tile ≤ x (binary search over the group's first-tile prefix) on its block x − first.
// A call is cut into chunks of at most kChunkBytes of workspace (task records, tables, partials, outputs, labels),
// so device and pinned host memory stay bounded however many tasks a call has; a chunk is one upload (records,
// first tiles, tables), the launches, one merge, and two downloads (sums, counts) plus its labels.
#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "assign_block.cuh"
#include "core/cuda_device.h"
#include "core/iteration_errors.h"
#include "cuda_check.cuh"
#include "device_buffer.cuh"
#include "netquant/error.h"
#include "quant/quant_ops.h"

namespace nq::cuda {
namespace {

using namespace assign_impl;  // the device code op (a) runs

// Workspace of one chunk of a call; a single task larger than this still runs (alone in its chunk).
constexpr size_t kChunkBytes = size_t{256} << 20;

// One task as the kernels read it (built on the host, uploaded with the tables). Offsets are within the chunk.
struct RowTask {
  long long begin;  // the row's first value in w / h
  long long len;    // values in the row
  long long block;  // accum_block_size(len)
  long long kk;     // Σ k of the chunk's earlier tasks: its merged counts at kk
  long long table;  // its codebook's table at 4·table: kk, or 0 for every task of a shared codebook
  long long out;    // 3·kk + 3·(chunk index): its merged sums (3k) and scalars (3)
  long long part;   // Σ nblocks·k of earlier tasks: partial sums at 3·part, partial counts at part
  long long pblk;   // Σ nblocks of earlier tasks: partial scalars at 3·pblk
  long long label;  // Σ len of earlier tasks: its labels in the chunk's label buffer
  double lambda, lmin, span2;
  int k;
  int weighted;     // reads h (else h ≡ 1)
};

struct RowsLaunch {
  const RowTask* tasks;   // the group's tasks in tile order, every one with at least one block
  const unsigned* first;  // first tile of each: first[0] = 0, strictly ascending
  int ntasks;
  const float* w;
  const float* h;
  int32_t* labels;        // nullable
  const double* tables;
  double* psum;
  long long* pcount;
  double* pscal;
  bool table_in_smem, acc_in_smem, private_acc;
};

// The group's task of CTA x: the last one whose first tile is ≤ x (first[0] = 0 ≤ x).
__host__ __device__ inline int task_of_tile(const unsigned* first, int ntasks, unsigned x) {
  int lo = 0, hi = ntasks;  // invariant: first[lo] ≤ x, and hi = ntasks or first[hi] > x
  while (hi - lo > 1) {
    const int mid = lo + ((hi - lo) >> 1);
    if (first[mid] <= x) lo = mid;
    else hi = mid;
  }
  return lo;
}

// Op (a)'s parameters for task t's row alone, but addressing this chunk's buffers.
__host__ __device__ inline AssignParams row_params(const RowsLaunch& L, const RowTask& t) {
  AssignParams p{};  // every field set: those a row does not use (safe_max, thresh_labels) are zero, not garbage
  p.w = L.w + t.begin;
  p.h = t.weighted ? L.h + t.begin : nullptr;
  p.labels = L.labels ? L.labels + t.label : nullptr;
  p.n = static_cast<size_t>(t.len);
  p.block = static_cast<size_t>(t.block);
  point_at_table(p, L.tables + 4 * t.table, t.k);
  p.lambda = t.lambda;
  p.lmin = t.lmin;
  p.span2 = t.span2;
  p.psum = L.psum + 3 * t.part;
  p.pcount = L.pcount + t.part;
  p.pscal = L.pscal + 3 * t.pblk;
  p.vec = vector_access(p);
  p.table_in_smem = L.table_in_smem;
  p.acc_in_smem = L.acc_in_smem;
  p.private_acc = L.private_acc;
  p.thresh = nullptr;  // no threshold labels: the same labels, hence bits, as op (a)'s with or without them
  return p;
}

template <bool kPrivate>
__global__ void __launch_bounds__(kMaxWarps * 32, min_blocks_per_sm(kPrivate)) assign_rows_kernel(RowsLaunch L) {
  const unsigned x = blockIdx.x;
  const int task = task_of_tile(L.first, L.ntasks, x);
  const AssignParams p = row_params(L, L.tasks[task]);
  assign_block<false, kPrivate>(p, x - L.first[task]);
}

// One warp per task: its 4k + 3 outputs, each its CTAs' partials folded in block order (op (a)'s merge). A task
// without blocks (an empty row) gets zeros, op (a)'s result for n = 0.
constexpr int kMergeThreads = 128;
__global__ void merge_rows_kernel(const RowTask* __restrict__ tasks, int ntasks, const double* __restrict__ psum,
                                  const long long* __restrict__ pcount, const double* __restrict__ pscal,
                                  double* __restrict__ out_sum, long long* __restrict__ out_count) {
  const long long task = (static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x) >> 5;
  const int lane = static_cast<int>(threadIdx.x) & 31;
  if (task >= ntasks) return;
  const RowTask& t = tasks[task];
  const size_t nblocks = t.len > 0 ? static_cast<size_t>((t.len + t.block - 1) / t.block) : 0;
  double* sums = out_sum + t.out;
  for (int idx = lane; idx < 4 * t.k + 3; idx += 32)
    fold_partials(psum + 3 * t.part, pcount + t.part, pscal + 3 * t.pblk, nblocks, t.k, idx, sums,
                  out_count + t.kk, sums + 3 * t.k);
}

// Page-locked host staging, grow-only: the per-call uploads and downloads copy at full link speed.
class PinnedBytes {
 public:
  PinnedBytes() = default;
  PinnedBytes(const PinnedBytes&) = delete;
  PinnedBytes& operator=(const PinnedBytes&) = delete;
  ~PinnedBytes() { release(); }
  unsigned char* get(size_t need) {
    if (need > size_) {
      const size_t want = std::max(need, size_ + size_ / 2);
      release();
      NQ_CUDA_CHECK(cudaMallocHost(reinterpret_cast<void**>(&ptr_), want));
      size_ = want;
    }
    return ptr_;
  }
  unsigned char* data() const { return ptr_; }

 private:
  void release() noexcept {
    free_host_quietly(ptr_);  // never throws from a destructor
    ptr_ = nullptr;
    size_ = 0;
  }
  unsigned char* ptr_ = nullptr;
  size_t size_ = 0;
};

// Grow-only device buffer (its contents are not kept when it grows).
template <class T>
T* grow(DeviceBuffer<T>& buf, size_t need) {
  if (buf.size() < need) buf.allocate(std::max(need, buf.size() + buf.size() / 2));
  return buf.get();
}

// The codebook of each task: task i's own (books entry i), or entry 0 for every task (shared: the sharded driver's
// blocks), whose table is then built and uploaded once per chunk.
struct TaskBooks {
  const quant::CodebookBatch& books;
  size_t tasks;
  bool shared;
  int of(size_t i) const { return shared ? 0 : static_cast<int>(i); }
  int k(size_t i) const { return books.k(of(i)); }
};

// The rows as the host planner sees them: offsets and which rows read h.
struct RowsIndex {
  std::vector<int64_t> begin;   // rows + 1 offsets
  std::vector<uint8_t> uses_h;  // per row
  size_t len(int64_t r) const {
    return static_cast<size_t>(begin[static_cast<size_t>(r) + 1] - begin[static_cast<size_t>(r)]);
  }
};

size_t blocks_of(size_t len) {
  const size_t block = quant::accum_block_size(len);
  return (len + block - 1) / block;
}

// Workspace bytes a task takes in a chunk (alignment padding aside): record and first tile, table, partials, merged
// outputs, labels.
size_t task_bytes(size_t len, int k, bool with_labels) {
  const size_t kd = static_cast<size_t>(std::max(k, 0));
  return sizeof(RowTask) + sizeof(unsigned) + 4 * kd * sizeof(double) +
         blocks_of(len) * (3 * kd * sizeof(double) + kd * sizeof(long long) + 3 * sizeof(double)) +
         (3 * kd + 3) * sizeof(double) + kd * sizeof(long long) + (with_labels ? len * sizeof(int32_t) : 0);
}

struct Group {
  size_t pos;    // its first record in launch order
  size_t count;  // tasks
  size_t tiles;  // CTAs
  Shape shape;   // smem_bytes: the largest of its tasks'
};

// One chunk of a call, tasks [s, e): its layout, and (fill) its upload staged on the host.
//   upload (= the start of the device workspace): records in launch order | first tiles | tables
//   device only: partial sums 3·Σ nblocks·k | partial counts Σ nblocks·k | partial scalars 3·Σ nblocks |
//                merged sums Σ (3k + 3) | merged counts Σ k
//   download: merged sums at 0, merged counts at down_counts
struct ChunkPlan {
  size_t s = 0, m = 0;
  size_t sum_k = 0, sum_part = 0, sum_blk = 0, sum_len = 0;
  size_t table_k = 0;  // Σ k over the tables uploaded: sum_k, or one codebook's k when it is shared
  size_t off_first = 0, off_tables = 0, up_bytes = 0;
  size_t off_psum = 0, off_pcount = 0, off_pscal = 0, off_out = 0, out_bytes = 0, off_outn = 0, ws_bytes = 0;
  size_t down_counts = 0, down_bytes = 0;
  std::vector<RowTask> recs;  // chunk order (fill)
  std::vector<Shape> shapes;  // chunk order (fill)
  std::vector<Group> groups;  // launch order (fill)
};

void plan_layout(const RowsIndex& ri, const int64_t* rows, const TaskBooks& books, size_t s, size_t e,
                 ChunkPlan& c) {
  c.s = s;
  c.m = e - s;
  NQ_ASSERT(c.m >= 1 && c.m < static_cast<size_t>(INT_MAX));
  c.sum_k = c.sum_part = c.sum_blk = c.sum_len = 0;
  for (size_t i = s; i < e; ++i) {
    const size_t kd = static_cast<size_t>(std::max(books.k(i), 0));
    const size_t len = ri.len(rows[i]), nb = blocks_of(len);
    c.sum_k += kd;
    c.sum_part += nb * kd;
    c.sum_blk += nb;
    c.sum_len += len;
  }
  c.table_k = books.shared ? static_cast<size_t>(std::max(books.k(s), 0)) : c.sum_k;
  c.off_first = align_up(c.m * sizeof(RowTask));
  c.off_tables = align_up(c.off_first + c.m * sizeof(unsigned));
  c.up_bytes = align_up(c.off_tables + 4 * c.table_k * sizeof(double));
  c.off_psum = c.up_bytes;
  c.off_pcount = align_up(c.off_psum + 3 * c.sum_part * sizeof(double));
  c.off_pscal = align_up(c.off_pcount + c.sum_part * sizeof(long long));
  c.off_out = align_up(c.off_pscal + 3 * c.sum_blk * sizeof(double));
  c.out_bytes = (3 * c.sum_k + 3 * c.m) * sizeof(double);
  c.off_outn = align_up(c.off_out + c.out_bytes);
  c.ws_bytes = align_up(c.off_outn + c.sum_k * sizeof(long long));
  c.down_counts = align_up(c.out_bytes);
  c.down_bytes = c.down_counts + c.sum_k * sizeof(long long);
}

// Builds every task's table (op (a)'s checks) and record, and writes the upload to `up` (c.up_bytes).
void plan_fill(const RowsIndex& ri, const int64_t* rows, const TaskBooks& books, ChunkPlan& c,
               unsigned char* up) {
  const size_t m = c.m;
  double* tables = reinterpret_cast<double*>(up + c.off_tables);
  c.recs.resize(m);
  c.shapes.resize(m);
  // The records' offsets in order, then the tables (op (a)'s checks and prefix/suffix minima: most of the host's
  // time per pass) on the host threads.
  size_t kk = 0, part = 0, pblk = 0, lab = 0;
  for (size_t j = 0; j < m; ++j) {
    const size_t i = c.s + j;
    const int k = books.k(i);
    const int64_t row = rows[i];
    const size_t len = ri.len(row), nb = blocks_of(len);
    RowTask& r = c.recs[j];
    r.begin = ri.begin[static_cast<size_t>(row)];
    r.len = static_cast<long long>(len);
    r.block = static_cast<long long>(quant::accum_block_size(len));
    r.kk = static_cast<long long>(kk);
    r.table = books.shared ? 0 : r.kk;
    r.out = static_cast<long long>(3 * kk + 3 * j);
    r.part = static_cast<long long>(part);
    r.pblk = static_cast<long long>(pblk);
    r.label = static_cast<long long>(lab);
    r.k = k;
    r.weighted = ri.uses_h[static_cast<size_t>(row)];
    kk += static_cast<size_t>(std::max(k, 0));
    part += nb * static_cast<size_t>(std::max(k, 0));
    pblk += nb;
    lab += len;
  }
  auto set_table = [](RowTask& r, const CodebookTable& t) {
    r.lambda = t.lambda;
    r.lmin = t.lmin;
    r.span2 = t.span2;
  };
  if (books.shared) {  // one table for the chunk, its constants copied into every record
    const quant::CodebookBatch& b = books.books;
    const CodebookTable t = prepare_table(b.centers.data(), b.code_len.data(), b.k(0), b.lambda[0], tables);
    for (size_t j = 0; j < m; ++j) {
      set_table(c.recs[j], t);
      c.shapes[j] = t.shape;
    }
  } else {
    IterationErrors failed;
#pragma omp parallel for schedule(static, 256) if (m > 1024)
    for (long long jj = 0; jj < static_cast<long long>(m); ++jj) {
      const size_t j = static_cast<size_t>(jj), i = c.s + j;
      RowTask& r = c.recs[j];
      const quant::CodebookBatch& b = books.books;
      const size_t o = static_cast<size_t>(b.offsets[i]);
      failed.run(j, [&] {
        const CodebookTable t =
            prepare_table(b.centers.data() + o, b.code_len.data() + o, r.k, b.lambda[i], tables + 4 * r.table);
        set_table(r, t);
        c.shapes[j] = t.shape;
      });
    }
    failed.rethrow_first();
  }
  NQ_ASSERT(kk == c.sum_k && part == c.sum_part && pblk == c.sum_blk && lab == c.sum_len);
  // Launch order: the tasks with blocks grouped by launch shape (in order of first appearance), each group in chunk
  // order with its first-tile prefix; then the empty rows (only merged, to zeros).
  RowTask* rec_up = reinterpret_cast<RowTask*>(up);
  unsigned* first_up = reinterpret_cast<unsigned*>(up + c.off_first);
  c.groups.clear();
  std::vector<char> placed(m, 0);
  size_t pos = 0;
  for (size_t j = 0; j < m; ++j) {
    if (placed[j] || c.recs[j].len == 0) continue;
    Group g{pos, 0, 0, c.shapes[j]};
    for (size_t q = j; q < m; ++q) {
      if (placed[q] || c.recs[q].len == 0 || !same_shape(c.shapes[q], g.shape)) continue;
      const size_t nb = blocks_of(static_cast<size_t>(c.recs[q].len));
      NQ_ASSERT_MSG(g.tiles + nb <= static_cast<size_t>(INT_MAX), "resident rows: a launch of over 2^31 - 1 CTAs");
      rec_up[pos] = c.recs[q];
      first_up[pos] = static_cast<unsigned>(g.tiles);
      g.tiles += nb;
      g.shape.smem_bytes = std::max(g.shape.smem_bytes, c.shapes[q].smem_bytes);
      ++g.count;
      ++pos;
      placed[q] = 1;
    }
    c.groups.push_back(g);
  }
  for (size_t j = 0; j < m; ++j)
    if (c.recs[j].len == 0) {
      rec_up[pos] = c.recs[j];
      first_up[pos] = 0;
      ++pos;
    }
  NQ_ASSERT(pos == m);
}

// The next chunk's end: tasks from s while they fit kChunkBytes (at least one).
size_t chunk_end(const RowsIndex& ri, const int64_t* rows, const TaskBooks& books, size_t s, bool with_labels) {
  const size_t tasks = books.tasks;
  size_t e = s, bytes = 0;
  while (e < tasks) {
    const size_t c = task_bytes(ri.len(rows[e]), books.k(e), with_labels);
    if (e > s && bytes + c > kChunkBytes) break;
    bytes += c;
    ++e;
  }
  return e;
}

// quant_ops.h (f): w and h on the device for the object's life; each pass uploads only its codebooks.
class CudaResidentRows final : public quant::ResidentRows {
 public:
  CudaResidentRows(const float* w, const float* h, const int64_t* row_begin, int64_t rows, const uint8_t* weighted)
      : rows_(rows) {
    NQ_CHECK(rows >= 0, ErrorCode::kInvalidArgument, "resident rows: rows = " << rows);
    NQ_CHECK(rows == 0 || (row_begin && row_begin[0] == 0), ErrorCode::kInvalidArgument,
             "resident rows: the row offsets must be rows + 1 ascending values from 0");
    ri_.begin.assign(1, 0);
    ri_.uses_h.assign(static_cast<size_t>(rows), 0);
    bool any_h = false;
    for (int64_t r = 0; r < rows; ++r) {
      NQ_CHECK(row_begin[r + 1] >= row_begin[r], ErrorCode::kInvalidArgument,
               "resident rows: row " << r << " has negative length");
      ri_.begin.push_back(row_begin[r + 1]);
      const bool uses = h && (!weighted || weighted[r]);
      ri_.uses_h[static_cast<size_t>(r)] = uses;
      any_h = any_h || uses;
    }
    const size_t n = static_cast<size_t>(ri_.begin.back());
    NQ_CHECK(n == 0 || w, ErrorCode::kInvalidArgument, "resident rows: null weights");
    dw_.upload(w, n);
    if (any_h) dh_.upload(h, n);
  }

  // On an exception (a bad task) the earlier chunks' results may already be in `out` and `labels`.
  void assign_accumulate(const int64_t* rows, const quant::CodebookBatch& books, int32_t* labels,
                         std::vector<quant::AssignAccum>& out) override {
    check_batch(books);
    run(rows, TaskBooks{books, static_cast<size_t>(books.size()), false}, labels, out);
  }

  void assign_accumulate_shared(const int64_t* rows, size_t tasks, const double* centers, const double* code_len,
                                int k, double lambda, int32_t* labels, std::vector<quant::AssignAccum>& out) override {
    NQ_CHECK(k >= 1 && centers && code_len, ErrorCode::kInvalidArgument,
             "resident rows: a shared codebook of k = " << k << (centers && code_len ? "" : " (null)"));
    shared_.clear();
    shared_.add(centers, code_len, k, lambda);
    run(rows, TaskBooks{shared_, tasks, true}, labels, out);
  }

 private:
  static void check_batch(const quant::CodebookBatch& books) {
    const size_t tasks = static_cast<size_t>(books.size());
    NQ_CHECK(books.offsets.size() == tasks + 1 && books.centers.size() == books.code_len.size() &&
                 static_cast<size_t>(books.offsets.back()) <= books.centers.size(),
             ErrorCode::kInvalidArgument, "resident rows: inconsistent codebook batch");
  }

  void run(const int64_t* rows, const TaskBooks& books, int32_t* labels, std::vector<quant::AssignAccum>& out) {
    bind_thread_device();
    const size_t tasks = books.tasks;
    NQ_CHECK(tasks == 0 || rows, ErrorCode::kInvalidArgument, "resident rows: no row list for " << tasks << " tasks");
    for (size_t i = 0; i < tasks; ++i)
      NQ_CHECK(rows[i] >= 0 && rows[i] < rows_, ErrorCode::kInvalidArgument,
               "resident rows: task " << i << " names row " << rows[i] << " of " << rows_);
    out.resize(tasks);
    size_t label_at = 0;
    for (size_t s = 0; s < tasks;) {
      const size_t e = chunk_end(ri_, rows, books, s, labels != nullptr);
      plan_layout(ri_, rows, books, s, e, plan_);
      plan_fill(ri_, rows, books, plan_, up_.get(plan_.up_bytes));
      run_chunk(plan_, labels ? labels + label_at : nullptr, out);
      label_at += plan_.sum_len;
      s = e;
    }
  }

 private:
  // Uploads the staged chunk, runs it, and unpacks its results into out[s, s + m) (labels: nullable).
  void run_chunk(const ChunkPlan& c, int32_t* labels, std::vector<quant::AssignAccum>& out) {
    unsigned char* ws = grow(ws_, c.ws_bytes);
    int32_t* d_labels = labels && c.sum_len ? grow(dl_, c.sum_len) : nullptr;
    unsigned char* down = down_.get(c.down_bytes);
    const cudaStream_t stream = nullptr;
    NQ_CUDA_CHECK(cudaMemcpyAsync(ws, up_.data(), c.up_bytes, cudaMemcpyHostToDevice, stream));
    const RowTask* d_tasks = reinterpret_cast<const RowTask*>(ws);
    const unsigned* d_first = reinterpret_cast<const unsigned*>(ws + c.off_first);
    double* d_psum = reinterpret_cast<double*>(ws + c.off_psum);
    long long* d_pcount = reinterpret_cast<long long*>(ws + c.off_pcount);
    double* d_pscal = reinterpret_cast<double*>(ws + c.off_pscal);
    double* d_out = reinterpret_cast<double*>(ws + c.off_out);
    long long* d_outn = reinterpret_cast<long long*>(ws + c.off_outn);
    for (const Group& g : c.groups) {
      RowsLaunch L{};
      L.tasks = d_tasks + g.pos;
      L.first = d_first + g.pos;
      L.ntasks = static_cast<int>(g.count);
      L.w = dw_.get();
      L.h = dh_.get();
      L.labels = d_labels;
      L.tables = reinterpret_cast<const double*>(ws + c.off_tables);
      L.psum = d_psum;
      L.pcount = d_pcount;
      L.pscal = d_pscal;
      L.table_in_smem = g.shape.table_in_smem;
      L.acc_in_smem = g.shape.acc_in_smem;
      L.private_acc = g.shape.private_acc;
      const dim3 grid(static_cast<unsigned>(g.tiles)), threads(static_cast<unsigned>(g.shape.warps * 32));
      if (g.shape.private_acc) {
        set_smem(reinterpret_cast<const void*>(assign_rows_kernel<true>), g.shape.smem_bytes);
        assign_rows_kernel<true><<<grid, threads, g.shape.smem_bytes, stream>>>(L);
      } else {
        set_smem(reinterpret_cast<const void*>(assign_rows_kernel<false>), g.shape.smem_bytes);
        assign_rows_kernel<false><<<grid, threads, g.shape.smem_bytes, stream>>>(L);
      }
      NQ_CUDA_CHECK_LAUNCH("assign_rows_kernel");
    }
    const size_t merge_grid = (c.m * 32 + kMergeThreads - 1) / kMergeThreads;
    merge_rows_kernel<<<static_cast<unsigned>(merge_grid), kMergeThreads, 0, stream>>>(
        d_tasks, static_cast<int>(c.m), d_psum, d_pcount, d_pscal, d_out, d_outn);
    NQ_CUDA_CHECK_LAUNCH("merge_rows_kernel");
    NQ_CUDA_CHECK(cudaMemcpyAsync(down, d_out, c.out_bytes, cudaMemcpyDeviceToHost, stream));
    if (c.sum_k)
      NQ_CUDA_CHECK(cudaMemcpyAsync(down + c.down_counts, d_outn, c.sum_k * sizeof(long long),
                                    cudaMemcpyDeviceToHost, stream));
    if (d_labels)
      NQ_CUDA_CHECK(cudaMemcpyAsync(labels, d_labels, c.sum_len * sizeof(int32_t), cudaMemcpyDeviceToHost, stream));
    NQ_CUDA_CHECK(cudaStreamSynchronize(stream));
    unpack(c, down, out);
  }

  static void unpack(const ChunkPlan& c, const unsigned char* down, std::vector<quant::AssignAccum>& out) {
    const double* sums = reinterpret_cast<const double*>(down);
    const long long* counts = reinterpret_cast<const long long*>(down + c.down_counts);
    // Sized here, on this thread: an allocation failing inside the parallel loop would end the process
    // (an exception may not leave an OpenMP region); unpack_accum's reset then reuses the capacity.
    for (size_t j = 0; j < c.m; ++j) out[c.s + j].reset(c.recs[j].k);
#pragma omp parallel for schedule(static, 256) if (c.m > 1024)
    for (long long jj = 0; jj < static_cast<long long>(c.m); ++jj) {
      const size_t j = static_cast<size_t>(jj);
      const RowTask& r = c.recs[j];
      unpack_accum(sums + r.out, counts + r.kk, r.k, out[c.s + j]);
    }
  }

  int64_t rows_;
  RowsIndex ri_;
  DeviceBuffer<float> dw_, dh_;
  // Grow-only workspaces, reused by every pass.
  DeviceBuffer<unsigned char> ws_;
  DeviceBuffer<int32_t> dl_;
  PinnedBytes up_, down_;
  ChunkPlan plan_;
  quant::CodebookBatch shared_;  // assign_accumulate_shared's one codebook, its capacity kept
};

}  // namespace

std::unique_ptr<quant::ResidentRows> make_resident_rows(const float* w, const float* h, const int64_t* row_begin,
                                                        int64_t rows, const uint8_t* weighted) {
  bind_thread_device();
  return std::make_unique<CudaResidentRows>(w, h, row_begin, rows, weighted);
}

}  // namespace nq::cuda
