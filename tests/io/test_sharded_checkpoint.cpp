// Sharded safetensors checkpoints (model.safetensors.index.json + shards): read as one model, the oracle being the
// same tensors written as one file; the index's hostile and inconsistent forms are errors naming the file and the
// tensor; a model directory resolves to its index or its one file.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <random>

#include "io/checkpoint_test_util.h"
#include "io/io_test_util.h"
#include "netquant/error.h"
#include "netquant/io.h"

namespace nq {
namespace {

// A model of awkward sizes in several dtypes, random bits (NaN patterns included: they must survive untouched).
TensorSet random_model(uint64_t seed, int tensors) {
  std::mt19937_64 rng(seed);
  const DType dtypes[] = {DType::kF32, DType::kF16, DType::kBF16, DType::kF64, DType::kI32, DType::kU8};
  TensorSet model;
  for (int i = 0; i < tensors; ++i) {
    std::vector<int64_t> shape;
    const int rank = static_cast<int>(rng() % 3);
    for (int d = 0; d <= rank; ++d) shape.push_back(static_cast<int64_t>(rng() % 37));
    Tensor t("layers." + std::to_string(i) + (i % 3 ? ".weight" : ".bias"), dtypes[rng() % 6], shape);
    auto* p = static_cast<uint8_t*>(t.mutable_data());
    for (size_t b = 0; b < t.nbytes(); ++b) p[b] = static_cast<uint8_t>(rng());
    model.add(std::move(t));
  }
  return model;
}

void expect_same_tensors(const TensorSet& want, const TensorSet& got) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    SCOPED_TRACE(want[i].name());
    EXPECT_EQ(got[i].name(), want[i].name());
    EXPECT_EQ(got[i].dtype(), want[i].dtype());
    EXPECT_EQ(got[i].shape(), want[i].shape());
    ASSERT_EQ(got[i].nbytes(), want[i].nbytes());
    if (want[i].nbytes()) {
      EXPECT_EQ(std::memcmp(got[i].data(), want[i].data(), want[i].nbytes()), 0);
    }
  }
}

std::vector<int> random_shards(size_t tensors, int shards, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int> shard_of(tensors);
  for (size_t i = 0; i < tensors; ++i)  // every shard gets at least one tensor
    shard_of[i] = static_cast<int>(i < static_cast<size_t>(shards) ? i : rng() % static_cast<uint64_t>(shards));
  return shard_of;
}

TEST(ShardedCheckpoint, ReadsAsTheSameTensorsWrittenAsOneFile) {
  for (const auto& [tensors, shards] : {std::pair<int, int>{1, 1}, {7, 3}, {31, 4}, {40, 11}}) {
    SCOPED_TRACE(std::to_string(tensors) + " tensors in " + std::to_string(shards) + " shards");
    test::TempDir dir;
    const TensorSet model = random_model(static_cast<uint64_t>(100 + tensors), tensors);
    TensorSet order;
    const std::string index = test::write_sharded_checkpoint(
        dir.path(), model, random_shards(model.size(), shards, static_cast<uint64_t>(tensors)), shards, &order);
    // The oracle: the same tensors in the same order, written and read back as one safetensors file.
    write_safetensors(dir.file("whole.safetensors"), order);
    const TensorSet whole = read_safetensors(dir.file("whole.safetensors"));
    expect_same_tensors(whole, read_tensors(index));
    expect_same_tensors(whole, read_sharded_safetensors(index));

    // The header-only path: the same entries, each naming its shard, and ranged reads equal the tensor's bytes.
    const std::vector<SafetensorsEntry> entries = read_safetensors_entries(index);
    ASSERT_EQ(entries.size(), whole.size());
    const CheckpointIndex parsed = read_checkpoint_index(index);
    for (size_t i = 0; i < entries.size(); ++i) {
      EXPECT_EQ(entries[i].name, whole[i].name());
      const auto it = std::find_if(parsed.weight_map.begin(), parsed.weight_map.end(),
                                   [&](const auto& e) { return e.first == entries[i].name; });
      ASSERT_NE(it, parsed.weight_map.end());
      EXPECT_EQ(entries[i].file, dir.file(parsed.shards[it->second]));
      const int64_t n = whole[i].numel(), first = n / 3, count = n - first - n / 5;
      const Tensor part = read_safetensors_range(entries[i], first, count);
      const size_t es = dtype_size(whole[i].dtype());
      if (count) {
        EXPECT_EQ(std::memcmp(part.data(), static_cast<const uint8_t*>(whole[i].data()) + first * es, count * es), 0);
      }
      // A range past the tensor's end is refused, not read from the bytes of the tensor after it.
      EXPECT_THROW(read_safetensors_range(entries[i], first, n - first + 1), Error);
      EXPECT_THROW(read_safetensors_range(entries[i], n + 1, 0), Error);
    }
    // A command refusing to overwrite its inputs sees every shard.
    std::vector<std::string> files = tensor_input_files(index);
    ASSERT_EQ(files.size(), static_cast<size_t>(shards) + 1);
    EXPECT_EQ(files[0], index);
    for (int s = 0; s < shards; ++s) EXPECT_EQ(files[1 + s], dir.file(test::shard_file_name(s, shards)));
  }
}

