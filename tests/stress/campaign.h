// What both stress drivers share: the current case (named in crash and hang reports), the per-check case and
// failure counters, a case's failure messages (FAILF) and its report, and the random helpers.
#pragma once

#include <signal.h>
#include <unistd.h>

#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

using Rng = std::mt19937_64;

inline char g_case[1024] = "none";
inline std::map<std::string, long> g_cases, g_fails;
inline long g_total_fail_prints = 0;

// On a fatal signal (or the per-case alarm): name the case being run, then die of the same signal.
inline void on_signal(int sig) {
  char buf[1200];
  const int len = snprintf(buf, sizeof buf, "\nCRASH/HANG signal %d while running case: %s\n", sig, g_case);
  if (write(2, buf, static_cast<size_t>(len)) < 0) {}
  signal(sig, SIG_DFL);
  raise(sig);
}

inline void set_case(const std::string& check, uint64_t seed, const std::string& extra = "") {
  snprintf(g_case, sizeof g_case, "check=%s seed=%" PRIu64 " %s", check.c_str(), seed, extra.c_str());
}

struct Failure {
  Failure(std::string check_name, uint64_t case_seed) : check(std::move(check_name)), seed(case_seed) {}
  std::string check;
  uint64_t seed;
  std::ostringstream msg;
  bool any = false;
};

// Adds a printf-style line to a case's failure (the first few kilobytes are kept).
#define FAILF(F, ...)                                \
  do {                                               \
    if (!(F).any || (F).msg.tellp() < 4000) {        \
      char _b[1024];                                 \
      snprintf(_b, sizeof _b, __VA_ARGS__);          \
      (F).msg << "    " << _b << "\n";               \
    }                                                \
    (F).any = true;                                  \
  } while (0)

// Counts the case and prints `FAIL <check> seed=<seed> <desc>` with its lines if it failed (the first 400).
inline void report(Failure& f, const std::string& desc) {
  ++g_cases[f.check];
  if (!f.any) return;
  ++g_fails[f.check];
  if (g_total_fail_prints++ < 400)
    printf("FAIL %s seed=%" PRIu64 " %s\n%s", f.check.c_str(), f.seed, desc.c_str(), f.msg.str().c_str());
  fflush(stdout);
}

inline double unif(Rng& r) { return std::uniform_real_distribution<double>(0.0, 1.0)(r); }
inline int64_t irange(Rng& r, int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(r); }
template <class T>
T pick(Rng& r, const std::vector<T>& v) {
  return v[static_cast<size_t>(irange(r, 0, static_cast<int64_t>(v.size()) - 1))];
}

// ---------------------------------------------------------------------------------------------------------------
// The driver: command line, one forked child per case (a crash or an abort is reported with its seed and the
// campaign goes on), the children's counters summed in the parent, the summary table; exit 1 on any failure.
#include <sys/wait.h>

#include <chrono>
#include <cstdlib>
#include <functional>

using Check = std::pair<std::string, std::function<void(uint64_t)>>;

// Set when cases run in this process (--one or --nofork): drivers may then print more about each case.
inline bool g_in_process = false;

// What a driver keeps beyond the shared counters: reset in each child, sent up as extra "TAG\tKEY\tVALUE" lines
// (tags other than C, F and P), taken in by the parent, and printed after the table.
struct CampaignExtras {
  std::function<void()> reset;
  std::function<std::string()> send;
  std::function<void(const std::string& tag, const std::string& key, const std::string& value)> take;
  std::function<void()> summary;
};

