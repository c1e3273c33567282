// Replays a fuzz corpus without libFuzzer: every file in the given directories (or files) goes through
// LLVMFuzzerTestOneInput once. A crash or sanitizer report fails the ctest case.
#include <dirent.h>
#include <sys/stat.h>

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {
void run_file(const std::string& path, int& count) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  ++count;
}
}  // namespace

int main(int argc, char** argv) {
  int count = 0;
  for (int a = 1; a < argc; ++a) {
    struct stat st {};
    if (stat(argv[a], &st) != 0) {
      std::fprintf(stderr, "replay: cannot stat %s\n", argv[a]);
      return 1;
    }
    if (!S_ISDIR(st.st_mode)) {
      run_file(argv[a], count);
      continue;
    }
    DIR* dir = opendir(argv[a]);
    std::vector<std::string> names;
    while (dirent* e = readdir(dir)) {
      std::string n = e->d_name;
      if (n != "." && n != "..") names.push_back(std::string(argv[a]) + "/" + n);
    }
    closedir(dir);
    for (const auto& n : names) run_file(n, count);
  }
  std::printf("replayed %d inputs\n", count);
  if (count == 0) {
    std::fprintf(stderr, "replay: empty corpus\n");
    return 1;
  }
  return 0;
}
