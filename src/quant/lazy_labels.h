// Internal: what both backends' resident values (quant_ops.h (d)) do alike around the binned pass. With it
// (binned_pass.h, problems of kBinnedMinValues values or more) a pass makes sums, not labels: the labels of the
// latest single pass are made only when asked, by one op (a) pass over every value with that pass's codebook (the
// same argmin, so the same labels). Without it every pass is op (a) over every value and keeps its labels. A
// backend says how to run each kind of pass and where its labels live; this class decides which pass runs when.
#pragma once

#include <cstdint>
#include <vector>

#include "quant/quant_ops.h"

namespace nq::quant {

class LazyLabelsValues : public ResidentValues {
 public:
  void assign_accumulate(const double* centers, const double* code_len, int k, double lambda,
                         AssignAccum& out) final {
    if (!binned()) {
      pass_all(centers, code_len, k, lambda, out);
      return;
    }
    pass_binned(centers, code_len, k, lambda, out);
    latest_.clear();
    latest_.add(centers, code_len, k, lambda);
  }

  void assign_accumulate_multi(const CodebookBatch& books, std::vector<AssignAccum>& out) final {
    if (!binned()) {
      pass_all_multi(books, out);
      return;
    }
    // Each codebook leaves its own values to op (a): one binned pass each, a few percent of a whole pass apiece.
    out.resize(static_cast<size_t>(books.size()));
    for (int m = 0; m < books.size(); ++m) {
      const size_t o = static_cast<size_t>(books.offsets[static_cast<size_t>(m)]);
      pass_binned(books.centers.data() + o, books.code_len.data() + o, books.k(m),
                  books.lambda[static_cast<size_t>(m)], out[static_cast<size_t>(m)]);
    }
  }

  std::vector<int32_t> take_labels() final {
    if (binned() && latest_.size() == 1) {
      AssignAccum unused;
      pass_all(latest_.centers.data(), latest_.code_len.data(), latest_.k(0), latest_.lambda[0], unused);
      latest_.clear();
    }
    return move_labels();
  }

  std::vector<int32_t> labels_for(const double* centers, const double* code_len, int k, double lambda) final {
    if (!binned()) return ResidentValues::labels_for(centers, code_len, k, lambda);
    latest_.clear();  // take_labels' one op (a) pass, without the binned pass before it
    latest_.add(centers, code_len, k, lambda);
    return take_labels();
  }

 protected:
  // Whether passes are binned passes (fixed for the object's life).
  virtual bool binned() const = 0;
  // Op (a) over every value; its labels are kept for move_labels.
  virtual void pass_all(const double* centers, const double* code_len, int k, double lambda, AssignAccum& out) = 0;
  // Op (a) over every value for each codebook (ResidentValues::assign_accumulate_multi's contract), no labels.
  virtual void pass_all_multi(const CodebookBatch& books, std::vector<AssignAccum>& out) = 0;
  // One binned pass (sums only).
  virtual void pass_binned(const double* centers, const double* code_len, int k, double lambda,
                           AssignAccum& out) = 0;
  // The labels pass_all kept (n entries), or none; keeps none afterwards.
  virtual std::vector<int32_t> move_labels() = 0;

 private:
  CodebookBatch latest_;  // binned: the latest single pass's codebook, until labelled
};

}  // namespace nq::quant