TEST(ShardedCheckpoint, KeepsTheMetadataEveryShardAgreesOn) {
  test::TempDir dir;
  const TensorSet model = random_model(7, 6);
  const std::string index = test::write_sharded_checkpoint(dir.path(), model, {0, 1, 2, 0, 1, 2}, 3, nullptr,
                                                           {{"format", "pt"}, {"step", "100"}});
  EXPECT_EQ(read_tensors(index).metadata(), (std::map<std::string, std::string>{{"format", "pt"}, {"step", "100"}}));
  // Rewrite the last shard with a different "step" and no "format": nothing but the agreed keys is kept.
  TensorSet last = read_safetensors(dir.file(test::shard_file_name(2, 3)));
  TensorSet copy;
  for (const Tensor& t : last) copy.add(Tensor(t.name(), t.dtype(), t.shape()));
  for (size_t i = 0; i < copy.size(); ++i)
    if (copy[i].nbytes()) std::memcpy(copy[i].mutable_data(), last[i].data(), copy[i].nbytes());
  copy.metadata() = {{"step", "200"}, {"format", "pt"}, {"extra", "x"}};
  write_safetensors(dir.file(test::shard_file_name(2, 3)), copy);
  EXPECT_EQ(read_tensors(index).metadata(), (std::map<std::string, std::string>{{"format", "pt"}}));
}

TEST(ShardedCheckpoint, ShardsMayLieInSubdirectories) {
  test::TempDir dir;
  const TensorSet model = random_model(9, 4);
  std::filesystem::create_directory(dir.file("part"));
  TensorSet a, b;
  a.add(model[0]);
  a.add(model[1]);
  b.add(model[2]);
  b.add(model[3]);
  write_safetensors(dir.file("part/a.safetensors"), a);
  write_safetensors(dir.file("b.safetensors"), b);
  test::write_bytes(dir.file("idx.json"),
                    R"({"weight_map":{")" + model[0].name() + R"(":"part/a.safetensors",")" + model[1].name() +
                        R"(":"part/a.safetensors",")" + model[2].name() + R"(":"b.safetensors",")" + model[3].name() +
                        R"(":"b.safetensors"}})");
  // Shards in name order: "b.safetensors" < "part/a.safetensors".
  TensorSet want;
  for (int i : {2, 3, 0, 1}) want.add(model[i]);
  expect_same_tensors(want, read_tensors(dir.file("idx.json")));
}

