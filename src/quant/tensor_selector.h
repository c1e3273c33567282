// Internal: which tensors of a model get quantized. The one rule shared by every driver and check that has to
// agree on it — quantize_model (and so prune_model and LC), the sharded MPI driver, the CLI's importance check and
// `netquant prune`'s count — so that none of them can pair an importance or a pruning fraction with another set.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "netquant/dtype.h"
#include "netquant/quantize.h"
#include "netquant/tensor.h"

namespace re2 {
class RE2;
}

namespace nq::quant {

class TensorSelector {
 public:
  // Compiles params.include_regex / exclude_regex once (RE2 syntax; empty = no filter): kInvalidArgument naming
  // the option, the pattern and RE2's reason when one is not a valid pattern.
  explicit TensorSelector(const ModelQuantizeParams& params);

  // A float tensor with values, and not 1-D under skip_1d: what is quantized without a name filter.
  bool eligible(DType dtype, const std::vector<int64_t>& shape) const;
  // Whether the name passes the filters: found by include (when given) and not by exclude (when given),
  // RE2::PartialMatch semantics (a match anywhere in the name), in time linear in the name's length.
  bool name_selected(const std::string& name) const;
  // The rule: eligible and name_selected.
  bool quantizes(const std::string& name, DType dtype, const std::vector<int64_t>& shape) const {
    return eligible(dtype, shape) && name_selected(name);
  }

  bool filtered() const { return include_ != nullptr || exclude_ != nullptr; }
  // "--include 'X'", "--exclude 'Y'" or both joined by " / " (empty without a filter): how messages name them.
  std::string describe() const;
  // A filter must leave something to quantize, so that a typo cannot silently write an unquantized model:
  // kInvalidArgument naming the patterns when a filter is given and `selected` is 0 (`eligible_count`: the
  // tensors the filter chose from). Without a filter nothing is checked (a model with no float tensor is kept
  // as it is, as before the filters existed).
  void check_selection(size_t selected, size_t eligible_count) const;
  // quantizes() of every tensor of `model`, in its order, after check_selection.
  std::vector<char> choose(const TensorSet& model) const;

 private:
  bool skip_1d_;
  std::string include_text_, exclude_text_;
  std::shared_ptr<const re2::RE2> include_, exclude_;  // null: no filter
};

}  // namespace nq::quant
