// CPU-only build: the cuda:: quantizer ops (quant_ops.h) exist and throw kUnavailable.
#include "quant/quant_ops.h"

#include "netquant/error.h"

#if !NQ_HAVE_CUDA
namespace nq::cuda {
namespace {
[[noreturn]] void unavailable(const char* op) {
  NQ_FAIL(ErrorCode::kUnavailable, "quantizer op " << op << ": this netquant was built without CUDA");
}
}  // namespace

void assign_accumulate(const float*, const float*, size_t, const double*, const double*, int, double, int32_t*,
                       quant::AssignAccum&) {
  unavailable("assign_accumulate");
}
void sort_pairs(const float*, const float*, size_t, float*, float*) { unavailable("sort_pairs"); }
void prefix_sums(const float*, const float*, size_t, double, size_t, double*, double*, double*) {
  unavailable("prefix_sums");
}
void label_histogram(const int32_t*, size_t, int, int64_t*) { unavailable("label_histogram"); }
std::unique_ptr<quant::ResidentValues> make_resident_values(const float*, const float*, size_t, quant::SortedView) {
  unavailable("make_resident_values");
}
std::unique_ptr<quant::ResidentRows> make_resident_rows(const float*, const float*, const int64_t*, int64_t,
                                                        const uint8_t*) {
  unavailable("make_resident_rows");
}
void rows_kmeans(const quant::RowsKmeansJob&, const quant::RowsKmeansOut&) { unavailable("rows_kmeans"); }
void select_pruned(const quant::PruneArrays&, int64_t) { unavailable("select_pruned"); }
}  // namespace nq::cuda
#endif
