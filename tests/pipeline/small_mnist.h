// A small MNIST-format directory cut from the installed Fashion-MNIST: the first n_train training and n_test test
// images written as uncompressed IDX files, so tests can train, fine-tune and hold out images in seconds.
#pragma once

#include <sys/stat.h>

#include <cmath>
#include <cstdint>
#include <fstream>
#include <string>

#include "netquant/io.h"
#include "netquant/pipeline.h"

namespace nq::testing {

inline bool have_fashion_mnist() {
  struct stat st {};
  return ::stat((std::string(default_data_dir()) + "/train-labels-idx1-ubyte.gz").c_str(), &st) == 0;
}

inline void write_be32(std::ofstream& out, uint32_t v) {
  const char b[4] = {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8),
                     static_cast<char>(v)};
  out.write(b, 4);
}

// IDX images (magic 0x803) and labels (0x801) of `data`; pixels back to the bytes they were read from (v·255).
inline void write_mnist_split(const Dataset& data, const std::string& dir, const std::string& prefix) {
  const auto& shape = data.images.shape();
  std::ofstream images(dir + "/" + prefix + "-images-idx3-ubyte", std::ios::binary);
  write_be32(images, 0x803);
  write_be32(images, static_cast<uint32_t>(data.size()));
  write_be32(images, static_cast<uint32_t>(shape[2]));
  write_be32(images, static_cast<uint32_t>(shape[3]));
  for (float v : data.images.to_f32()) images.put(static_cast<char>(static_cast<uint8_t>(std::lround(v * 255.0f))));
  std::ofstream labels(dir + "/" + prefix + "-labels-idx1-ubyte", std::ios::binary);
  write_be32(labels, 0x801);
  write_be32(labels, static_cast<uint32_t>(data.size()));
  for (int32_t l : data.labels) labels.put(static_cast<char>(l));
}

inline void write_small_mnist(const std::string& dir, int64_t n_train, int64_t n_test) {
  ::mkdir(dir.c_str(), 0755);
  write_mnist_split(dataset_head(load_mnist(default_data_dir(), true), n_train), dir, "train");
  write_mnist_split(dataset_head(load_mnist(default_data_dir(), false), n_test), dir, "t10k");
}

}  // namespace nq::testing