inline int run_campaign(int argc, char** argv, const std::vector<Check>& checks, const CampaignExtras& extras = {},
                        unsigned case_alarm_seconds = 300) {
  std::string check = "all", names;
  for (const Check& c : checks) names += c.first + "|";
  double seconds = 60;
  uint64_t base = 1, one_seed = 0;
  bool one = false, use_fork = true;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--check" && i + 1 < argc) check = argv[++i];
    else if (a == "--seconds" && i + 1 < argc) seconds = atof(argv[++i]);
    else if (a == "--seed" && i + 1 < argc) base = strtoull(argv[++i], nullptr, 10);
    else if (a == "--one" && i + 1 < argc) { one = true; one_seed = strtoull(argv[++i], nullptr, 10); }
    else if (a == "--nofork") use_fork = false;
    else {
      fprintf(stderr, "usage: %s [--check %sall] [--seconds S] [--seed BASE] [--one SEED] [--nofork]\n", argv[0],
              names.c_str());
      return 2;
    }
  }
  for (int s : {SIGSEGV, SIGABRT, SIGFPE, SIGBUS, SIGILL, SIGALRM}) signal(s, on_signal);
  g_in_process = one || !use_fork;
  auto run_one = [&](const Check& c, uint64_t seed) {
    alarm(case_alarm_seconds);
    c.second(seed);
    alarm(0);
  };
  for (const Check& c : checks) {
    const std::string& name = c.first;
    if (check != "all" && check != name) continue;
    if (one) {
      run_one(c, one_seed);
      continue;
    }
    const auto t0 = std::chrono::steady_clock::now();
    for (uint64_t i = 0; std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() <= seconds; ++i) {
      if (!use_fork) {
        run_one(c, base + i);
        continue;
      }
      fflush(stdout);
      int fd[2];
      if (pipe(fd) != 0) {
        perror("pipe");
        return 2;
      }
      const pid_t pid = fork();
      if (pid == 0) {  // the child: one case, then its counters up the pipe
        close(fd[0]);
        g_cases.clear();
        g_fails.clear();
        if (extras.reset) extras.reset();
        run_one(c, base + i);
        std::string out;
        for (const auto& [k, v] : g_cases) out += "C\t" + k + "\t" + std::to_string(v) + "\n";
        for (const auto& [k, v] : g_fails) out += "F\t" + k + "\t" + std::to_string(v) + "\n";
        out += "P\t" + std::to_string(g_total_fail_prints) + "\t\n";
        if (extras.send) out += extras.send();
        if (write(fd[1], out.data(), out.size()) < 0) {}
        close(fd[1]);
        fflush(stdout);
        _exit(0);
      }
      close(fd[1]);
      std::string in;
      char buf[4096];
      for (ssize_t got; (got = read(fd[0], buf, sizeof buf)) > 0;) in.append(buf, static_cast<size_t>(got));
      close(fd[0]);
      int status = 0;
      waitpid(pid, &status, 0);
      if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        ++g_cases[name];
        ++g_fails[name];
        ++g_cases[name + ":CRASH"];
        ++g_fails[name + ":CRASH"];
        printf("FAIL %s seed=%" PRIu64 " CRASHED (%s %d) — replay: --check %s --one %" PRIu64 " --nofork\n",
               name.c_str(), base + i, WIFSIGNALED(status) ? "signal" : "exit",
               WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status), name.c_str(), base + i);
        continue;
      }
      std::istringstream is(in);
      for (std::string line; std::getline(is, line);) {
        std::istringstream ls(line);
        std::string tag, key, value;
        std::getline(ls, tag, '\t');
        std::getline(ls, key, '\t');
        std::getline(ls, value, '\t');
        if (tag == "C") g_cases[key] += atol(value.c_str());
        else if (tag == "F") g_fails[key] += atol(value.c_str());
        else if (tag == "P") g_total_fail_prints = atol(key.c_str());
        else if (extras.take) extras.take(tag, key, value);
      }
    }
  }
  printf("\n=== summary ===\n");
  for (const auto& [name, n] : g_cases)
    printf("%-50s cases %8ld  failures %ld\n", name.c_str(), n, g_fails.count(name) ? g_fails[name] : 0);
  if (extras.summary) extras.summary();
  long total_fail = 0;
  for (const auto& [name, n] : g_fails) total_fail += n;
  return total_fail ? 1 : 0;
}
