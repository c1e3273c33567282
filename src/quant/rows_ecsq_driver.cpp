// The row/group scopes' ECSQ through op (f): every row (and λ) of a tensor runs its own search (EcsqSearch, the
// same state machine nq::quantize runs), and all unfinished searches share each pass — on the GPU one launch
// over thousands of rows instead of thousands of launches of a few thousand values each. The host keeps the
// per-row state and does each step (k-sized work per row); only the passes over the values go to the backend.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <memory>

#include "core/iteration_errors.h"
#include "core/scratch_vector.h"
#include "netquant/error.h"
#include "quant/binned_pass.h"
#include "quant/quant_ops.h"
#include "quant/quantizers.h"

namespace nq::quant {

namespace {

// One search: row `row` of the slice under the parameters of λ set `set`.
struct Task {
  int64_t row = 0;
  size_t set = 0;
  std::unique_ptr<EcsqSearch> search;
};

// Runs every task's search to its end, then labels each from its best codebook in one more pass.
void run_tasks(ResidentRows& values, std::vector<Task>& tasks, const std::vector<int64_t>& slice_begin,
               std::vector<std::vector<int32_t>>& labels) {
  std::vector<AssignAccum> accs;
  std::vector<size_t> live;
  std::vector<int64_t> rows;
  std::vector<int> ks;
  CodebookBatch books;  // refilled every pass, its capacity kept (thousands of rows: megabytes)
  for (;;) {
    live.clear();
    rows.clear();
    ks.clear();
    for (size_t t = 0; t < tasks.size(); ++t) {
      if (tasks[t].search->done()) continue;
      live.push_back(t);
      rows.push_back(tasks[t].row);
      ks.push_back(static_cast<int>(tasks[t].search->run().centers().size()));
    }
    if (live.empty()) break;
    books.shape(ks);
#pragma omp parallel for schedule(static, 256) if (live.size() > 1024)
    for (int64_t i = 0; i < static_cast<int64_t>(live.size()); ++i) {
      const EcsqRun& run = tasks[live[static_cast<size_t>(i)]].search->run();
      const size_t o = static_cast<size_t>(books.offsets[static_cast<size_t>(i)]);
      std::copy(run.centers().begin(), run.centers().end(), books.centers.begin() + static_cast<ptrdiff_t>(o));
      std::copy(run.code_len().begin(), run.code_len().end(), books.code_len.begin() + static_cast<ptrdiff_t>(o));
      books.lambda[static_cast<size_t>(i)] = run.lambda();
    }
    values.assign_accumulate(rows.data(), books, nullptr, accs);
#pragma omp parallel for schedule(dynamic, 16) if (live.size() > 1)
    for (int64_t i = 0; i < static_cast<int64_t>(live.size()); ++i)
      tasks[live[static_cast<size_t>(i)]].search->step(accs[static_cast<size_t>(i)]);
  }
  // The labels of each best run's last pass: the assignment is deterministic, so one pass over that codebook
  // writes exactly them.
  books.clear();
  rows.clear();
  size_t total = 0;
  for (const Task& task : tasks) {
    const EcsqSearch& s = *task.search;
    books.add(s.label_centers().data(), s.label_code_len().data(), static_cast<int>(s.label_centers().size()),
              s.label_lambda());
    rows.push_back(task.row);
    total += static_cast<size_t>(slice_begin[task.row + 1] - slice_begin[task.row]);
  }
  ScratchVector<int32_t> all(total);  // the pass writes every task's labels: no zero fill first
  if (!tasks.empty()) values.assign_accumulate(rows.data(), books, all.data(), accs);
  labels.resize(tasks.size());
  size_t at = 0;
  for (size_t t = 0; t < tasks.size(); ++t) {
    const size_t len = static_cast<size_t>(slice_begin[tasks[t].row + 1] - slice_begin[tasks[t].row]);
    labels[t].assign(all.begin() + static_cast<ptrdiff_t>(at), all.begin() + static_cast<ptrdiff_t>(at + len));
    at += len;
  }
}

}  // namespace

std::vector<std::vector<QuantizeResult>> quantize_rows_ecsq(const float* w, const float* h,
                                                            const std::vector<int64_t>& row_begin,
                                                            const QuantizeParams& q, Backend backend,
                                                            const std::vector<const std::vector<float>*>& warm,
                                                            const std::vector<double>& lambdas,
                                                            int64_t slice_values) {
  const auto t0 = std::chrono::steady_clock::now();
  check_quantize_params(q);
  NQ_ASSERT(q.method == Method::kEcsq);
  const int64_t rows = static_cast<int64_t>(row_begin.size()) - 1;
  NQ_ASSERT(rows >= 0 && (warm.empty() || static_cast<int64_t>(warm.size()) == rows));
  // The parameters of each λ set: q itself, or q at λ m with no target (what quantize_lambdas runs).
  std::vector<QuantizeParams> sets(lambdas.empty() ? 1 : lambdas.size(), q);
  if (!lambdas.empty()) check_lambda_batch(q, lambdas, "quantize_lambdas");
  for (size_t m = 0; m < lambdas.size(); ++m) sets[m].lambda = lambdas[m];
  const size_t nsets = sets.size();
  check_warm_starts(warm);

  // Each row as quantize() sees it (the caller has validated the values): its importances only when some are
  // positive, and its sort and sums for the start where quantize() makes them (on the host below 2^14 values).
  std::vector<Problem> problems(static_cast<size_t>(rows));
  std::vector<uint8_t> weighted(static_cast<size_t>(rows), 0);
  for (int64_t r = 0; r < rows; ++r) {
    const size_t len = static_cast<size_t>(row_begin[r + 1] - row_begin[r]);
    Problem& p = problems[static_cast<size_t>(r)];
    p = row_problem(w, h, row_begin[r], row_begin[r + 1], problem_backend(backend, len));
    weighted[static_cast<size_t>(r)] = p.h != nullptr;
  }
  // Rows of kBinnedMinValues values or more: quantize() runs their passes binned (binned_pass.h), whose sums agree
  // with op (a)'s only to rounding, enough to stop an ECSQ run one pass apart. They are solved one by one as
  // quantize() / quantize_lambdas solve them, so every row keeps quantize()'s bits.
  std::vector<uint8_t> solo(static_cast<size_t>(rows), 0);
  for (int64_t r = 0; r < rows; ++r) solo[static_cast<size_t>(r)] = use_binned_pass(problems[static_cast<size_t>(r)].n);

  std::vector<std::vector<QuantizeResult>> out(nsets, std::vector<QuantizeResult>(static_cast<size_t>(rows)));
  // Rows [r0, r1) in one op (f) object: their searches from the starts ecsq_start makes (sorted
  // values, the init rule or the warm start, D0) to the labelled results.
  auto solve_slice = [&](int64_t r0, int64_t r1, const std::vector<int64_t>& slice_begin) {
    std::vector<Task> tasks;
    for (int64_t r = r0; r < r1; ++r)
      if (problems[static_cast<size_t>(r)].n > 0 && !solo[static_cast<size_t>(r)])
        for (size_t m = 0; m < nsets; ++m) tasks.push_back({r - r0, m, nullptr});
    // (A device sort of a long row can fail: IterationErrors carries it out of the OpenMP region.)
    IterationErrors failed;
#pragma omp parallel for schedule(dynamic, 4)
    for (int64_t i = 0; i < static_cast<int64_t>(tasks.size()); ++i) {
      if (tasks[static_cast<size_t>(i)].set > 0) continue;  // the λ sets of a row share one start, made below
      const int64_t r = r0 + tasks[static_cast<size_t>(i)].row;
      const Problem& p = problems[static_cast<size_t>(r)];
      QuantizeParams qr = q;
      if (!warm.empty() && warm[static_cast<size_t>(r)])
        qr.initial_centers.assign(warm[static_cast<size_t>(r)]->begin(), warm[static_cast<size_t>(r)]->end());
      failed.run(static_cast<size_t>(i), [&] {
        const EcsqStart start = ecsq_start(p, SortedData(p), qr);
        for (size_t m = 0; m < nsets; ++m)
          tasks[static_cast<size_t>(i) + m].search = std::make_unique<EcsqSearch>(start.init, start.d0, p.n, sets[m]);
      });
    }
    failed.rethrow_first();
    if (tasks.empty()) return;  // only empty or solo rows: nothing to upload

    std::unique_ptr<ResidentRows> values =
        ops_make_resident_rows(backend, w + row_begin[r0], h ? h + row_begin[r0] : nullptr, slice_begin.data(),
                               r1 - r0, h ? weighted.data() + r0 : nullptr);
    std::vector<std::vector<int32_t>> labels;
    run_tasks(*values, tasks, slice_begin, labels);
    values.reset();

#pragma omp parallel for schedule(dynamic, 16)
    for (int64_t i = 0; i < static_cast<int64_t>(tasks.size()); ++i) {
      Task& task = tasks[static_cast<size_t>(i)];
      const size_t r = static_cast<size_t>(r0 + task.row);
      RawResult raw = task.search->take_result();
      raw.labels = std::move(labels[static_cast<size_t>(i)]);
      out[task.set][r] = finalize(problems[r], std::move(raw));
    }
  };
  const int64_t per_slice = std::max<int64_t>(1, slice_values / static_cast<int64_t>(nsets));
  std::vector<int64_t> slice_begin;
  for (int64_t r0 = 0; r0 < rows;) {
    const int64_t r1 = next_slice(row_begin, r0, per_slice, slice_begin);
    solve_slice(r0, r1, slice_begin);
    r0 = r1;
  }
  for (int64_t r = 0; r < rows; ++r) {
    if (!solo[static_cast<size_t>(r)]) continue;
    const Problem& p = problems[static_cast<size_t>(r)];
    QuantizeParams qr = q;
    qr.backend = backend;
    if (!warm.empty() && warm[static_cast<size_t>(r)])
      qr.initial_centers.assign(warm[static_cast<size_t>(r)]->begin(), warm[static_cast<size_t>(r)]->end());
    if (lambdas.empty()) {
      out[0][static_cast<size_t>(r)] = ::nq::quantize(p.w, p.h, p.n, qr);
    } else {
      std::vector<QuantizeResult> each = ::nq::quantize_lambdas(p.w, p.h, p.n, qr, lambdas);
      for (size_t m = 0; m < nsets; ++m) out[m][static_cast<size_t>(r)] = std::move(each[m]);
    }
  }

  // An empty row gets what quantize() returns for n = 0; every result says where it ran and its share of the time.
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double n_all = static_cast<double>(std::max<int64_t>(row_begin.back(), 1));
  for (size_t m = 0; m < nsets; ++m)
    for (int64_t r = 0; r < rows; ++r) {
      QuantizeResult& res = out[m][static_cast<size_t>(r)];
      res.backend = backend;
      res.seconds = seconds * static_cast<double>(problems[static_cast<size_t>(r)].n) / n_all /
                    static_cast<double>(nsets);
    }
  return out;
}

}  // namespace nq::quant