// Each broken index: the error code and words its message must hold (the file, the tensor, the problem).
TEST(ShardedCheckpoint, MalformedIndexesAreErrorsNamingTheProblem) {
  struct Case {
    const char* json;
    std::vector<std::string> needles;
  };
  const Case cases[] = {
      {R"([1,2])", {"must be a JSON object"}},
      {R"({"metadata":{"total_size":1}})", {"no \"weight_map\""}},
      {R"({"weight_map":[]})", {"\"weight_map\" must be an object"}},
      {R"({"weight_map":{}})", {"\"weight_map\" is empty"}},
      {R"({"weight_map":{"w":3}})", {"tensor 'w'", "must be a file name"}},
      {R"({"weight_map":{"w":"/etc/x.safetensors"}})", {"'/etc/x.safetensors'", "absolute path"}},
      {R"({"weight_map":{"w":"../x.safetensors"}})", {"'..'"}},
      {R"({"weight_map":{"w":"a//x.safetensors"}})", {"empty, '.' or '..'"}},
      {R"({"weight_map":{"w":"./x.safetensors"}})", {"empty, '.' or '..'"}},
      {R"({"weight_map":{"w":""}})", {"tensor 'w'", "is empty"}},
      {R"({"weight_map":{"w":"x.safetensors\u0000.bin"}})", {"'x.safetensors\\x00.bin'", "NUL"}},
      {R"({"weight_map":{"w":"pytorch_model-00001-of-00002.bin"}})", {"not a .safetensors file", "convert"}},
      {R"({"weight_map":{"w":"a.safetensors","w":"b.safetensors"}})", {"duplicate key 'w'"}},
      {R"({"weight_map":{"w":"a.safetensors"})", {"not valid JSON"}},
      {"{\"weight_map\":{\"w\":\"a\xff.safetensors\"}}", {"not valid UTF-8"}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.json);
    const std::string text = c.json;
    const auto* bytes = reinterpret_cast<const uint8_t*>(text.data());
    test::expect_error([&] { parse_checkpoint_index(bytes, text.size(), "m.json"); }, ErrorCode::kBadFile, {});
    std::vector<std::string> needles = c.needles;
    needles.push_back("m.json");
    try {
      parse_checkpoint_index(bytes, text.size(), "m.json");
    } catch (const Error& e) {
      for (const auto& n : needles)
        EXPECT_NE(std::string(e.what()).find(n), std::string::npos) << "message lacks '" << n << "': " << e.what();
    }
  }
  const std::string deep = R"({"metadata":)" + std::string(100, '[') + std::string(100, ']') +
                           R"(,"weight_map":{"w":"a.safetensors"}})";
  const auto* deep_bytes = reinterpret_cast<const uint8_t*>(deep.data());
  test::expect_error([&] { parse_checkpoint_index(deep_bytes, deep.size(), "d.json"); }, ErrorCode::kBadFile,
                     {"d.json", "deeper"});
  // Keys other than weight_map are not used, whatever they hold.
  const std::string extra = R"({"metadata":{"total_size":"n/a","x":[1,{}]},"weight_map":{"b":"s2.safetensors",)"
                            R"("a":"s1.safetensors","c":"s1.safetensors"},"other":null})";
  const CheckpointIndex ok = parse_checkpoint_index(reinterpret_cast<const uint8_t*>(extra.data()), extra.size(), "e");
  EXPECT_EQ(ok.shards, (std::vector<std::string>{"s1.safetensors", "s2.safetensors"}));
  EXPECT_EQ(ok.weight_map, (std::vector<std::pair<std::string, size_t>>{{"a", 0}, {"b", 1}, {"c", 0}}));
}

// An index that disagrees with its shards is an error naming the tensor and both files, never a different model.
TEST(ShardedCheckpoint, IndexAndShardsMustAgree) {
  test::TempDir dir;
  const TensorSet model = random_model(11, 5);
  const std::string index = test::write_sharded_checkpoint(dir.path(), model, {0, 0, 1, 1, 1}, 2);
  const std::string s1 = test::shard_file_name(0, 2), s2 = test::shard_file_name(1, 2);
  const std::string n0 = model[0].name(), n1 = model[1].name(), n2 = model[2].name(), n3 = model[3].name(),
                    n4 = model[4].name();
  auto rewrite = [&](const std::string& weight_map) {
    test::write_bytes(index, R"({"metadata":{"total_size":0},"weight_map":{)" + weight_map + "}}");
  };
  auto entry = [](const std::string& n, const std::string& s) { return "\"" + n + "\":\"" + s + "\""; };
  auto both = [&](ErrorCode code, std::initializer_list<std::string> needles) {
    test::expect_error([&] { read_tensors(index); }, code, needles);
    test::expect_error([&] { read_safetensors_entries(index); }, code, needles);
  };
  // A tensor the index leaves out.
  rewrite(entry(n0, s1) + "," + entry(n1, s1) + "," + entry(n2, s2) + "," + entry(n3, s2));
  both(ErrorCode::kBadFile, {s2, "'" + n4 + "'", "does not list"});
  // A tensor placed in the wrong shard.
  rewrite(entry(n0, s1) + "," + entry(n1, s2) + "," + entry(n2, s2) + "," + entry(n3, s2) + "," + entry(n4, s2));
  both(ErrorCode::kBadFile, {s1, "'" + n1 + "'", "places in '" + s2 + "'"});
  // A tensor the index lists but no shard holds.
  rewrite(entry(n0, s1) + "," + entry(n1, s1) + "," + entry(n2, s2) + "," + entry(n3, s2) + "," + entry(n4, s2) +
          "," + entry("lm_head.weight", s2));
  both(ErrorCode::kBadFile, {"model.safetensors.index.json", "'lm_head.weight'", "does not hold it"});
  // A shard that is missing.
  rewrite(entry(n0, s1) + "," + entry(n1, s1) + "," + entry(n2, s2) + "," + entry(n3, s2) + "," + entry(n4, s2) +
          "," + entry("x", "model-00003-of-00003.safetensors"));
  both(ErrorCode::kIo, {"model-00003-of-00003.safetensors"});
  // The same tensor in two shards (each shard valid on its own).
  TensorSet extra;
  extra.add(model[0]);
  write_safetensors(dir.file("dup.safetensors"), extra);
  rewrite(entry(n0, s1) + "," + entry(n1, s1) + "," + entry(n2, s2) + "," + entry(n3, s2) + "," + entry(n4, s2) +
          "," + entry("y", "dup.safetensors"));
  both(ErrorCode::kBadFile, {"dup.safetensors", "'" + n0 + "'", "places in '" + s1 + "'"});
  // A broken shard is reported as the safetensors reader reports it, naming the shard.
  test::write_bytes(dir.file(s2), "garbage!");
  rewrite(entry(n0, s1) + "," + entry(n1, s1) + "," + entry(n2, s2) + "," + entry(n3, s2) + "," + entry(n4, s2));
  both(ErrorCode::kBadFile, {s2});
}

TEST(ShardedCheckpoint, DirectoryResolvesToItsIndexOrItsOneFile) {
  test::TempDir dir;
  const TensorSet model = random_model(13, 6);
  TensorSet order;
  const std::string index = test::write_sharded_checkpoint(dir.path(), model, {0, 1, 2, 0, 1, 2}, 3, &order);
  test::write_bytes(dir.file("config.json"), "{}");  // a model folder's other files are not candidates
  EXPECT_EQ(resolve_tensor_path(dir.path()), index);
  EXPECT_EQ(resolve_tensor_path(dir.path() + "/"), index);
  expect_same_tensors(order, read_tensors(dir.path()));
  EXPECT_EQ(tensor_input_files(dir.path()).size(), 4u);

  // Two indexes: ambiguous.
  test::write_bytes(dir.file("other.safetensors.index.json"), test::read_bytes(index));
  test::expect_error([&] { read_tensors(dir.path()); }, ErrorCode::kInvalidArgument,
                     {dir.path(), "2 checkpoint indexes", "other.safetensors.index.json"});

  // One file, no index: that file (through a symbolic link too, as in the Hugging Face cache).
  test::TempDir one;
  write_safetensors(one.file("blob"), model);
  std::filesystem::create_symlink(one.file("blob"), one.file("model.safetensors"));
  EXPECT_EQ(resolve_tensor_path(one.path()), one.path() + "/model.safetensors");
  expect_same_tensors(model, read_tensors(one.path()));
  // Several files and no index: ambiguous; none: an error saying what was looked for.
  write_safetensors(one.file("extra.safetensors"), model);
  test::expect_error([&] { read_tensors(one.path()); }, ErrorCode::kInvalidArgument,
                     {"2 .safetensors files", "extra.safetensors", "model.safetensors"});
  test::TempDir empty;
  test::expect_error([&] { read_tensors(empty.path()); }, ErrorCode::kIo,
                     {empty.path(), "without a *.safetensors.index.json or .safetensors file"});
  // Any other path is what it names.
  EXPECT_EQ(resolve_tensor_path(dir.file("nonexistent.npy")), dir.file("nonexistent.npy"));
}

}  // namespace
}  // namespace nq
