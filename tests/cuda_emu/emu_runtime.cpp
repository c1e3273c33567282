// The emulated device (see README.md): each thread of a block is a fiber with its own stack; a fiber runs until it
// reaches a barrier or a warp collective, and a barrier opens when every live thread of its block (or of the lanes
// its mask names) has arrived. Device memory is host memory from malloc, filled with 0xff bytes and fenced by
// guard bytes that cudaFree checks; copies check their direction against the list of device allocations.
#include <sys/mman.h>

#include <atomic>
#include <chrono>
#include <cstdarg>
#include <exception>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "cuda_runtime.h"

// The fiber switch: a few lines of x86-64 assembly (no system call per switch, unlike swapcontext), or ucontext
// on other targets and under AddressSanitizer (which understands swapcontext, not a hand-made switch).
#if defined(__SANITIZE_ADDRESS__) || !defined(__x86_64__)
#define EMU_UCONTEXT 1
#include <ucontext.h>
#else
#define EMU_UCONTEXT 0
#endif

extern "C" void emu_switch(void** save_sp, void* new_sp);
#if !EMU_UCONTEXT
asm(R"(
.text
.globl emu_switch
.type emu_switch,@function
emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $16, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $16, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
.size emu_switch,.-emu_switch
)");
#endif

namespace nq_emu {

std::atomic<long long> g_launch_count{0};

void fail(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  std::fprintf(stderr, "\n*** EMU FAILURE: ");
  std::vfprintf(stderr, fmt, ap);
  std::fprintf(stderr, "\n");
  va_end(ap);
  std::fflush(stderr);
  std::abort();
}

namespace {

enum State { kRunnable, kBlockBarrier, kWarpBarrier, kDone };
constexpr size_t kStack = 256 * 1024;

struct Fiber {
  void* sp = nullptr;
#if EMU_UCONTEXT
  ucontext_t uc;
#endif
  unsigned char* stack = nullptr;
  State state = kDone;
  unsigned warp_mask = 0;  // the mask a warp-barrier wait names
  int pred = 0;
  Coords xy;
};

struct BlockRun {
  std::vector<Fiber> fibers;
  void* sched_sp = nullptr;
#if EMU_UCONTEXT
  ucontext_t sched_uc;
#endif
  int current = -1;
  int or_result = 0;
  void (*body)(void*) = nullptr;
  void* ctx = nullptr;
  unsigned char* smem = nullptr;
  size_t smem_bytes = 0;
  uint64_t generation = 0;
  const char* kernel = "";
  // Warp collectives' exchange slots: 16 bytes per thread.
  std::vector<unsigned char> slots;
  std::mt19937_64 rng{12345};
  int order = 0;  // 0 fwd, 1 rev, 2 rand
};

thread_local BlockRun* t_run = nullptr;
thread_local Coords t_host_coords;
thread_local uint64_t t_generation = 0;

int order_mode(uint64_t* seed) {
  const char* o = std::getenv("NQ_EMU_ORDER");
  if (!o || !*o || !std::strcmp(o, "fwd")) return 0;
  if (!std::strcmp(o, "rev")) return 1;
  if (!std::strncmp(o, "rand", 4)) {
    *seed = o[4] == ':' ? std::strtoull(o + 5, nullptr, 10) : 1;
    return 2;
  }
  fail("NQ_EMU_ORDER=%s (fwd|rev|rand[:seed])", o);
}

void to_scheduler() {
  BlockRun& r = *t_run;
  Fiber& f = r.fibers[static_cast<size_t>(r.current)];
#if EMU_UCONTEXT
  swapcontext(&f.uc, &r.sched_uc);
#else
  emu_switch(&f.sp, r.sched_sp);
#endif
}

void fiber_main() {
  BlockRun& r = *t_run;
  try {  // an exception cannot unwind across fibers; device code has none, so one is a failure of the kernel
    r.body(r.ctx);
  } catch (const std::exception& e) {
    fail("kernel %s threw: %s", r.kernel, e.what());
  } catch (...) {
    fail("kernel %s threw", r.kernel);
  }
  t_run->fibers[static_cast<size_t>(t_run->current)].state = kDone;
  to_scheduler();
  fail("a finished fiber resumed");
}

#if !EMU_UCONTEXT
extern "C" void emu_fiber_entry() { fiber_main(); }
#endif

struct StackPool {
  std::vector<unsigned char*> stacks;
  unsigned char* get(size_t i) {
    while (stacks.size() <= i) {
      void* p = mmap(nullptr, kStack, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
      if (p == MAP_FAILED) fail("mmap of a fiber stack failed");
      stacks.push_back(static_cast<unsigned char*>(p));
    }
    return stacks[i];
  }
};
thread_local StackPool t_stacks;

void start_fiber(BlockRun& r, size_t i) {
  Fiber& f = r.fibers[i];
  f.stack = t_stacks.get(i);
#if EMU_UCONTEXT
  getcontext(&f.uc);
  f.uc.uc_stack.ss_sp = f.stack;
  f.uc.uc_stack.ss_size = kStack;
  f.uc.uc_link = nullptr;
  makecontext(&f.uc, fiber_main, 0);
#else
  // Frame emu_switch pops: 16 bytes of mxcsr / x87 cw, 6 registers, then the return address (emu_fiber_entry).
  uintptr_t top = reinterpret_cast<uintptr_t>(f.stack + kStack) & ~uintptr_t{15};
  top -= 8;  // the return address at ≡ 0 (mod 16): after ret, rsp ≡ 8, as after a call
  uint64_t* s = reinterpret_cast<uint64_t*>(top);
  *--s = reinterpret_cast<uint64_t>(&emu_fiber_entry);
  for (int k = 0; k < 6; ++k) *--s = 0;
  s -= 2;
  uint32_t csr = 0x1f80;
  uint16_t cw = 0x037f;
  std::memcpy(s, &csr, 4);
  std::memcpy(reinterpret_cast<unsigned char*>(s) + 4, &cw, 2);
  f.sp = s;
#endif
  f.state = kRunnable;
}

void resume(BlockRun& r, size_t i) {
  r.current = static_cast<int>(i);
#if EMU_UCONTEXT
  swapcontext(&r.sched_uc, &r.fibers[i].uc);
#else
  emu_switch(&r.sched_sp, r.fibers[i].sp);
#endif
  r.current = -1;
}

// Releases warp w's barrier when every lane its mask names (live) waits there with the same mask.
bool release_warp(BlockRun& r, size_t w0) {
  const size_t nt = r.fibers.size(), w1 = std::min(nt, w0 + 32);
  unsigned mask = 0;
  bool have = false;
  for (size_t i = w0; i < w1; ++i)
    if (r.fibers[i].state == kWarpBarrier) {
      if (have && r.fibers[i].warp_mask != mask) return false;
      mask = r.fibers[i].warp_mask;
      have = true;
    }
  if (!have) return false;
  for (size_t i = w0; i < w1; ++i) {
    const bool named = mask >> (i - w0) & 1u;
    if (named != (r.fibers[i].state == kWarpBarrier)) return false;
  }
  for (size_t i = w0; i < w1; ++i)
    if (r.fibers[i].state == kWarpBarrier) r.fibers[i].state = kRunnable;
  return true;
}

// One warp at a time runs as far as it can (through its warp barriers) before the next starts: a value one
// warp writes and another reads without a block barrier between them is then read too early (or too late) in
// one of the orders, which shows as a wrong result.
void run_block(BlockRun& r) {
  const size_t nt = r.fibers.size(), nw = (nt + 31) / 32;
  std::vector<size_t> warps(nw), lanes(32);
  for (size_t i = 0; i < nt; ++i) start_fiber(r, i);
  for (;;) {
    for (size_t w = 0; w < nw; ++w) warps[w] = r.order == 1 ? nw - 1 - w : w;
    if (r.order == 2) std::shuffle(warps.begin(), warps.end(), r.rng);
    for (size_t w : warps) {
      const size_t w0 = w * 32, w1 = std::min(nt, w0 + 32);
      do {
        for (size_t l = 0; l < w1 - w0; ++l) lanes[l] = r.order == 1 ? w1 - w0 - 1 - l : l;
        if (r.order == 2) std::shuffle(lanes.begin(), lanes.begin() + (w1 - w0), r.rng);
        for (size_t l = 0; l < w1 - w0; ++l)
          if (r.fibers[w0 + lanes[l]].state == kRunnable) resume(r, w0 + lanes[l]);
      } while (release_warp(r, w0));
    }
    size_t live = 0, at_block = 0;
    int any = 0;
    for (auto& f : r.fibers) {
      if (f.state == kDone) continue;
      ++live;
      if (f.state == kBlockBarrier) { ++at_block; any |= f.pred; }
    }
    if (live == 0) break;
    if (at_block == live) {
      r.or_result = any != 0;
      for (auto& f : r.fibers)
        if (f.state == kBlockBarrier) f.state = kRunnable;
      continue;
    }
    std::string s;
    for (size_t i = 0; i < nt; ++i) s += "0BWD"[r.fibers[i].state];
    fail("deadlock in kernel %s block (%u,%u,%u): thread states %s", r.kernel, r.fibers[0].xy.bi.x,
         r.fibers[0].xy.bi.y, r.fibers[0].xy.bi.z, s.c_str());
  }
}

Fiber& me() {
  if (!t_run || t_run->current < 0) fail("a device collective called outside a kernel");
  return t_run->fibers[static_cast<size_t>(t_run->current)];
}

void wait(State s, unsigned mask, int pred) {
  Fiber& f = me();
  f.state = s;
  f.warp_mask = mask;
  f.pred = pred;
  to_scheduler();
}

// Device allocations: start → size, for the memcpy direction checks; each has 64 guard bytes on both sides.
#if EMU_UCONTEXT
constexpr size_t kGuard = 0;  // ASan's own redzones find the overruns
#else
constexpr size_t kGuard = 64;
#endif
std::mutex g_mem_mutex;
std::map<uintptr_t, size_t> g_allocs;
size_t g_live_bytes = 0;
thread_local cudaError_t t_last_error = cudaSuccess;
std::mutex g_attr_mutex;
std::map<const void*, int> g_smem_attr;

// The dynamic shared memory a kernel may launch with: 48 KB, or what cudaFuncSetAttribute opted it into.
int allowed_dynamic_smem(const void* kernel) {
  std::lock_guard<std::mutex> lk(g_attr_mutex);
  auto it = g_smem_attr.find(kernel);
  return it != g_smem_attr.end() ? std::max(48 * 1024, it->second) : 48 * 1024;
}

void check_guards(uintptr_t p, size_t n) {
  const unsigned char* b = reinterpret_cast<const unsigned char*>(p);
  for (size_t i = 0; i < kGuard; ++i)
    if (b[-1 - static_cast<ptrdiff_t>(i)] != 0xa5 || b[n + i] != 0xa5)
      fail("device buffer %p (%zu bytes): guard byte overwritten (out-of-bounds write)", b, n);
}

}  // namespace

Coords& coords() {
  if (t_run && t_run->current >= 0) return t_run->fibers[static_cast<size_t>(t_run->current)].xy;
  return t_host_coords;
}
void syncthreads() { wait(kBlockBarrier, 0, 0); }
int syncthreads_or(int pred) {
  wait(kBlockBarrier, 0, pred != 0);
  return t_run->or_result;
}
void syncwarp(unsigned mask) { wait(kWarpBarrier, mask, 0); }
void warp_exchange(unsigned mask, const void* mine, size_t bytes, void* all32) {
  BlockRun& r = *t_run;
  const size_t tid = static_cast<size_t>(r.current);
  const size_t lane = tid & 31u, w0 = tid - lane;
  if (!(mask >> lane & 1u)) fail("%s: warp collective by lane %zu outside its mask %08x", r.kernel, lane, mask);
  for (size_t l = 0; l < 32; ++l)
    if ((mask >> l & 1u) && (w0 + l >= r.fibers.size() || r.fibers[w0 + l].state == kDone))
      fail("%s: warp collective names lane %zu, which does not exist or has exited", r.kernel, l);
  std::memcpy(&r.slots[(tid) * 16], mine, bytes);
  wait(kWarpBarrier, mask, 0);
  unsigned char* out = static_cast<unsigned char*>(all32);
  for (size_t l = 0; l < 32; ++l)
    if (w0 + l < r.fibers.size()) std::memcpy(out + l * bytes, &r.slots[(w0 + l) * 16], bytes);
  wait(kWarpBarrier, mask, 0);  // every lane has read the slots before any is written again
}
void* dyn_smem() {
  if (!t_run) fail("dynamic shared memory outside a kernel");
  return t_run->smem;
}
uint64_t block_generation() { return t_run ? t_run->generation : 0; }

bool is_device_ptr(const void* p, size_t bytes) {
  std::lock_guard<std::mutex> lk(g_mem_mutex);
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  auto it = g_allocs.upper_bound(a);
  if (it == g_allocs.begin()) return false;
  --it;
  return a >= it->first && a + bytes <= it->first + it->second;
}

void launch(dim3 grid, dim3 block, size_t smem, cudaStream_t, const void* kernel, const char* name,
            void (*body)(void*), void* ctx) {
  const size_t nt = static_cast<size_t>(block.x) * block.y * block.z;
  if (nt == 0 || nt > 1024 || grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.y > 65535 || grid.z > 65535 ||
      grid.x > 0x7fffffffu) {
    t_last_error = cudaErrorInvalidConfiguration;
    std::fprintf(stderr, "emu: invalid launch of %s: grid (%u,%u,%u) block (%u,%u,%u)\n", name, grid.x, grid.y,
                 grid.z, block.x, block.y, block.z);
    return;
  }
  const int allowed = allowed_dynamic_smem(kernel);
  if (smem > static_cast<size_t>(allowed)) {
    t_last_error = cudaErrorInvalidValue;
    std::fprintf(stderr, "emu: launch of %s asks %zu bytes of dynamic shared memory, %d allowed\n", name, smem,
                 allowed);
    return;
  }
  if (t_run) fail("nested launch");
  const long long launch_index = ++g_launch_count;
  BlockRun r;
  r.kernel = name;
  uint64_t seed = 1;
  r.order = order_mode(&seed);
  r.rng.seed(seed * 7919 + static_cast<uint64_t>(launch_index));
  r.fibers.resize(nt);
  r.slots.assign(nt * 16, 0);
  std::vector<unsigned char> smem_buf(smem + 2 * kGuard + (kGuard ? 16 : 0));
  r.smem = smem_buf.data() + kGuard;
  r.smem_bytes = smem;
  r.body = body;
  r.ctx = ctx;
  t_run = &r;
  // The blocks run one at a time in NQ_EMU_ORDER's order too: index order (fwd), reversed (rev), shuffled (rand;
  // grids over 2^24 blocks run in index order). Blocks share data only through atomics and words they OR into
  // (huffman_pack's edge words), whose result must not depend on which block runs first: a plain store into a
  // word that a neighbour ORs into is lost or not depending on that order.
  const uint64_t nblocks = uint64_t{grid.x} * grid.y * grid.z;
  std::vector<uint32_t> perm;
  if (r.order == 2 && nblocks <= (uint64_t{1} << 24)) {
    perm.resize(static_cast<size_t>(nblocks));
    for (size_t q = 0; q < perm.size(); ++q) perm[q] = static_cast<uint32_t>(q);
    std::shuffle(perm.begin(), perm.end(), r.rng);
  }
  for (uint64_t q = 0; q < nblocks; ++q) {
    const uint64_t lin = r.order == 1 ? nblocks - 1 - q : !perm.empty() ? perm[static_cast<size_t>(q)] : q;
    const unsigned bx = static_cast<unsigned>(lin % grid.x);
    const unsigned by = static_cast<unsigned>(lin / grid.x % grid.y);
    const unsigned bz = static_cast<unsigned>(lin / (uint64_t{grid.x} * grid.y));
    r.generation = ++t_generation;
    // (A kernel without shared memory has none to fill: memset of a null pointer is undefined even for 0 bytes.)
    if (!smem_buf.empty()) std::memset(smem_buf.data(), 0xa5, smem_buf.size());
    if (smem) std::memset(r.smem, 0xff, smem);
    size_t i = 0;
    for (unsigned tz = 0; tz < block.z; ++tz)
      for (unsigned ty = 0; ty < block.y; ++ty)
        for (unsigned tx = 0; tx < block.x; ++tx, ++i) {
          Coords& c = r.fibers[i].xy;
          c.bi = {bx, by, bz};
          c.ti = {tx, ty, tz};
          c.gd = {grid.x, grid.y, grid.z};
          c.bd = {block.x, block.y, block.z};
        }
    run_block(r);
    for (size_t g = 0; g < kGuard; ++g)
      if (smem_buf[g] != 0xa5 || r.smem[smem + g] != 0xa5)
        fail("kernel %s block %u: dynamic shared memory written out of bounds (%zu bytes)", name, bx, smem);
  }
  t_run = nullptr;
}

}  // namespace nq_emu

using namespace nq_emu;

cudaError_t cudaMalloc(void** p, size_t n) {
  if (n == 0) { *p = nullptr; return cudaSuccess; }
  unsigned char* b = static_cast<unsigned char*>(std::malloc(n + 2 * kGuard));
  if (!b) return t_last_error = cudaErrorMemoryAllocation;
  std::memset(b, 0xa5, kGuard);
  std::memset(b + kGuard, 0xff, n);
  std::memset(b + kGuard + n, 0xa5, kGuard);
  *p = b + kGuard;
  std::lock_guard<std::mutex> lk(g_mem_mutex);
  g_allocs[reinterpret_cast<uintptr_t>(*p)] = n;
  g_live_bytes += n;
  return cudaSuccess;
}
cudaError_t cudaFree(void* p) {
  if (!p) return cudaSuccess;
  size_t n;
  {
    std::lock_guard<std::mutex> lk(g_mem_mutex);
    auto it = g_allocs.find(reinterpret_cast<uintptr_t>(p));
    if (it == g_allocs.end()) fail("cudaFree of %p, not a device allocation", p);
    n = it->second;
    g_allocs.erase(it);
    g_live_bytes -= n;
  }
  check_guards(reinterpret_cast<uintptr_t>(p), n);
  std::free(static_cast<unsigned char*>(p) - kGuard);
  return cudaSuccess;
}
cudaError_t cudaMallocHost(void** p, size_t n) {
  *p = std::malloc(n ? n : 1);
  return *p ? cudaSuccess : cudaErrorMemoryAllocation;
}
cudaError_t cudaFreeHost(void* p) { std::free(p); return cudaSuccess; }
static void need_device(const void* p, size_t n, const char* what) {
  if (n && !is_device_ptr(p, n)) fail("%s: %p (+%zu bytes) is not inside a device allocation", what, p, n);
}
static void need_host(const void* p, size_t n, const char* what) {
  if (n && is_device_ptr(p, 1)) fail("%s: %p is device memory where host memory is expected", what, p);
}
cudaError_t cudaMemset(void* p, int v, size_t n) {
  need_device(p, n, "cudaMemset");
  std::memset(p, v, n);
  return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void* p, int v, size_t n, cudaStream_t) { return cudaMemset(p, v, n); }
cudaError_t cudaMemcpy(void* d, const void* s, size_t n, cudaMemcpyKind k) {
  switch (k) {
    case cudaMemcpyHostToDevice: need_device(d, n, "cudaMemcpy H2D dst"); need_host(s, n, "cudaMemcpy H2D src"); break;
    case cudaMemcpyDeviceToHost: need_device(s, n, "cudaMemcpy D2H src"); need_host(d, n, "cudaMemcpy D2H dst"); break;
    case cudaMemcpyDeviceToDevice: need_device(s, n, "cudaMemcpy D2D src"); need_device(d, n, "cudaMemcpy D2D dst"); break;
    default: break;
  }
  if (n) std::memmove(d, s, n);
  return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void* d, const void* s, size_t n, cudaMemcpyKind k, cudaStream_t) {
  return cudaMemcpy(d, s, n, k);
}
cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
cudaError_t cudaDeviceSynchronize() { return cudaSuccess; }
static thread_local int t_device = 0;
cudaError_t cudaGetDevice(int* d) { *d = t_device; return cudaSuccess; }
cudaError_t cudaSetDevice(int d) {
  if (d != 0) return t_last_error = cudaErrorInvalidValue;
  t_device = d;
  return cudaSuccess;
}
cudaError_t cudaGetDeviceCount(int* n) { *n = 1; return cudaSuccess; }
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int) {
  std::memset(p, 0, sizeof *p);
  std::strcpy(p->name, "emulated H100");
  p->major = 9;
  p->minor = 0;
  p->totalGlobalMem = size_t{80} << 30;
  p->multiProcessorCount = 132;
  p->sharedMemPerBlock = 48 * 1024;
  return cudaSuccess;
}
cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr a, int) {
  switch (a) {
    case cudaDevAttrMultiProcessorCount: *v = 132; break;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *v = 227 * 1024; break;
    default: return t_last_error = cudaErrorInvalidValue;
  }
  return cudaSuccess;
}
cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes) {
  const char* lim = std::getenv("NQ_EMU_MEM");  // emulated device memory, bytes (default 80 GiB)
  const size_t total = lim ? static_cast<size_t>(std::atof(lim)) : size_t{80} << 30;
  std::lock_guard<std::mutex> lk(g_mem_mutex);
  *total_bytes = total;
  *free_bytes = total > g_live_bytes ? total - g_live_bytes : 0;
  return cudaSuccess;
}
cudaError_t cudaFuncSetAttribute(const void* f, cudaFuncAttribute a, int v) {
  if (a != cudaFuncAttributeMaxDynamicSharedMemorySize || v < 0 || v > 227 * 1024)
    return t_last_error = cudaErrorInvalidValue;
  std::lock_guard<std::mutex> lk(g_attr_mutex);
  g_smem_attr[f] = v;
  return cudaSuccess;
}
cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessor(int* n, const void* f, int threads, size_t smem) {
  if (!n || threads < 1 || threads > 1024) return t_last_error = cudaErrorInvalidValue;
  const int allowed = allowed_dynamic_smem(f);
  // H100: 2048 threads, 32 CTAs and 228 KB of shared memory per SM, 1 KB of it reserved per CTA.
  const int warps = (threads + 31) / 32;
  int ctas = std::min(32, 64 / warps);
  if (smem > static_cast<size_t>(allowed)) ctas = 0;
  else ctas = std::min<int>(ctas, static_cast<int>((228 * 1024) / (smem + 1024)));
  *n = ctas;
  return cudaSuccess;
}
// Events: host clock readings (every emulated operation is synchronous, so a recorded event has completed).
struct CUevent_st {
  std::chrono::steady_clock::time_point at;
  bool recorded = false;
};
cudaError_t cudaEventCreate(cudaEvent_t* e) {
  *e = new CUevent_st;
  return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t e) {
  delete e;
  return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t) {
  e->at = std::chrono::steady_clock::now();
  e->recorded = true;
  return cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t) { return cudaSuccess; }
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
  if (!start->recorded || !end->recorded) return t_last_error = cudaErrorInvalidValue;
  *ms = std::chrono::duration<float, std::milli>(end->at - start->at).count();
  return cudaSuccess;
}
cudaError_t cudaGetLastError() { const cudaError_t e = t_last_error; t_last_error = cudaSuccess; return e; }
cudaError_t cudaPeekAtLastError() { return t_last_error; }
const char* cudaGetErrorName(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    default: return "cudaError(other)";
  }
}
const char* cudaGetErrorString(cudaError_t e) { return cudaGetErrorName(e); }
namespace {
// NQ_EMU_VERBOSE=1: the number of launches at exit (a run that launched nothing tested nothing).
struct ReportAtExit {
  ~ReportAtExit() {
    const char* v = std::getenv("NQ_EMU_VERBOSE");
    if (v && *v && std::strcmp(v, "0") != 0)
      std::fprintf(stderr, "[cuda emulation] %lld kernel launches\n", nq_emu::g_launch_count.load());
  }
} g_report;
}  // namespace
