// Index coding speed (MB/s of 8-bit symbols, encode and decode, one core, and one stream on 1 or 2 threads) and rate
// (bits/symbol vs entropy) on a realistic skewed distribution: quantized weights, a discretized Gaussian over 256
// levels. Huffman, and rANS (.nq version 2) on the same symbols.
#include <benchmark/benchmark.h>
#include <omp.h>

#include <cmath>
#include <random>
#include <vector>

#include "coding/bit_io.h"
#include "coding/huffman.h"
#include "coding/huffman_parallel.h"
#include "coding/rans.h"

namespace {

using namespace nq::coding;

// Indices of Gaussian weights quantized uniformly to 256 levels with the given spread (levels per σ):
// small spreads are very skewed (low entropy), large ones close to uniform. A benchmark argument of 0 stands for
// σ = 0.25 (≈ 0.3 bits: where entropy-constrained quantization ends up, and Huffman's one-bit floor costs most),
// −1 for σ = 0.5 (≈ 1.1 bits).
double sigma_of(int64_t arg) { return arg == 0 ? 0.25 : arg == -1 ? 0.5 : arg == -2 ? 0.35 : static_cast<double>(arg); }

std::vector<uint8_t> make_symbols(size_t n, double sigma_levels, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> g(128.0, sigma_levels);
  std::vector<uint8_t> s(n);
  for (auto& v : s) v = static_cast<uint8_t>(std::min(255.0, std::max(0.0, std::round(g(rng)))));
  return s;
}

std::vector<uint64_t> histogram(const std::vector<uint8_t>& s) {
  std::vector<uint64_t> h(256, 0);
  for (uint8_t v : s) ++h[v];
  return h;
}

double entropy_bits(const std::vector<uint64_t>& h, size_t n) {
  double e = 0;
  for (uint64_t c : h)
    if (c) {
      const double p = static_cast<double>(c) / static_cast<double>(n);
      e -= p * std::log2(p);
    }
  return e;
}

constexpr size_t kN = size_t{1} << 24;  // 16 MiB of symbols: well beyond the caches

// kN symbols of spread σ (levels), their optimal code and the serial coder's stream.
struct CodedStream {
  explicit CodedStream(int64_t sigma_levels)
      : symbols(make_symbols(kN, sigma_of(sigma_levels), 1)),
        counts(histogram(symbols)),
        lengths(huffman_code_lengths(counts)) {
    BitWriter w(huffman_stream_bits(counts, lengths));
    HuffmanEncoder(lengths).encode(symbols.data(), symbols.size(), w);
    bits = w.bit_count();
    bytes = w.finish();
  }
  std::vector<uint8_t> symbols;
  std::vector<uint64_t> counts;
  std::vector<uint8_t> lengths;
  uint64_t bits = 0;
  std::vector<uint8_t> bytes;
};

// The OpenMP thread count for one benchmark, restored after it.
class ScopedThreads {
 public:
  explicit ScopedThreads(int threads) : saved_(omp_get_max_threads()) { omp_set_num_threads(threads); }
  ~ScopedThreads() { omp_set_num_threads(saved_); }

 private:
  int saved_;
};

void BM_HuffmanEncode(benchmark::State& state) {
  const auto symbols = make_symbols(kN, sigma_of(state.range(0)), 1);
  const auto counts = histogram(symbols);
  const auto lengths = huffman_code_lengths(counts);
  const HuffmanEncoder enc(lengths);
  const uint64_t bits = huffman_stream_bits(counts, lengths);
  for (auto _ : state) {
    BitWriter w(bits);
    enc.encode(symbols.data(), symbols.size(), w);
    benchmark::DoNotOptimize(w.finish());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(kN));
  state.counters["bits_per_symbol"] = static_cast<double>(bits) / kN;
  state.counters["entropy"] = entropy_bits(counts, kN);
}

void BM_HuffmanDecode(benchmark::State& state) {
  const CodedStream cs(state.range(0));
  const HuffmanDecoder dec(cs.lengths, "bench");
  std::vector<uint8_t> out(kN);
  for (auto _ : state) {
    BitReader r(cs.bytes.data(), cs.bytes.size(), cs.bits);
    dec.decode(r, out.data(), out.size());
    benchmark::DoNotOptimize(out.data());
  }
  if (out != cs.symbols) state.SkipWithError("round trip mismatch");
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(kN));
  state.counters["bits_per_symbol"] = static_cast<double>(cs.bits) / kN;
  state.counters["entropy"] = entropy_bits(cs.counts, kN);
}

