// Progress on stderr: a one-line bar redrawn in place when stderr is a terminal; in a log (a pipe or a file, e.g.
// under a batch scheduler) a plain line every 30 s of work that lasts longer than that, so short runs stay quiet.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace nq {

bool stderr_is_terminal();
// Global switch (e.g. --quiet): when false no Progress draws anything.
void set_progress_enabled(bool enabled);
// Whether progress is shown (the switch on and stderr a terminal): lines that report on long work go with it.
bool progress_enabled();
// How often a log (stderr not a terminal) gets a progress line, and how long work runs before the first: 30 s.
void set_progress_log_interval(std::chrono::milliseconds interval);

class Progress {
 public:
  Progress(std::string label, int64_t total);
  ~Progress();  // finishes the line if anything was drawn
  void update(int64_t done, const std::string& status = std::string());
  void finish();

 private:
  std::string label_;
  int64_t total_;
  bool enabled_;
  bool terminal_;  // redraw a bar in place, else log plain lines
  bool drawn_ = false;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

}  // namespace nq
