// Progress bar drawing, throttled to ~10 redraws per second on a terminal; plain lines every 30 s in a log.
#include "netquant/progress.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>

namespace nq {

namespace {
std::atomic<bool> g_enabled{true};
std::atomic<int64_t> g_log_interval_ms{30000};
}

bool stderr_is_terminal() { return ::isatty(STDERR_FILENO) == 1; }
void set_progress_enabled(bool enabled) { g_enabled = enabled; }
bool progress_enabled() { return g_enabled && stderr_is_terminal(); }
void set_progress_log_interval(std::chrono::milliseconds interval) { g_log_interval_ms = interval.count(); }

Progress::Progress(std::string label, int64_t total)
    : label_(std::move(label)),
      total_(std::max<int64_t>(total, 1)),
      enabled_(g_enabled),
      terminal_(stderr_is_terminal()) {
  start_ = last_draw_ = std::chrono::steady_clock::now();
}

Progress::~Progress() { finish(); }

void Progress::update(int64_t done, const std::string& status) {
  if (!enabled_) return;
  const auto now = std::chrono::steady_clock::now();
  const double frac = std::clamp(static_cast<double>(done) / static_cast<double>(total_), 0.0, 1.0);
  const double secs = std::chrono::duration<double>(now - start_).count();
  if (!terminal_) {  // a log: a line once the work has run 30 s, then one per 30 s (and none at the end)
    const auto every = std::chrono::milliseconds(g_log_interval_ms.load());
    if (done >= total_ || now - (drawn_ ? last_draw_ : start_) < every) return;
    last_draw_ = now;
    drawn_ = true;
    std::fprintf(stderr, "%s: %d%% after %.0f s%s%s\n", label_.c_str(), static_cast<int>(frac * 100), secs,
                 status.empty() ? "" : ", ", status.c_str());
    std::fflush(stderr);
    return;
  }
  if (drawn_ && done < total_ && now - last_draw_ < std::chrono::milliseconds(100)) return;
  last_draw_ = now;
  drawn_ = true;
  constexpr int kWidth = 30;
  const int filled = static_cast<int>(frac * kWidth);
  char bar[kWidth + 1];
  for (int i = 0; i < kWidth; ++i) bar[i] = i < filled ? '#' : '.';
  bar[kWidth] = 0;
  std::fprintf(stderr, "\r\033[K%s [%s] %3d%% %.1fs %s", label_.c_str(), bar, static_cast<int>(frac * 100), secs,
               status.c_str());
  std::fflush(stderr);
}

void Progress::finish() {
  if (enabled_ && terminal_ && drawn_) {
    std::fprintf(stderr, "\r\033[K");
    std::fflush(stderr);
  }
  drawn_ = false;
  enabled_ = false;
}

}  // namespace nq