// One stream coded on range(1) threads in chunks spliced at their bit offsets (huffman_parallel.h); the bytes
// must be the serial coder's.
void BM_HuffmanEncodeParallel(benchmark::State& state) {
  const CodedStream cs(state.range(0));
  const HuffmanEncoder enc(cs.lengths);
  const int threads = static_cast<int>(state.range(1));
  const ScopedThreads scoped(threads);
  std::vector<uint8_t> bytes;
  for (auto _ : state) {
    bytes = encode_stream_parallel(enc, cs.symbols.data(), kN, cs.bits, (kN + 4 * threads - 1) / (4 * threads));
    benchmark::DoNotOptimize(bytes.data());
  }
  if (bytes != cs.bytes) state.SkipWithError("bytes differ from the serial coder's");
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(kN));
}

// One stream decoded on range(1) threads by speculative segments (huffman_parallel.h); range(1) = 1 is the same
// code path on one thread, so the ratio to BM_HuffmanDecode is its overhead.
void BM_HuffmanDecodeParallel(benchmark::State& state) {
  const CodedStream cs(state.range(0));
  const HuffmanDecoder dec(cs.lengths, "bench");
  std::vector<uint8_t> out(kN);
  const int threads = static_cast<int>(state.range(1));
  const ScopedThreads scoped(threads);
  for (auto _ : state) {
    const bool ok = decode_stream_parallel<uint8_t>(dec, cs.bytes.data(), cs.bytes.size(), cs.bits,
                                                    [&](size_t total) { return total == kN ? out.data() : nullptr; },
                                                    (cs.bits + 4 * threads - 1) / (4 * threads));
    if (!ok) state.SkipWithError("parallel decode refused the stream");
    benchmark::DoNotOptimize(out.data());
  }
  if (out != cs.symbols) state.SkipWithError("round trip mismatch");
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(kN));
}

// rANS in chunks of kRansChunkSymbols on range(1) threads (rans.h): the whole section, chunk sizes included.
void BM_RansEncode(benchmark::State& state) {
  const auto symbols = make_symbols(kN, sigma_of(state.range(0)), 1);
  const auto counts = histogram(symbols);
  const RansTable table = rans_table_for(counts);
  const ScopedThreads scoped(static_cast<int>(state.range(1)));
  std::vector<uint8_t> bytes;
  for (auto _ : state) {
    bytes = rans_encode(table, symbols.data(), kN, kRansChunkSymbols);
    benchmark::DoNotOptimize(bytes.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(kN));
  state.counters["bits_per_symbol"] = 8.0 * static_cast<double>(bytes.size()) / kN;
  state.counters["entropy"] = entropy_bits(counts, kN);
}

void BM_RansDecode(benchmark::State& state) {
  const auto symbols = make_symbols(kN, sigma_of(state.range(0)), 1);
  const RansTable table = rans_table_for(histogram(symbols));
  const auto bytes = rans_encode(table, symbols.data(), kN, kRansChunkSymbols);
  const ScopedThreads scoped(static_cast<int>(state.range(1)));
  std::vector<uint8_t> out(kN);
  for (auto _ : state) {
    rans_decode(table, bytes.data(), bytes.size(), out.data(), kN, "bench");
    benchmark::DoNotOptimize(out.data());
  }
  if (out != symbols) state.SkipWithError("round trip mismatch");
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(kN));
}

void BM_CodeLengths(benchmark::State& state) {
  const auto counts = histogram(make_symbols(kN / 16, static_cast<double>(state.range(0)), 2));
  for (auto _ : state) benchmark::DoNotOptimize(huffman_code_lengths(counts));
}

}  // namespace

// σ in levels: 0 (σ = 0.25, ≈0.3 bits/symbol), 2 (≈3 bits, typical of pruned/ECSQ weights), 8 (≈5 bits), 40 (≈7.3
// bits, near uniform).
BENCHMARK(BM_HuffmanEncode)->Arg(0)->Arg(-1)->Arg(1)->Arg(2)->Arg(8)->Arg(40)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_HuffmanDecode)->Arg(0)->Arg(-1)->Arg(1)->Arg(2)->Arg(8)->Arg(40)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_RansEncode)->ArgsProduct({{0, -2, -1, 1, 2, 8, 40}, {1, 2}})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_RansDecode)->ArgsProduct({{0, -2, -1, 1, 2, 8, 40}, {1, 2}})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_HuffmanEncodeParallel)->ArgsProduct({{2, 8, 40}, {1, 2}})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_HuffmanDecodeParallel)->ArgsProduct({{2, 8, 40}, {1, 2}})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_CodeLengths)->Arg(2)->Arg(40)->Unit(benchmark::kMicrosecond);

BENCHMARK_MAIN();
