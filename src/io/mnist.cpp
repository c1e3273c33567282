// MNIST / Fashion-MNIST loading: finds the IDX image and label files in a directory and checks they agree.
#include <sys/stat.h>

#include <algorithm>

#include "netquant/error.h"
#include "netquant/io.h"

namespace nq {

namespace {

bool is_file(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

// The usual spellings: "train-images-idx3-ubyte", the "train-images.idx3-ubyte" variant some mirrors use, and
// either .gz.
std::string find_idx_file(const std::string& dir, const std::string& prefix, const std::string& kind) {
  const size_t dash = kind.find('-');  // "images-idx3-ubyte" → "images" "." "idx3-ubyte"
  const std::string stems[] = {prefix + "-" + kind, prefix + "-" + kind.substr(0, dash) + "." + kind.substr(dash + 1)};
  std::string tried;
  for (const auto& stem : {stems[0], stems[1]}) {
    for (const char* ext : {"", ".gz"}) {
      const std::string p = dir + "/" + stem + ext;
      if (is_file(p)) return p;
      tried += (tried.empty() ? "" : ", ") + stem + ext;
    }
  }
  NQ_FAIL(ErrorCode::kIo, dir << ": no MNIST file found (looked for " << tried << ")");
}

}  // namespace

Dataset load_mnist(const std::string& dir, bool train) {
  // An empty name would search "/" (the file names are appended to dir + "/").
  NQ_CHECK(!dir.empty(), ErrorCode::kInvalidArgument, "--data: the data directory's name is empty");
  const std::string prefix = train ? "train" : "t10k";
  const std::string images_path = find_idx_file(dir, prefix, "images-idx3-ubyte");
  const std::string labels_path = find_idx_file(dir, prefix, "labels-idx1-ubyte");
  const Tensor images = read_idx(images_path);
  const Tensor labels = read_idx(labels_path);
  NQ_CHECK(images.dtype() == DType::kU8 && images.ndim() == 3, ErrorCode::kBadFile,
           images_path << ": expected u8 images of shape [n, rows, cols], got " << dtype_name(images.dtype()) << " "
                       << shape_to_string(images.shape()));
  NQ_CHECK(labels.dtype() == DType::kU8 && labels.ndim() == 1, ErrorCode::kBadFile,
           labels_path << ": expected u8 labels of shape [n], got " << dtype_name(labels.dtype()) << " "
                       << shape_to_string(labels.shape()));
  const int64_t n = images.shape()[0], rows = images.shape()[1], cols = images.shape()[2];
  NQ_CHECK(labels.shape()[0] == n, ErrorCode::kBadFile,
           labels_path << ": " << labels.shape()[0] << " labels for " << n << " images in " << images_path);

  Dataset ds;
  ds.images = Tensor(prefix + "_images", DType::kF32, {n, 1, rows, cols});
  const uint8_t* src = images.data_as<uint8_t>();
  float* dst = ds.images.mutable_data_as<float>();
  const int64_t total = images.numel();
  for (int64_t i = 0; i < total; ++i) dst[i] = static_cast<float>(src[i]) / 255.0f;  // division, as numpy x / 255 does

  const uint8_t* lab = labels.data_as<uint8_t>();
  ds.labels.assign(lab, lab + n);
  const int32_t max_label = n ? *std::max_element(ds.labels.begin(), ds.labels.end()) : 0;
  // Labels are classes 0..K-1; MNIST-style sets have 10, a larger label widens the set rather than failing.
  ds.num_classes = std::max<int>(10, max_label + 1);
  return ds;
}

}  // namespace nq
