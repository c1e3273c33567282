// netquant._core: the pybind11 extension over the C++ engine. The public, documented API is the pure-Python
// package `netquant` (python/netquant/__init__.py); this module only converts arrays and parameters, releases
// the GIL around the engine's work and maps nq::Error onto netquant's exception classes.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <string>
#include <tuple>
#include <vector>

#include "arrays.h"
#include "netquant/atomic_file.h"
#include "netquant/backend.h"
#include "netquant/coding.h"
#include "netquant/error.h"
#include "netquant/io.h"
#include "netquant/progress.h"
#include "netquant/quantize.h"
#include "netquant/sweep.h"
#include "netquant/version.h"

namespace py = pybind11;

namespace nq::python {
namespace {

// Every knob of ModelQuantizeParams with enums spelled as the CLI spells them; defaults are the engine's.
struct Params {
  std::string method = "hw-kmeans";
  int k = 16;
  double lam = 0;
  double step = 0;
  double target_bits = 0;
  double target_ratio = 0;
  std::string init = "linear";
  int max_iter = 100;
  double tol = 1e-7;
  uint64_t seed = 1234;
  bool int_symmetric = true;
  int int_bits = 4;
  int pow2_levels = 8;
  int64_t exact_histogram_bins = 0;
  std::string scope = "global";
  double prune = 0;
  std::string importance_transform = "none";
  bool skip_1d = false;
  std::string include;  // ModelQuantizeParams::include_regex / exclude_regex ("" = no filter)
  std::string exclude;
  int64_t batch_weights = 0;  // ModelQuantizeParams::batch_weights (0 = automatic)
  std::string rate_allocation = "per-problem";  // ModelQuantizeParams::rate_allocation
  // A budget on the .nq file (quantize_model_to_file_size): bytes, or as float32 bytes / file bytes; 0 = none.
  uint64_t target_size = 0;
  double target_file_ratio = 0;
  std::string coder = "auto";  // IndexCoder of the .nq file (save, compress) and of ratio_file
  std::string backend = "auto";

  Params() {
    const ModelQuantizeParams d;
    method = method_traits(d.quant.method).name;
    k = d.quant.k;
    lam = d.quant.lambda;
    step = d.quant.step;
    target_bits = d.quant.target_bits;
    target_ratio = d.quant.target_ratio;
    init = init_name(d.quant.init);
    max_iter = d.quant.max_iter;
    tol = d.quant.tol;
    seed = d.quant.seed;
    int_symmetric = d.quant.int_symmetric;
    int_bits = d.quant.int_bits;
    pow2_levels = d.quant.pow2_levels;
    exact_histogram_bins = d.quant.exact_histogram_bins;
    scope = scope_to_string(d.scope);
    prune = d.prune;
    skip_1d = d.skip_1d;
    include = d.include_regex;
    exclude = d.exclude_regex;
    batch_weights = d.batch_weights;
    rate_allocation = rate_allocation_name(d.rate_allocation);
    backend = backend_name(d.quant.backend);
  }

