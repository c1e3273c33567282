// nq::quant::TensorSelector: the dtype/shape rule plus the optional name filters (tensor_selector.h).
#include "quant/tensor_selector.h"

#include <re2/re2.h>

#include "netquant/error.h"
#include "netquant/tensor.h"

namespace nq::quant {

namespace {

// An empty pattern is no filter. RE2's own reason goes into the message: "missing ): (embed" says more than
// "invalid pattern". RE2 rather than std::regex: its matching time is linear in the name and it never recurses
// per character, so no tensor name from a hostile file can exhaust the stack or the time.
std::shared_ptr<const re2::RE2> compile(const std::string& option, const std::string& pattern) {
  if (pattern.empty()) return nullptr;
  re2::RE2::Options options;
  options.set_log_errors(false);  // the error is ours to report, not RE2's to print on stderr
  auto re = std::make_shared<const re2::RE2>(pattern, options);
  NQ_CHECK(re->ok(), ErrorCode::kInvalidArgument,
           option << " '" << pattern << "' is not a valid regular expression (RE2 syntax): " << re->error());
  return re;
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
  if (include_ && !re2::RE2::PartialMatch(name, *include_)) return false;
  return !(exclude_ && re2::RE2::PartialMatch(name, *exclude_));
}

std::string TensorSelector::describe() const {
  std::string out;
  if (include_) out = "--include '" + include_text_ + "'";
  if (exclude_) out += (out.empty() ? "" : " / ") + std::string("--exclude '") + exclude_text_ + "'";
  return out;
}

void TensorSelector::check_selection(size_t selected, size_t eligible_count) const {
  if (!filtered() || selected > 0) return;
  const bool both = include_ != nullptr && exclude_ != nullptr;
  const std::string skipped = skip_1d_ ? " (1-D ones skipped)" : "";
  const std::string why = eligible_count == 0 ? "the model has no float tensor" + skipped
                                              : "none of the model's " + std::to_string(eligible_count) +
                                                    " float tensors" + skipped + " passes";
  NQ_FAIL(ErrorCode::kInvalidArgument,
          describe() << (both ? " leave" : " leaves") << " no tensor to quantize (" << why
                     << "; the patterns are regular expressions (RE2 syntax) found anywhere in a tensor's name)");
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
