// Progress in a log: stderr redirected to a file (not a terminal), lines come once the work has run an interval,
// then once per interval, none at the end, and none with the switch off (--quiet).
#include <gtest/gtest.h>
#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>

#include "netquant/progress.h"

namespace nq {
namespace {

// Runs `work` with stderr sent to a scratch file and returns what it wrote there.
template <class Work>
std::string stderr_of(Work work) {
  const std::string path = ::testing::TempDir() + "nq_progress_" + std::to_string(::getpid());
  std::fflush(stderr);
  const int saved = ::dup(STDERR_FILENO);
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  ::dup2(fd, STDERR_FILENO);
  ::close(fd);
  work();
  std::fflush(stderr);
  ::dup2(saved, STDERR_FILENO);
  ::close(saved);
  std::ifstream in(path);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::remove(path.c_str());
  return text;
}

size_t count_lines(const std::string& text) {
  size_t n = 0;
  for (char c : text) n += c == '\n';
  return n;
}

TEST(Progress, ALogGetsAPlainLinePerIntervalOfLongWorkOnly) {
  set_progress_log_interval(std::chrono::milliseconds(40));
  const std::string text = stderr_of([] {
    Progress p("work", 10);
    p.update(1, "first");  // before one interval: nothing
    std::this_thread::sleep_for(std::chrono::milliseconds(60));
    p.update(2, "lambda=1e-05");  // past one: a line
    p.update(3);                  // within the next interval: nothing
    std::this_thread::sleep_for(std::chrono::milliseconds(60));
    p.update(5);  // a line, without a status
    std::this_thread::sleep_for(std::chrono::milliseconds(60));
    p.update(10);  // the end, an interval later: still nothing (the result line says it)
    p.finish();
  });
  EXPECT_EQ(count_lines(text), 2u) << text;
  EXPECT_EQ(text.find('\r'), std::string::npos) << "a log gets no terminal redraws";
  EXPECT_NE(text.find("work: 20% after 0 s, lambda=1e-05\n"), std::string::npos) << text;
  EXPECT_NE(text.find("work: 50% after 0 s\n"), std::string::npos) << text;
  EXPECT_EQ(text.find("first"), std::string::npos) << text;

  // Lines of their own between bars (the shared-λ search's rounds) are for a terminal only, never a log.
  bool in_log = true;
  stderr_of([&in_log] { in_log = progress_enabled(); });
  EXPECT_FALSE(in_log) << "stderr is a file here, not a terminal";

  // A short run says nothing; nor does a long one with the switch off.
  EXPECT_EQ(stderr_of([] {
              Progress p("short", 4);
              for (int i = 1; i <= 4; ++i) p.update(i);
            }),
            "");
  set_progress_enabled(false);
  EXPECT_EQ(stderr_of([] {
              Progress p("quiet", 4);
              std::this_thread::sleep_for(std::chrono::milliseconds(60));
              p.update(1);
            }),
            "");
  set_progress_enabled(true);
  set_progress_log_interval(std::chrono::seconds(30));
}

// On a terminal (here a pseudo-terminal standing in for one) the bar is cleared at the end only if it was drawn: a
// Progress that drew nothing clears nothing, so it cannot erase another bar or a partial line on screen. The oracle
// is the bytes the terminal receives: the drawn bar's, and no clearing before them.
TEST(Progress, ATerminalLineIsClearedOnlyAfterABarWasDrawn) {
  const int master = ::posix_openpt(O_RDWR | O_NOCTTY);
  if (master < 0 || ::grantpt(master) != 0 || ::unlockpt(master) != 0) GTEST_SKIP() << "no pseudo-terminal here";
  const int slave = ::open(::ptsname(master), O_RDWR | O_NOCTTY);
  ASSERT_GE(slave, 0);
  std::fflush(stderr);
  const int saved = ::dup(STDERR_FILENO);
  ::dup2(slave, STDERR_FILENO);
  {
    Progress idle("idle", 10);  // never updated: nothing drawn
    idle.finish();
    Progress bar("drawn", 10);
    bar.update(5);
    bar.finish();
  }
  std::fflush(stderr);
  ::dup2(saved, STDERR_FILENO);
  ::close(saved);
  ::close(slave);
  std::string text;
  const std::string clear = "\r\033[K";
  auto ends_cleared = [&] {
    return text.size() > clear.size() && text.compare(text.size() - clear.size(), clear.size(), clear) == 0;
  };
  char buf[4096];
  pollfd pfd{master, POLLIN, 0};
  // Read until the drawn bar's own clearing has arrived (or 5 s pass).
  while (!ends_cleared() && ::poll(&pfd, 1, 5000) > 0) {
    const ssize_t n = ::read(master, buf, sizeof buf);
    if (n <= 0) break;
    text.append(buf, static_cast<size_t>(n));
  }
  ::close(master);
  EXPECT_EQ(text.rfind(clear + "drawn [", 0), 0u) << "the first bytes are not the drawn bar's: " << text;
  EXPECT_EQ(text.find("idle"), std::string::npos) << text;
  EXPECT_TRUE(ends_cleared()) << "the drawn bar was not cleared: " << text;
}

}  // namespace
}  // namespace nq