  ModelQuantizeParams to_engine() const {
    ModelQuantizeParams p;
    p.quant.method = parse_method(method);
    p.quant.k = k;
    p.quant.lambda = lam;
    p.quant.step = step;
    p.quant.target_bits = target_bits;
    p.quant.target_ratio = target_ratio;
    p.quant.init = parse_init(init);
    p.quant.max_iter = max_iter;
    p.quant.tol = tol;
    p.quant.seed = seed;
    p.quant.int_symmetric = int_symmetric;
    p.quant.int_bits = int_bits;
    p.quant.pow2_levels = pow2_levels;
    p.quant.exact_histogram_bins = exact_histogram_bins;
    p.quant.backend = parse_backend(backend);
    p.scope = parse_scope(scope);
    p.prune = prune;
    p.importance_transform = parse_importance_transform(importance_transform);
    p.skip_1d = skip_1d;
    p.include_regex = include;
    p.exclude_regex = exclude;
    p.batch_weights = batch_weights;
    p.rate_allocation = parse_rate_allocation(rate_allocation);
    NQ_CHECK(target_file_ratio >= 0 && !(target_size > 0 && target_file_ratio > 0), ErrorCode::kInvalidArgument,
             "give target_size or target_file_ratio (> 0), not both");
    parse_index_coder(coder);
    return p;
  }
  bool has_file_budget() const { return target_size > 0 || target_file_ratio > 0; }
};

py::dict stats_to_dict(const QuantStats& s) {
  py::dict d;
  d["params"] = s.params;
  d["pruned"] = s.pruned;
  d["clusters"] = s.clusters;
  d["hw_distortion"] = s.hw_distortion;
  d["mse"] = s.mse;
  d["entropy_bits_per_weight"] = s.entropy_bits_per_weight;
  d["fixed_bits_per_weight"] = s.fixed_bits_per_weight;
  d["ratio_fixed"] = s.ratio_fixed;
  d["ratio_entropy"] = s.ratio_entropy;
  d["huffman_bits_per_weight"] = s.huffman_bits_per_weight;
  d["ratio_huffman"] = s.ratio_huffman;
  d["ratio_file"] = s.ratio_file;
  d["lambda"] = s.lambda;
  d["iterations"] = s.iterations;
  d["converged"] = s.converged;
  d["seconds"] = s.seconds;
  return d;
}

py::object nan_to_none(double v) { return std::isnan(v) ? py::object(py::none()) : py::object(py::float_(v)); }

py::list codebooks_to_list(QuantizedModel& q, int64_t first, int64_t count) {
  py::list out;
  for (int64_t i = first; i < first + count; ++i) {
    auto& cb = q.codebooks[static_cast<size_t>(i)];
    const auto size = static_cast<int64_t>(cb.size());
    out.append(vector_to_numpy(std::move(cb), {size}));
  }
  return out;
}

// Importance: None, an array (single-tensor calls) or a dict (model calls).
TensorSet importance_set(const py::object& importance, const std::string& single_name) {
  if (py::isinstance<py::dict>(importance)) return tensor_set_view(importance.cast<py::dict>(), false);
  TensorSet set;
  if (!py::isinstance<py::array>(importance)) throw py::type_error("importance: expected a numpy.ndarray or a dict");
  set.add(tensor_view(importance.cast<py::array>(), single_name, true));
  return set;
}

// The engine's inputs of a model call: the tensors and the optional importance, viewed from numpy.
struct ModelInputs {
  TensorSet model, importance;
  bool has_importance = false;
  const TensorSet* importance_or_null() const { return has_importance ? &importance : nullptr; }
};

ModelInputs model_inputs(TensorSet model, const py::object& importance, const std::string& single_name) {
  ModelInputs in;
  in.model = std::move(model);
  in.has_importance = !importance.is_none();
  if (in.has_importance) in.importance = importance_set(importance, single_name);
  return in;
}

// quantize_model, or the search for a file budget when the parameters give one (as the CLI's --target-size).
// The model carries params.coder to whatever codes it next (account_coding, write_nq_file, serialize_nq).
QuantizedModel quantize_for(const ModelInputs& in, const Params& params, const ModelQuantizeParams& engine_params) {
  const IndexCoder coder = parse_index_coder(params.coder);
  if (!params.has_file_budget()) {
    QuantizedModel q = quantize_model(in.model, in.importance_or_null(), engine_params);
    q.index_coder = coder;
    return q;
  }
  const uint64_t budget =
      params.target_size > 0 ? params.target_size : file_bytes_for_ratio(in.model, params.target_file_ratio);
  return quantize_model_to_file_size(in.model, in.importance_or_null(), engine_params, budget, coder);
}

// One array through quantize_model (every scope, pruning and the coding statistics, exactly as the CLI does).
py::dict quantize_array(const py::array& values, const py::object& importance, const Params& params,
                        const std::string& name, bool with_coding) {
  TensorSet model;
  model.add(tensor_view(values, name, true));
  const ModelInputs in = model_inputs(std::move(model), importance, name);
  const ModelQuantizeParams engine_params = params.to_engine();
  QuantizedModel q;
  TensorSet dequantized;
  {
    py::gil_scoped_release release;
    q = quantize_for(in, params, engine_params);
    if (with_coding) account_coding(q);
    dequantized = q.dequantize();
  }
  NQ_ASSERT(q.tensors.size() == 1 && dequantized.size() == 1);
  QuantizedTensor& t = q.tensors[0];
  py::dict out;
  out["dequantized"] = tensor_to_numpy(std::move(dequantized[0]), true);
  out["indices"] = t.quantized ? py::object(vector_to_numpy(t.indices.to_vector(), t.shape)) : py::object(py::none());
  out["codebooks"] = t.quantized ? codebooks_to_list(q, t.first_codebook, t.num_problems) : py::list();
  out["problem_size"] = t.problem_size;
  out["stats"] = stats_to_dict(q.total);
  out["scope"] = scope_to_string(q.scope);
  out["method"] = method_traits(q.method).name;
  out["backend"] = backend_name(q.backend);
  return out;
}

// A whole model: dequantized tensors, per-tensor indices and statistics, the codebooks, the totals.
py::dict quantize_tensors(const py::dict& tensors, const py::object& importance, const Params& params,
                          bool with_coding) {
  const ModelInputs in = model_inputs(tensor_set_view(tensors, false), importance, "");
  const ModelQuantizeParams engine_params = params.to_engine();
  QuantizedModel q;
  TensorSet dequantized;
  {
    py::gil_scoped_release release;
    q = quantize_for(in, params, engine_params);
    if (with_coding) account_coding(q);
    dequantized = q.dequantize();
  }
  py::dict deq, per_tensor;
  for (auto& t : dequantized) {
    const std::string name = t.name();  // before the move: the right side of = is evaluated first
    deq[py::str(name)] = tensor_to_numpy(std::move(t), true);
  }
  for (auto& t : q.tensors) {
    py::dict d;
    d["quantized"] = t.quantized;
    d["indices"] = t.quantized ? py::object(vector_to_numpy(t.indices.to_vector(), t.shape)) : py::object(py::none());
    d["first_codebook"] = t.first_codebook;
    d["num_problems"] = t.num_problems;
    d["problem_size"] = t.problem_size;
    d["stats"] = stats_to_dict(t.stats);
    per_tensor[py::str(t.name)] = d;
  }
  py::dict out;
  out["dequantized"] = deq;
  out["tensors"] = per_tensor;
  out["codebooks"] = codebooks_to_list(q, 0, static_cast<int64_t>(q.codebooks.size()));
  out["stats"] = stats_to_dict(q.total);
  out["scope"] = scope_to_string(q.scope);
  out["method"] = method_traits(q.method).name;
  out["backend"] = backend_name(q.backend);
  return out;
}

py::dict write_nq(const std::string& path, const py::dict& tensors, const py::object& importance,
                  const Params& params) {
  const ModelInputs in = model_inputs(tensor_set_view(tensors, false), importance, "");
  const ModelQuantizeParams engine_params = params.to_engine();
  QuantStats total;
  {
    py::gil_scoped_release release;
    QuantizedModel q = quantize_for(in, params, engine_params);
    write_nq_file(path, q);
    total = q.total;
  }
  return stats_to_dict(total);
}

// The exact bytes write_nq_file would write (nq::serialize_nq), and the model's statistics.
std::pair<py::bytes, py::dict> compress_nq(const py::dict& tensors, const py::object& importance,
                                           const Params& params) {
  const ModelInputs in = model_inputs(tensor_set_view(tensors, false), importance, "");
  const ModelQuantizeParams engine_params = params.to_engine();
  QuantStats total;
  std::vector<uint8_t> bytes;
  {
    py::gil_scoped_release release;
    QuantizedModel q = quantize_for(in, params, engine_params);
    bytes = serialize_nq(q);
    total = q.total;
  }
  return {py::bytes(reinterpret_cast<const char*>(bytes.data()), bytes.size()), stats_to_dict(total)};
}

py::dict tensors_to_dict(TensorSet& set, bool writable) {
  py::dict out;
  for (auto& t : set) {
    const std::string name = t.name();  // before the move: the right side of = is evaluated first
    out[py::str(name)] = tensor_to_numpy(std::move(t), writable);
  }
  return out;
}

// nq::prune_model over a dict of arrays: the weights quantize_tensors would prune (params.prune, skip_1d, include,
// exclude, importance_transform) set to 0, everything else as it came, each array in its own dtype.
py::dict prune_tensors(const py::dict& tensors, const py::object& importance, const Params& params) {
  const ModelInputs in = model_inputs(tensor_set_view(tensors, false), importance, "");
  const ModelQuantizeParams engine_params = params.to_engine();
  TensorSet pruned;
  {
    py::gil_scoped_release release;
    pruned = prune_model(in.model, in.importance_or_null(), engine_params);
  }
  return tensors_to_dict(pruned, true);
}

// The buffer of a bytes object: immutable, so it may be read without the GIL.
std::pair<const uint8_t*, size_t> bytes_buffer(const py::object& data) {
  char* ptr = nullptr;
  py::ssize_t size = 0;
  if (PyBytes_AsStringAndSize(data.ptr(), &ptr, &size) != 0) throw py::error_already_set();
  return {reinterpret_cast<const uint8_t*>(ptr), static_cast<size_t>(size)};
}

// Parses an in-memory .nq file and dequantizes it.
py::dict decompress_nq(const py::bytes& data) {
  const auto [ptr, size] = bytes_buffer(data);
  TensorSet dequantized;
  {
    py::gil_scoped_release release;
    dequantized = parse_nq(ptr, size, "<bytes>").dequantize();
  }
  return tensors_to_dict(dequantized, true);
}

py::dict read_nq(const std::string& path) {
  TensorSet dequantized;
  {
    py::gil_scoped_release release;
    dequantized = read_nq_file(path).dequantize();
  }
  return tensors_to_dict(dequantized, true);
}

// A .nq file (a path, or the file's bytes) in the codes layout (nq::codes_layout): the tensors (W.codes, W.codebook;
// float tensors as they are) and the layout's metadata.
py::tuple read_nq_codes(const py::object& source) {
  TensorSet set;
  if (py::isinstance<py::bytes>(source)) {
    const auto [ptr, size] = bytes_buffer(source);
    py::gil_scoped_release release;
    set = codes_layout(parse_nq(ptr, size, "<bytes>"), std::nullopt, "<bytes>");
  } else {
    const std::string path = source.cast<std::string>();
    py::gil_scoped_release release;
    set = codes_layout(read_nq_file(path), std::nullopt, path);
  }
  std::map<std::string, std::string> metadata = set.metadata();
  return py::make_tuple(tensors_to_dict(set, true), metadata);
}

// A .safetensors file, a sharded checkpoint's index (*.json), or a model directory holding either.
TensorSet read_safetensors_any(const std::string& path) {
  py::gil_scoped_release release;
  return read_safetensors_model(path);
}

py::dict read_safetensors_dict(const std::string& path, bool writable) {
  TensorSet set = read_safetensors_any(path);
  return tensors_to_dict(set, writable);
}

py::dict read_safetensors_metadata(const std::string& path) {
  const TensorSet set = read_safetensors_any(path);
  py::dict out;
  for (const auto& kv : set.metadata()) out[py::str(kv.first)] = kv.second;
  return out;
}

void write_safetensors_dict(const std::string& path, const py::dict& tensors,
                            const std::map<std::string, std::string>& metadata) {
  TensorSet set = tensor_set_view(tensors, false);
  set.metadata() = metadata;
  py::gil_scoped_release release;
  write_safetensors(path, set);
}

std::pair<double, double> auto_lambda_range_py(const py::dict& tensors, const py::object& importance,
                                               const Params& params) {
  const ModelInputs in = model_inputs(tensor_set_view(tensors, false), importance, "");
  const ModelQuantizeParams engine_params = params.to_engine();
  py::gil_scoped_release release;
  return auto_lambda_range(in.model, in.importance_or_null(), engine_params);
}

// Rows keyed by the CLI's CSV columns (NaN metrics -> None), and the CSV text itself (byte-identical to the CLI's).
std::pair<py::list, std::string> run_sweep_py(const py::dict& tensors, const py::object& importance,
                                              const std::vector<std::tuple<Params, std::string, double>>& points) {
  const ModelInputs in = model_inputs(tensor_set_view(tensors, false), importance, "");
  std::vector<SweepPointSpec> specs;
  for (const auto& [p, knob_name, knob] : points) {
    NQ_CHECK(!p.has_file_budget(), ErrorCode::kInvalidArgument,
             "sweep takes no target_size or target_file_ratio: its points are given; quantize_model, save and "
             "compress meet a file budget");
    specs.push_back({p.to_engine(), knob_name, knob, parse_index_coder(p.coder)});
  }
  std::vector<SweepPoint> result;
  std::string csv;
  {
    py::gil_scoped_release release;
    result = run_sweep(in.model, in.importance_or_null(), specs, SweepEvaluator());
    csv = sweep_to_csv(result);
  }
  py::list rows;
  for (const auto& p : result) {
    py::dict r;
    r["index"] = p.index;
    r["method"] = p.method;
    r["scope"] = p.scope;
    r["knob_name"] = p.knob_name;
    r["knob"] = p.knob;
    py::dict s = stats_to_dict(p.stats);
    for (const char* key : {"lambda", "params", "pruned", "clusters", "hw_distortion", "mse",
                            "entropy_bits_per_weight", "huffman_bits_per_weight", "fixed_bits_per_weight",
                            "ratio_fixed", "ratio_entropy", "ratio_huffman", "ratio_file"}) {
      r[key] = s[key];
    }
    r["accuracy"] = nan_to_none(p.metrics.accuracy);
    r["loss"] = nan_to_none(p.metrics.loss);
    r["accuracy_finetuned"] = nan_to_none(p.metrics.accuracy_finetuned);
    r["loss_finetuned"] = nan_to_none(p.metrics.loss_finetuned);
    r["accuracy_validation"] = nan_to_none(p.metrics.accuracy_validation);
    r["accuracy_finetuned_validation"] = nan_to_none(p.metrics.accuracy_finetuned_validation);
    r["duplicate"] = p.duplicate_of_previous;
    r["include"] = p.include;  // last, as in the CSV
    r["exclude"] = p.exclude;
    rows.append(r);
  }
  return {rows, csv};
}

py::list method_table_py() {
  py::list out;
  for (const auto& m : method_table()) {
    py::dict d;
    d["name"] = m.name;
    d["summary"] = m.summary;
    d["uses_importance"] = m.uses_importance;
    d["has_lambda"] = m.has_lambda;
    d["takes_k"] = m.takes_k;
    d["supports_target"] = m.supports_target;
    out.append(d);
  }
  return out;
}

// nq::Error -> netquant.NetquantError subclass chosen by code (netquant/_errors.py), same message, `.code` set.
void translate_error(std::exception_ptr p) {
  try {
    if (p) std::rethrow_exception(p);
  } catch (const Error& e) {
    try {
      py::object cls = py::module_::import("netquant._errors").attr("error_class_for_code")(error_code_name(e.code()));
      py::object exc = cls(e.what());
      exc.attr("code") = error_code_name(e.code());
      PyErr_SetObject(cls.ptr(), exc.ptr());
    } catch (py::error_already_set&) {
      PyErr_SetString(PyExc_RuntimeError, e.what());
    }
  }
}

}  // namespace
}  // namespace nq::python

