// Rate–distortion figures: renders a sweep CSV to PNG with matplotlib (script embedded in the binary).
#pragma once

#include <string>

namespace nq::cli {

// Finds a Python 3 that imports numpy and matplotlib: /usr/bin/python3 (Debian's packages) first, then
// `python3` on PATH. Returns "" when none has them.
std::string find_python_with_matplotlib();

// Plots accuracy (when the CSV has it, else importance-weighted distortion) against Huffman bits/weight and
// against the compression ratio, one curve per method. The validation accuracy columns when the CSV has them (the
// accuracy points were chosen by), else the test accuracy columns. Throws kUnavailable without matplotlib.
void plot_rd_curve(const std::string& csv_path, const std::string& png_path, const std::string& title);

}  // namespace nq::cli
