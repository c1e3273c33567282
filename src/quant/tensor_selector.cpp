// nq::quant::TensorSelector: the dtype/shape rule plus the optional name filters (tensor_selector.h).
#include "quant/tensor_selector.h"

#include "netquant/error.h"
#include "netquant/tensor.h"

namespace nq::quant {

namespace {

// An empty pattern is no filter. The regex library's own reason goes into the message: "missing )" says more
// than "invalid pattern".
std::optional<std::regex> compile(const std::string& option, const std::string& pattern) {
  if (pattern.empty()) return std::nullopt;
  try {
    return std::regex(pattern, std::regex::ECMAScript);
  } catch (const std::regex_error& e) {
    NQ_FAIL(ErrorCode::kInvalidArgument,
            option << " '" << pattern << "' is not a valid ECMAScript regular expression: " << e.what());
  }
}

}  // namespace

TensorSelector::TensorSelector(const ModelQuantizeParams& params)
    : skip_1d_(params.skip_1d),
      include_text_(params.include_regex),
      exclude_text_(params.exclude_regex),
      include_(compile("--include", params.include_regex)),
      exclude_(compile("--exclude", params.exclude_regex)) {}

bool TensorSelector::eligible(DType dtype, const std::vector<int64_t>& shape) const {
  return dtype_is_float(dtype) && shape_numel(shape) > 0 && !(skip_1d_ && shape.size() == 1);
}

bool TensorSelector::name_selected(const std::string& name) const {
  if (include_ && !std::regex_search(name, *include_)) return false;
  return !(exclude_ && std::regex_search(name, *exclude_));
}

std::string TensorSelector::describe() const {
  std::string out;
  if (include_) out = "--include '" + include_text_ + "'";
  if (exclude_) out += (out.empty() ? "" : " / ") + std::string("--exclude '") + exclude_text_ + "'";
  return out;
}

void TensorSelector::check_selection(size_t selected, size_t eligible_count) const {
  if (!filtered() || selected > 0) return;
  const bool both = include_ && exclude_;
  const std::string skipped = skip_1d_ ? " (1-D ones skipped)" : "";
  const std::string why = eligible_count == 0 ? "the model has no float tensor" + skipped
                                              : "none of the model's " + std::to_string(eligible_count) +
                                                    " float tensors" + skipped + " passes";
  NQ_FAIL(ErrorCode::kInvalidArgument,
          describe() << (both ? " leave" : " leaves") << " no tensor to quantize (" << why
                     << "; the patterns are ECMAScript regular expressions found anywhere in a tensor's name)");
}

std::vector<char> TensorSelector::choose(const TensorSet& model) const {
  std::vector<char> chosen;
  chosen.reserve(model.size());
  size_t eligible_count = 0, selected = 0;
  for (const Tensor& t : model) {
    eligible_count += eligible(t.dtype(), t.shape());
    chosen.push_back(quantizes(t.name(), t.dtype(), t.shape()));
    selected += chosen.back();
  }
  check_selection(selected, eligible_count);
  return chosen;
}

}  // namespace nq::quant