PYBIND11_MODULE(_core, m) {
  using namespace nq::python;
  m.doc() = "netquant._core: C++ engine bindings (use the `netquant` package, not this module directly)";
  py::register_exception_translator(&translate_error);

  py::class_<Params>(m, "Params", "Every quantizer knob; defaults are the engine's (nq::ModelQuantizeParams).")
      .def(py::init<>())
      .def_readwrite("method", &Params::method)
      .def_readwrite("k", &Params::k)
      .def_readwrite("lam", &Params::lam)
      .def_readwrite("step", &Params::step)
      .def_readwrite("target_bits", &Params::target_bits)
      .def_readwrite("target_ratio", &Params::target_ratio)
      .def_readwrite("init", &Params::init)
      .def_readwrite("max_iter", &Params::max_iter)
      .def_readwrite("tol", &Params::tol)
      .def_readwrite("seed", &Params::seed)
      .def_readwrite("int_symmetric", &Params::int_symmetric)
      .def_readwrite("int_bits", &Params::int_bits)
      .def_readwrite("pow2_levels", &Params::pow2_levels)
      .def_readwrite("exact_histogram_bins", &Params::exact_histogram_bins)
      .def_readwrite("scope", &Params::scope)
      .def_readwrite("prune", &Params::prune)
      .def_readwrite("importance_transform", &Params::importance_transform)
      .def_readwrite("skip_1d", &Params::skip_1d)
      .def_readwrite("include", &Params::include)
      .def_readwrite("exclude", &Params::exclude)
      .def_readwrite("batch_weights", &Params::batch_weights)
      .def_readwrite("rate_allocation", &Params::rate_allocation)
      .def_readwrite("target_size", &Params::target_size)
      .def_readwrite("target_file_ratio", &Params::target_file_ratio)
      .def_readwrite("coder", &Params::coder)
      .def_readwrite("backend", &Params::backend)
      .def("validate", [](const Params& p) { p.to_engine(); }, "Parses the enum spellings; raises on bad values.");

  m.def("quantize_array", &quantize_array, py::arg("values"), py::arg("importance"), py::arg("params"),
        py::arg("name") = "w", py::arg("with_coding") = true);
  m.def("quantize_tensors", &quantize_tensors, py::arg("tensors"), py::arg("importance"), py::arg("params"),
        py::arg("with_coding") = true);
  m.def("prune_tensors", &prune_tensors, py::arg("tensors"), py::arg("importance"), py::arg("params"));
  m.def("write_nq", &write_nq, py::arg("path"), py::arg("tensors"), py::arg("importance"), py::arg("params"));
  m.def("read_nq", &read_nq, py::arg("path"));
  m.def("read_nq_codes", &read_nq_codes, py::arg("source"));
  m.def("compress_nq", &compress_nq, py::arg("tensors"), py::arg("importance"), py::arg("params"));
  m.def("decompress_nq", &decompress_nq, py::arg("data"));
  m.def("read_safetensors", &read_safetensors_dict, py::arg("path"), py::arg("writable") = true);
  m.def("read_safetensors_metadata", &read_safetensors_metadata, py::arg("path"));
  m.def("write_safetensors", &write_safetensors_dict, py::arg("path"), py::arg("tensors"),
        py::arg("metadata") = std::map<std::string, std::string>());
  m.def(
      "write_file_atomic",
      [](const std::string& path, const std::string& contents) {
        py::gil_scoped_release release;
        nq::write_file_atomic(path, contents);
      },
      py::arg("path"), py::arg("contents"), "A temporary file beside `path`, renamed over it when complete.");
  m.def("auto_lambda_range", &auto_lambda_range_py, py::arg("tensors"), py::arg("importance"), py::arg("params"));
  m.def("run_sweep", &run_sweep_py, py::arg("tensors"), py::arg("importance"), py::arg("points"));
  m.def("log_space", &nq::log_space, py::arg("lo"), py::arg("hi"), py::arg("n"));
  m.def("parse_lambda_list", &nq::parse_lambda_list, py::arg("text"));
  m.def("parse_int_list", &nq::parse_int_list, py::arg("text"));
  m.def("method_table", &method_table_py);
  m.def("version", [] { return std::string(nq::version()); });
  m.def("cuda_available", &nq::cuda_available);
  m.def("cuda_device_description", &nq::cuda_device_description);
  m.def("set_num_threads", &nq::set_num_threads, py::arg("threads"));
  m.def("set_progress", &nq::set_progress_enabled, py::arg("enabled"));
  m.def("named_like_model_or_data", &nq::named_like_model_or_data, py::arg("path"));
  m.def("num_threads", &nq::num_threads);
}
