// The quantization-method traits table (drives CLI help, parsing, docs and tests) and the small parsers.
#include <cerrno>
#include <cstdlib>
#include <sstream>

#include "netquant/error.h"
#include "netquant/quantize.h"

namespace nq {

const std::vector<MethodTraits>& method_table() {
  // name, summary, uses_importance, has_lambda, takes_k, supports_target
  static const std::vector<MethodTraits> table = {
      {Method::kKmeans, "kmeans", "Lloyd k-means on the sorted values (importance ignored, except by --prune)",
       false, false, true, false},
      {Method::kHwKmeans, "hw-kmeans", "Hessian-weighted k-means, Lloyd on the sorted values [Choi et al. eq. 8]",
       true, false, true, false},
      {Method::kExact, "exact", "globally optimal weighted 1-D k-means (dynamic program)", true, false, true, false},
      {Method::kUniform, "uniform", "uniform cells with 0 a centre, weighted-mean levels [Choi et al. 5.3]", true,
       false, true, true},
      {Method::kEcsq, "ecsq", "iterative entropy-constrained SQ, min D + lambda*H [Choi et al. 5.4]", true, true,
       true, true},
      {Method::kBinary, "binary", "{-a, +a}, weighted optimal a [Carreira-Perpinan & Idelbayev]", true, false, false,
       false},
      {Method::kTernary, "ternary", "{-a, 0, +a}, weighted optimal a and threshold", true, false, false, false},
      {Method::kPow2, "pow2", "{+-a*2^-e}, learned scale a (--k = exponents per sign)", true, false, true, false},
      {Method::kInt, "int", "b-bit symmetric integer grid with a weighted optimal scale (--bits)", true, false,
       true, false},
      {Method::kWentropy, "wentropy", "weighted-entropy quantization [Park et al.] (importance = w^2)", false, false,
       true, false},
  };
  return table;
}

const MethodTraits& method_traits(Method method) {
  for (const auto& t : method_table())
    if (t.method == method) return t;
  NQ_ASSERT_MSG(false, "method without traits: " << static_cast<int>(method));
  return method_table().front();
}

Method parse_method(const std::string& name) {
  std::ostringstream valid;
  for (const auto& t : method_table()) {
    if (name == t.name) return t.method;
    valid << (valid.tellp() > 0 ? ", " : "") << t.name;
  }
  NQ_FAIL(ErrorCode::kInvalidArgument, "unknown method '" << name << "' (expected one of: " << valid.str() << ")");
}

Init parse_init(const std::string& name) {
  if (name == "linear") return Init::kLinear;
  if (name == "kmeans++") return Init::kKmeansPP;
  if (name == "quantile") return Init::kQuantile;
  NQ_FAIL(ErrorCode::kInvalidArgument, "unknown init '" << name << "' (expected linear, kmeans++ or quantile)");
}

const char* init_name(Init init) {
  switch (init) {
    case Init::kLinear: return "linear";
    case Init::kKmeansPP: return "kmeans++";
    case Init::kQuantile: return "quantile";
  }
  return "?";
}

Scope parse_scope(const std::string& text) {
  Scope s;
  if (text == "global") return s;
  if (text == "tensor") { s.kind = ScopeKind::kTensor; return s; }
  if (text == "row") { s.kind = ScopeKind::kRow; return s; }
  if (text.rfind("group:", 0) == 0) {
    const std::string num = text.substr(6);
    char* end = nullptr;
    errno = 0;
    const long long g = num.empty() ? 0 : std::strtoll(num.c_str(), &end, 10);
    NQ_CHECK(!num.empty() && end && *end == '\0' && g > 0, ErrorCode::kInvalidArgument,
             "scope '" << text << "': the group size must be a positive integer (e.g. group:128)");
    NQ_CHECK(errno != ERANGE && g < kMaxGroupSize, ErrorCode::kInvalidArgument,
             "scope '" << text << "': the group size must be below 2^62, the .nq format's limit (a group larger "
                                  "than a tensor is the tensor: scope tensor)");
    s.kind = ScopeKind::kGroup;
    s.group = g;
    return s;
  }
  NQ_FAIL(ErrorCode::kInvalidArgument, "unknown scope '" << text << "' (expected global, tensor, row or group:G)");
}

std::string scope_to_string(const Scope& scope) {
  switch (scope.kind) {
    case ScopeKind::kGlobal: return "global";
    case ScopeKind::kTensor: return "tensor";
    case ScopeKind::kRow: return "row";
    case ScopeKind::kGroup: return "group:" + std::to_string(scope.group);
  }
  return "?";
}

ImportanceTransform parse_importance_transform(const std::string& name) {
  if (name == "none") return ImportanceTransform::kNone;
  if (name == "sqrt") return ImportanceTransform::kSqrt;
  if (name == "normalize") return ImportanceTransform::kNormalize;
  NQ_FAIL(ErrorCode::kInvalidArgument,
          "unknown importance transform '" << name << "' (expected none, sqrt or normalize)");
}

RateAllocation parse_rate_allocation(const std::string& name) {
  if (name == "per-problem") return RateAllocation::kPerProblem;
  if (name == "shared-lambda") return RateAllocation::kSharedLambda;
  NQ_FAIL(ErrorCode::kInvalidArgument,
          "unknown rate allocation '" << name << "' (expected per-problem or shared-lambda)");
}

std::string rate_allocation_name(RateAllocation allocation) {
  return allocation == RateAllocation::kSharedLambda ? "shared-lambda" : "per-problem";
}

}  // namespace nq
